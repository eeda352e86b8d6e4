//! One connection to the server, once dialled ([`crate::dial`]): HTTP/2 with this daemon as the
//! server. Every public request arrives as a stream; the control stream arrives first.
//! [`crate::supervisor`] keeps one up per link, forever.

use crate::daemon::Daemon;
use crate::dial::{Carrier, Dialled};
use crate::exchange::Exchange;
use crate::link::Link;
use anyhow::{Context, anyhow};
use ggrok_proto::host::normalize_host;
use ggrok_proto::http::{self as body, Body, Refusal};
use ggrok_proto::{CONTROL_AUTHORITY, CONTROL_PROTOCOL, tuning};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::ext::Protocol;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

/// Why a connection was ended on purpose, not lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ending {
    /// It landed on a server worker another link holds while one is free: dial again at once.
    #[error("landed on a server worker another connection holds; dialling again")]
    Redial,
    /// A link other than the first reached a version-1 server, which serves a daemon over one
    /// connection: it is not needed.
    #[error("the server speaks protocol version 1: one connection serves this daemon")]
    Surplus,
}

/// The daemon's HTTP/2 settings: extended CONNECT on, windows per [`tuning`], and a PING every
/// keepalive interval that must be answered within another, so a silent server is dropped within
/// two intervals.
fn h2_server(timing: &crate::config::Timing) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .initial_stream_window_size(tuning::STREAM_WINDOW)
        .initial_connection_window_size(tuning::CONNECTION_WINDOW)
        .max_frame_size(tuning::MAX_FRAME_SIZE)
        .max_concurrent_streams(tuning::MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(Some(timing.keepalive_interval))
        .keep_alive_timeout(timing.keepalive_interval);
    builder
}

/// State of one tunnel connection shared by its streams.
struct PerConnection {
    /// The protocol version agreed on in the handshake.
    protocol: u32,
    /// The control stream was opened; a second one is refused.
    control_opened: AtomicBool,
    /// The control stream ended while the connection is up: drop the connection and reconnect.
    control_lost: CancellationToken,
    /// Why the control stream ended the connection on purpose, if it did.
    ending: Mutex<Option<Ending>>,
}

/// Serves HTTP/2 on the dialled connection until it ends. On `shutdown` it closes the control
/// stream (the server marks the hosts offline), sends GOAWAY and lets the requests in flight
/// finish for up to the grace period. A connection ended on purpose returns an [`Ending`].
pub async fn serve(
    daemon: &Arc<Daemon>,
    link: &Arc<Link>,
    dialled: Dialled,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let protocol = dialled.protocol;
    match dialled.carrier {
        Carrier::WebSocket(ws) => {
            serve_on(daemon, link, protocol, ggrok_proto::wsio::ws_io(*ws), shutdown).await
        }
        Carrier::Raw(io) => serve_on(daemon, link, protocol, io, shutdown).await,
    }
}

async fn serve_on<IO>(
    daemon: &Arc<Daemon>,
    link: &Arc<Link>,
    protocol: u32,
    io: IO,
    shutdown: &CancellationToken,
) -> anyhow::Result<()>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let timing = daemon.timing();
    let connection = Arc::new(PerConnection {
        protocol,
        control_opened: AtomicBool::new(false),
        control_lost: CancellationToken::new(),
        ending: Mutex::new(None),
    });
    let service = {
        let (daemon, link, connection) = (daemon.clone(), link.clone(), connection.clone());
        service_fn(move |req| handle(daemon.clone(), link.clone(), connection.clone(), req))
    };
    let conn = h2_server(&timing).serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => result.context("tunnel connection"),
        _ = connection.control_lost.cancelled() => {
            match *connection.ending.lock().expect("ending lock") {
                Some(ending) => Err(ending.into()),
                None => Err(anyhow!("the control stream ended")),
            }
        }
        _ = shutdown.cancelled() => {
            info!("draining requests in flight (up to {:.1}s)", timing.shutdown_grace.as_secs_f64());
            link.detach_control(None);
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(timing.shutdown_grace, conn.as_mut()).await {
                Ok(result) => result.context("tunnel connection"),
                Err(_) => {
                    warn!("shutdown grace period over; cutting the remaining requests");
                    Ok(())
                }
            }
        }
    }
}

