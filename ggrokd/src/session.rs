//! One connection to the server: WebSocket dial with the token, then HTTP/2 with this daemon as
//! the server. Every public request arrives as a stream; the control stream arrives first.
//! [`crate::supervisor`] keeps one up forever.

use crate::daemon::Daemon;
use crate::exchange::Exchange;
use anyhow::{Context, anyhow};
use ggrok_proto::host::normalize_host;
use ggrok_proto::http::{self as body, Body, Refusal};
use ggrok_proto::{CONTROL_AUTHORITY, CONTROL_PROTOCOL, HEADER_PROTOCOL, tuning};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::ext::Protocol;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

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

/// The connection to the server: plain TCP for `ws://`, TLS for `wss://`.
pub type ServerStream = Either<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>;

/// State of one tunnel connection shared by its streams.
#[derive(Default)]
struct PerConnection {
    /// The control stream was opened; a second one is refused.
    control_opened: AtomicBool,
    /// The control stream ended while the connection is up: drop the connection and reconnect.
    control_lost: CancellationToken,
}

/// Dials the server's tunnel endpoint with the token: the WebSocket the tunnel runs on.
pub async fn connect(daemon: &Daemon) -> anyhow::Result<WebSocketStream<ServerStream>> {
    let endpoint = daemon.endpoint();
    let url = &endpoint.server.url;
    let mut request = url.as_str().into_client_request().context("server URL")?;
    if let Some(token) = &endpoint.token {
        let bearer = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| anyhow!("the token contains characters not allowed in an HTTP header"))?;
        request.headers_mut().insert(header::AUTHORIZATION, bearer);
    }
    request.headers_mut().insert(HEADER_PROTOCOL, HeaderValue::from(ggrok_proto::PROTOCOL_MIN));
    let config = ggrok_proto::wsio::config();
    let dial = async {
        let tcp = TcpStream::connect(&endpoint.server.authority)
            .await
            .map_err(|e| anyhow!("cannot connect to {url}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let stream = if endpoint.server.tls {
            let tls = crate::tls::client_config(endpoint.ca_file.as_deref()).map_err(|e| anyhow!(e))?;
            Either::Right(crate::tls::connect(tls, &endpoint.server.host, tcp).await.map_err(|e| anyhow!(e))?)
        } else {
            Either::Left(tcp)
        };
        match tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let text =
                    resp.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default().trim().to_owned();
                if resp.status() == StatusCode::UNAUTHORIZED {
                    return Err(anyhow!(
                        "unauthorized: the server rejected the token, or wants one (401); check `token` in the config"
                    ));
                }
                Err(anyhow!("the server refused the tunnel: {} {text}", resp.status()))
            }
            Err(e) => Err(anyhow!("WebSocket handshake with {url} failed: {e}")),
        }
    };
    tokio::time::timeout(tuning::HANDSHAKE_TIMEOUT, dial)
        .await
        .map_err(|_| anyhow!("timed out connecting to {url}"))?
}

/// Serves HTTP/2 on the WebSocket until the connection ends. On `shutdown` it closes the control
/// stream (the server marks the hosts offline), sends GOAWAY and lets the requests in flight
/// finish for up to the grace period.
pub async fn serve(
    daemon: &Arc<Daemon>,
    ws: WebSocketStream<ServerStream>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let timing = daemon.timing();
    let io = TokioIo::new(ggrok_proto::wsio::ws_io(ws));
    let connection = Arc::new(PerConnection::default());
    let service = {
        let (daemon, connection) = (daemon.clone(), connection.clone());
        service_fn(move |req| handle(daemon.clone(), connection.clone(), req))
    };
    let conn = h2_server(&timing).serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => result.context("tunnel connection"),
        _ = connection.control_lost.cancelled() => Err(anyhow!("the control stream ended")),
        _ = shutdown.cancelled() => {
            info!("draining requests in flight (up to {:.1}s)", timing.shutdown_grace.as_secs_f64());
            daemon.detach_control(None);
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
                let daemon = daemon.clone();
                tokio::spawn(async move {
                    match on_upgrade.await {
                        Ok(stream) => {
                            let why = crate::control::run(daemon, stream).await;
                            debug!("control stream ended: {why}");
                            if why != crate::control::DETACHED {
                                // A connection without its control stream is of no use: reconnect.
                                connection.control_lost.cancel();
                            }
                        }
                        Err(e) => {
                            warn!("control stream upgrade failed: {e}");
                            connection.control_lost.cancel();
                        }
                    }
                });
                Response::new(body::empty())
            }
            Some(p) => match find_tunnel(&daemon, &req) {
                Ok((tunnel, host)) => {
                    let exchange = Exchange::start(&daemon.requests, &tunnel.stats, host, &req, Some(&p));
                    daemon.local.upgrade(&tunnel, p, req, exchange).await
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
            let mut exchange = Exchange::start(&daemon.requests, &tunnel.stats, host, &req, None);
            let req = exchange.meter_request(req);
            daemon.local.forward(&tunnel, req, exchange).await
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
