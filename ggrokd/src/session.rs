//! One connection to the server, once dialled ([`crate::dial`]): HTTP/2 with this daemon as the
//! server. Every public request arrives as a stream; the control stream arrives first.
//! [`crate::supervisor`] keeps one up per link, forever.
//!
//! HTTP/2 is driven with the `h2` crate directly rather than through hyper's server, so that the
//! stream window every connection grants follows the buffer budget ([`ggrok_proto::budget`]): a
//! local service that stops reading an upload holds up its public client, not ggrokd's memory.
//! Each stream is served by a task of its own; its request body is a [`RecvBody`] counted against
//! the budget while in flight, and its answer's body is written as the window allows
//! ([`h2io::pump`]).

use crate::daemon::Daemon;
use crate::dial::{Carrier, Dialled};
use crate::exchange::Exchange;
use crate::link::Link;
use anyhow::{Context, anyhow};
use bytes::Bytes;
use ggrok_proto::h2io::{self, RecvBody, StreamIo, Windows};
use ggrok_proto::host::normalize_host;
use ggrok_proto::http::{self as body, Body, Refusal};
use ggrok_proto::{CONTROL_AUTHORITY, CONTROL_PROTOCOL, TCP_PROTOCOL, tuning};
use h2::RecvStream;
use h2::ext::Protocol;
use h2::server::SendResponse;
use http::{Method, Request, Response, StatusCode};
use std::future::poll_fn;
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

/// The daemon's HTTP/2 settings: extended CONNECT on, the stream window the budget grants now,
/// the other windows and limits per [`tuning`].
fn h2_server(stream_window: u32) -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .enable_connect_protocol()
        .initial_window_size(stream_window)
        .initial_connection_window_size(tuning::CONNECTION_WINDOW)
        .max_frame_size(tuning::MAX_FRAME_SIZE)
        .max_concurrent_streams(tuning::MAX_CONCURRENT_STREAMS)
        .max_header_list_size(64 << 10);
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

/// Runs the connection: accepts streams, each served by a task of its own; sends a PING every
/// keepalive interval that must be answered within another, so a silent server is dropped within
/// two intervals; applies every stream window the budget asks for.
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
    let mut windows = Windows::new(daemon.budget.windows());
    let handshake = h2_server(windows.initial()).handshake::<_, Bytes>(io);
    let handshake = tokio::time::timeout(tuning::HANDSHAKE_TIMEOUT, handshake);
    let mut conn = tokio::select! {
        conn = handshake => match conn {
            Ok(conn) => conn.context("tunnel connection: HTTP/2 handshake")?,
            Err(_) => return Err(anyhow!("tunnel connection: no HTTP/2 handshake from the server")),
        },
        _ = shutdown.cancelled() => return Ok(()),
    };
    let pings = conn.ping_pong().expect("the ping handle is taken once");
    let silent = h2io::keepalive(pings, timing.keepalive_interval);
    tokio::pin!(silent);
    let mut draining: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        tokio::select! {
            accepted = poll_fn(|cx| conn.poll_accept(cx)) => match accepted {
                Some(Ok((req, respond))) => {
                    let (daemon, link, connection) = (daemon.clone(), link.clone(), connection.clone());
                    tokio::spawn(serve_stream(daemon, link, connection, req, respond));
                }
                Some(Err(e)) => return Err(e).context("tunnel connection"),
                None => return Ok(()),
            },
            () = &mut silent => {
                return Err(anyhow!(
                    "tunnel connection: the server did not answer a PING within {:.1}s",
                    timing.keepalive_interval.as_secs_f64()
                ));
            }
            () = windows.changed() => {}
            _ = connection.control_lost.cancelled(), if draining.is_none() => {
                return match *connection.ending.lock().expect("ending lock") {
                    Some(ending) => Err(ending.into()),
                    None => Err(anyhow!("the control stream ended")),
                };
            }
            _ = shutdown.cancelled(), if draining.is_none() => {
                info!("draining requests in flight (up to {:.1}s)", timing.shutdown_grace.as_secs_f64());
                link.detach_control(None);
                conn.graceful_shutdown();
                draining = Some(Box::pin(tokio::time::sleep(timing.shutdown_grace)));
            }
            _ = async { draining.as_mut().expect("draining").await }, if draining.is_some() => {
                warn!("shutdown grace period over; cutting the remaining requests");
                return Ok(());
            }
        }
        windows.apply(|size| conn.set_initial_window_size(size));
    }
}