async fn handle(
    daemon: Arc<Daemon>,
    link: Arc<Link>,
    connection: Arc<PerConnection>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if req.method() == Method::CONNECT {
        let protocol =
            req.extensions().get::<Protocol>().map(|p| String::from_utf8_lossy(p.as_ref()).into_owned());
        return Ok(match protocol {
            // One control stream per connection, on the control authority: the server opens it
            // first, so a later one can only be a forged public request.
            Some(p) if p == CONTROL_PROTOCOL => {
                let authority = req.uri().authority().map(|a| a.as_str());
                if authority != Some(CONTROL_AUTHORITY)
                    || connection.control_opened.swap(true, Ordering::SeqCst)
                {
                    return Ok(body::text(StatusCode::BAD_REQUEST, "ggrokd: control stream refused"));
                }
                let on_upgrade = hyper::upgrade::on(&mut req);
                // hyper runs each stream as a task of its own, outside the link's span.
                let span = info_span!("link", connection = link.index);
                let control = async move {
                    match on_upgrade.await {
                        Ok(stream) => {
                            let end = crate::control::run(
                                &daemon,
                                &link,
                                connection.protocol,
                                TokioIo::new(stream),
                            )
                            .await;
                            debug!("control stream ended: {end}");
                            match end {
                                crate::control::End::Detached => {}
                                // A connection without its control stream is of no use: reconnect.
                                crate::control::End::Lost(_) => connection.control_lost.cancel(),
                                crate::control::End::Ending(ending) => {
                                    *connection.ending.lock().expect("ending lock") = Some(ending);
                                    connection.control_lost.cancel();
                                }
                            }
                        }
                        Err(e) => {
                            warn!("control stream upgrade failed: {e}");
                            connection.control_lost.cancel();
                        }
                    }
                };
                tokio::spawn(control.instrument(span));
                Response::new(body::empty())
            }
            Some(p) => match find_tunnel(&daemon, &req) {
                Ok((tunnel, host)) => {
                    link.requests.fetch_add(1, Ordering::Relaxed);
                    let exchange = Exchange::start(&daemon.requests, &tunnel.stats, host, &req, Some(&p));
                    link.local.upgrade(&tunnel, p, req, exchange).await
                }
                Err(refusal) => refusal.into_response(),
            },
            None => body::text(
                StatusCode::METHOD_NOT_ALLOWED,
                "ggrokd: CONNECT without :protocol is not supported",
            ),
        });
    }
    if req.uri().authority().is_some_and(|a| a.as_str() == CONTROL_AUTHORITY) {
        return Ok(Response::builder().status(StatusCode::NO_CONTENT).body(body::empty()).expect("valid"));
    }
    Ok(match find_tunnel(&daemon, &req) {
        Ok((tunnel, host)) => {
            link.requests.fetch_add(1, Ordering::Relaxed);
            let mut exchange = Exchange::start(&daemon.requests, &tunnel.stats, host, &req, None);
            let req = exchange.meter_request(req);
            link.local.forward(&tunnel, req, exchange).await
        }
        Err(refusal) => refusal.into_response(),
    })
}

/// The tunnel serving the request's host, and that host (normalised).
fn find_tunnel(
    daemon: &Daemon,
    req: &Request<Incoming>,
) -> Result<(Arc<crate::tunnels::Tunnel>, String), Refusal> {
    let authority = req.uri().authority().map(|a| a.as_str()).unwrap_or("");
    let host = normalize_host(authority).map_err(|e| {
        Refusal::new(StatusCode::BAD_REQUEST, format!("ggrokd: invalid host {authority:?}: {e}"))
    })?;
    match daemon.tunnels.lookup(&host) {
        Some(tunnel) => Ok((tunnel, host)),
        None => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!("ggrokd: no tunnel for host {host} on this daemon"),
        )),
    }
}
