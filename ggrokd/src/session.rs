//! One connection to the server: WebSocket dial with the token, then HTTP/2 with this daemon as
//! the server. Every public request arrives as a stream; the control stream arrives first.
//! [`supervise`] keeps a connection up forever, with backoff between attempts.

use crate::backoff::Backoff;
use crate::daemon::Daemon;
use anyhow::{Context, anyhow};
use ggrok_proto::host::normalize_host;
use ggrok_proto::http::{self as body, Body, Refusal};
use ggrok_proto::{CONTROL_AUTHORITY, CONTROL_PROTOCOL, HEADER_PROTOCOL, PROTOCOL_VERSION, tuning};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::ext::Protocol;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// A connection that lasted this long was healthy: the next failure starts backoff afresh.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Connects, serves until the connection ends, waits, connects again: until `shutdown`.
pub async fn supervise(daemon: Arc<Daemon>, shutdown: CancellationToken) {
    let mut backoff = Backoff::default_reconnect();
    loop {
        daemon.link_connecting(backoff.attempt());
        let started = Instant::now();
        let server = daemon.endpoint().server.authority;
        let result = tokio::select! {
            r = connect_and_serve(&daemon) => r,
            _ = daemon.reconnect_requested() => {
                daemon.tunnels.reset_states();
                continue;
            }
            _ = shutdown.cancelled() => return,
        };
        daemon.tunnels.reset_states();
        let error = match result {
            Ok(()) => "the server closed the connection".to_owned(),
            Err(e) => format!("{e:#}"),
        };
        warn!(server, "disconnected from the server: {error}");
        if started.elapsed() >= HEALTHY_AFTER {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        daemon.link_down(error, backoff.attempt(), SystemTime::now() + delay);
        info!(attempt = backoff.attempt(), "reconnecting in {:.1}s", delay.as_secs_f64());
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = daemon.reconnect_requested() => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn connect_and_serve(daemon: &Arc<Daemon>) -> anyhow::Result<()> {
    let endpoint = daemon.endpoint();
    let mut request = endpoint.server.url.as_str().into_client_request().context("server URL")?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", endpoint.token.expose()))
        .map_err(|_| anyhow!("the token contains characters not allowed in an HTTP header"))?;
    request.headers_mut().insert(header::AUTHORIZATION, bearer);
    request.headers_mut().insert(HEADER_PROTOCOL, HeaderValue::from(PROTOCOL_VERSION));
    let config = WebSocketConfig::default()
        .max_message_size(Some(tuning::MAX_WS_MESSAGE))
        .max_frame_size(Some(tuning::MAX_WS_MESSAGE));
    let dial = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    let (ws, _) = match tokio::time::timeout(tuning::HANDSHAKE_TIMEOUT, dial).await {
        Err(_) => return Err(anyhow!("timed out connecting to {}", endpoint.server.url)),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
            let text =
                resp.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default().trim().to_owned();
            if resp.status() == StatusCode::UNAUTHORIZED {
                return Err(anyhow!(
                    "unauthorized: the server rejected the token (401); check `token` in the config"
                ));
            }
            return Err(anyhow!("the server refused the tunnel: {} {text}", resp.status()));
        }
        Ok(Err(e)) => return Err(anyhow!("cannot connect to {}: {e}", endpoint.server.url)),
        Ok(Ok(pair)) => pair,
    };
    info!(server = %endpoint.server.authority, "connected to the server");
    daemon.link_connected();
    let io = TokioIo::new(ggrok_proto::wsio::ws_io(ws));
    let control_opened = Arc::new(AtomicBool::new(false));
    let service = {
        let daemon = daemon.clone();
        service_fn(move |req| handle(daemon.clone(), control_opened.clone(), req))
    };
    http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .initial_stream_window_size(tuning::STREAM_WINDOW)
        .initial_connection_window_size(tuning::CONNECTION_WINDOW)
        .max_frame_size(tuning::MAX_FRAME_SIZE)
        .max_concurrent_streams(tuning::MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(Some(tuning::KEEPALIVE_INTERVAL))
        .keep_alive_timeout(tuning::KEEPALIVE_TIMEOUT)
        .serve_connection(io, service)
        .await
        .context("tunnel connection")
}

async fn handle(
    daemon: Arc<Daemon>,
    control_opened: Arc<AtomicBool>,
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
                if authority != Some(CONTROL_AUTHORITY) || control_opened.swap(true, Ordering::SeqCst) {
                    return Ok(body::text(StatusCode::BAD_REQUEST, "ggrokd: control stream refused"));
                }
                let on_upgrade = hyper::upgrade::on(&mut req);
                let daemon = daemon.clone();
                tokio::spawn(async move {
                    match on_upgrade.await {
                        Ok(stream) => {
                            let why = crate::control::run(daemon, stream).await;
                            debug!("control stream ended: {why}");
                        }
                        Err(e) => warn!("control stream upgrade failed: {e}"),
                    }
                });
                Response::new(body::empty())
            }
            Some(p) => match find_tunnel(&daemon, &req) {
                Ok(tunnel) => {
                    tunnel.count_request();
                    daemon.local.upgrade(&tunnel, p, req).await
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
        Ok(tunnel) => {
            tunnel.count_request();
            daemon.local.forward(&tunnel, req).await
        }
        Err(refusal) => refusal.into_response(),
    })
}

fn find_tunnel(daemon: &Daemon, req: &Request<Incoming>) -> Result<Arc<crate::tunnels::Tunnel>, Refusal> {
    let authority = req.uri().authority().map(|a| a.as_str()).unwrap_or("");
    let host = normalize_host(authority).map_err(|e| {
        Refusal::new(StatusCode::BAD_REQUEST, format!("ggrokd: invalid host {authority:?}: {e}"))
    })?;
    daemon.tunnels.lookup(&host).ok_or_else(|| {
        Refusal::new(StatusCode::NOT_FOUND, format!("ggrokd: no tunnel for host {host} on this daemon"))
    })
}