/// Serves one stream: the control stream, an upgrade, or a plain request, whose answer is sent
/// with its body written as the window allows. A stream the server resets (the public client
/// went away) stops being served.
async fn serve_stream(
    daemon: Arc<Daemon>,
    link: Arc<Link>,
    connection: Arc<PerConnection>,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let (parts, recv) = req.into_parts();
    if parts.method == Method::CONNECT {
        let protocol =
            parts.extensions.get::<Protocol>().map(|p| String::from_utf8_lossy(p.as_ref()).into_owned());
        let resp = match protocol {
            // One control stream per connection, on the control authority: the server opens it
            // first, so a later one can only be a forged public request.
            Some(p) if p == CONTROL_PROTOCOL => {
                let authority = parts.uri.authority().map(|a| a.as_str());
                if authority != Some(CONTROL_AUTHORITY)
                    || connection.control_opened.swap(true, Ordering::SeqCst)
                {
                    body::text(StatusCode::BAD_REQUEST, "ggrokd: control stream refused")
                } else {
                    let span = info_span!("link", connection = link.index);
                    return control(&daemon, &link, &connection, respond, recv).instrument(span).await;
                }
            }
            Some(p) if p == TCP_PROTOCOL => {
                match crate::tcp::find(&daemon, parts.uri.authority().map(|a| a.as_str())) {
                    Some(tunnel) => {
                        link.requests.fetch_add(1, Ordering::Relaxed);
                        return crate::tcp::serve(&daemon, tunnel, &parts.headers, respond, recv).await;
                    }
                    None => body::text(StatusCode::NOT_FOUND, "ggrokd: no TCP tunnel for this port"),
                }
            }
            Some(p) => match find_tunnel(&daemon, &parts) {
                Ok((tunnel, host)) => {
                    link.requests.fetch_add(1, Ordering::Relaxed);
                    let req = Request::from_parts(parts, ());
                    let exchange = Exchange::start(&daemon.requests, &tunnel.stats, host, &req, Some(&p))
                        .inspected(&daemon.inspector, &tunnel, &req);
                    let (tunnel_side, side) = tokio::sync::oneshot::channel();
                    let resp = tokio::select! {
                        resp = link.local.upgrade(&tunnel, p, req, side, exchange) => resp,
                        _ = reset(&mut respond) => return,
                    };
                    if resp.status() == StatusCode::OK {
                        // The stream's bytes go to the splice `upgrade` started.
                        let (parts, _) = resp.into_parts();
                        match respond.send_response(Response::from_parts(parts, ()), false) {
                            Ok(send) => drop(tunnel_side.send(StreamIo::new(send, recv))),
                            Err(e) => debug!("answering an upgrade: {e}"),
                        }
                        return;
                    }
                    resp
                }
                Err(refusal) => refusal.into_response(),
            },
            None => body::text(
                StatusCode::METHOD_NOT_ALLOWED,
                "ggrokd: CONNECT without :protocol is not supported",
            ),
        };
        return answer(respond, resp).await;
    }
    if parts.uri.authority().is_some_and(|a| a.as_str() == CONTROL_AUTHORITY) {
        let resp = Response::builder().status(StatusCode::NO_CONTENT).body(body::empty()).expect("valid");
        return answer(respond, resp).await;
    }
    let resp =
        match find_tunnel(&daemon, &parts) {
            Ok((tunnel, host)) => {
                link.requests.fetch_add(1, Ordering::Relaxed);
                let req = Request::from_parts(parts, RecvBody::new(recv).counted(&daemon.budget));
                let mut exchange = Exchange::start(&daemon.requests, &tunnel.stats, host, &req, None)
                    .inspected(&daemon.inspector, &tunnel, &req);
                let req = exchange.meter_request(req);
                tokio::select! {
                    resp = link.local.forward(&tunnel, req, exchange) => resp,
                    _ = reset(&mut respond) => return,
                }
            }
            Err(refusal) => refusal.into_response(),
        };
    answer(respond, resp).await
}

/// Resolves when the server resets the stream.
async fn reset(respond: &mut SendResponse<Bytes>) {
    let _ = poll_fn(|cx| respond.poll_reset(cx)).await;
}

/// Sends `resp`: its head, then its body as the stream's window allows. A body of known length
/// gets its `Content-Length` if it has none, as hyper's server gave it.
async fn answer(mut respond: SendResponse<Bytes>, resp: Response<Body>) {
    let (mut parts, body) = resp.into_parts();
    if let Some(len) = hyper::body::Body::size_hint(&body).exact() {
        parts.headers.entry(http::header::CONTENT_LENGTH).or_insert_with(|| len.into());
    }
    let end = hyper::body::Body::is_end_stream(&body);
    match respond.send_response(Response::from_parts(parts, ()), end) {
        Ok(stream) if !end => h2io::pump(body, stream).await,
        Ok(_) => {}
        Err(e) => debug!("answering a stream: {e}"),
    }
}

/// Answers the control stream 200 and runs it on the stream's bytes until it ends.
async fn control(
    daemon: &Daemon,
    link: &Link,
    connection: &PerConnection,
    mut respond: SendResponse<Bytes>,
    recv: RecvStream,
) {
    let send = match respond.send_response(Response::new(()), false) {
        Ok(send) => send,
        Err(e) => {
            warn!("answering the control stream failed: {e}");
            return connection.control_lost.cancel();
        }
    };
    let end = crate::control::run(daemon, link, connection.protocol, StreamIo::new(send, recv)).await;
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

/// The tunnel serving the request's host, and that host (normalised).
fn find_tunnel(
    daemon: &Daemon,
    req: &http::request::Parts,
) -> Result<(Arc<crate::tunnels::Tunnel>, String), Refusal> {
    let authority = req.uri.authority().map(|a| a.as_str()).unwrap_or("");
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
