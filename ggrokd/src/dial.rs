//! Dialling the server's tunnel endpoint: TCP (and TLS for `wss://`), then the upgrade the
//! tunnel's HTTP/2 runs on, with the token and the range of protocol versions this build speaks.
//!
//! Two carriers:
//! - WebSocket: `Upgrade: websocket`; HTTP/2 over binary messages. Passes any proxy that passes
//!   WebSockets.
//! - Raw: `Upgrade: ggrok-h2`; after the `101`, HTTP/2 straight on the connection's bytes, without
//!   WebSocket framing. A proxy on the way must pass an upgrade it does not know.
//!
//! `transport = "auto"` tries raw first; when the answer is not a `101` with `Upgrade: ggrok-h2`
//! (except `401`, the usual bad token), or the upgrade fails or times out, it says so once, dials
//! the WebSocket at once and keeps to it for this endpoint ([`Daemon::remember_raw_fallback`]).
//! A `404` that the WebSocket gets too is the path's, not the raw upgrade's: it is reported as
//! [`NoEndpoint`], and raw is tried again next time.

use crate::config::Transport;
use crate::daemon::{Daemon, Endpoint};
use anyhow::{Context, anyhow};
use bytes::Bytes;
use ggrok_proto::{HEADER_PROTOCOL, HEADER_PROTOCOL_MAX, tuning, version};
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::either::Either;
use tracing::{debug, info};

use ggrok_proto::RAW_TRANSPORT;

/// The connection to the server: plain TCP for `ws://`, TLS for `wss://`.
pub type ServerStream = Either<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>;

/// What the tunnel's HTTP/2 runs on.
pub enum Carrier {
    /// Binary WebSocket messages (boxed: the WebSocket state is large, the raw stream small).
    WebSocket(Box<WebSocketStream<ServerStream>>),
    /// The upgraded connection itself.
    Raw(TokioIo<Upgraded>),
}

/// A connection to the server, upgraded, with the protocol version the server chose.
pub struct Dialled {
    /// The upgraded connection.
    pub carrier: Carrier,
    /// The version agreed on.
    pub protocol: u32,
    /// The server address reached.
    pub address: Option<SocketAddr>,
}

impl Dialled {
    /// `websocket` or `raw`, as `ggrokctl status` shows it.
    pub fn transport(&self) -> &'static str {
        match self.carrier {
            Carrier::WebSocket(_) => "websocket",
            Carrier::Raw(_) => "raw",
        }
    }
}

/// Why a raw upgrade did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawFailure {
    /// 401: the token is wrong or missing, whatever the transport.
    Unauthorized,
    /// Any other answer than `101` with `Upgrade: ggrok-h2` (a server or proxy that does not
    /// know the raw upgrade).
    Declined {
        /// The status.
        status: StatusCode,
        /// The start of the answer's body.
        text: String,
    },
    /// The server upgraded but chose a protocol version this build does not speak.
    Version(String),
    /// The connection failed during the upgrade.
    Io(String),
    /// No answer within the handshake timeout.
    Timeout,
}

impl fmt::Display for RawFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawFailure::Unauthorized => f.write_str(UNAUTHORIZED),
            RawFailure::Declined { status, text } if text.is_empty() => write!(f, "answered {status}"),
            RawFailure::Declined { status, text } => write!(f, "answered {status}: {text}"),
            RawFailure::Version(e) => f.write_str(e),
            RawFailure::Io(e) => write!(f, "connection failed during the upgrade: {e}"),
            RawFailure::Timeout => write!(f, "no answer within {}s", tuning::HANDSHAKE_TIMEOUT.as_secs()),
        }
    }
}

/// After a failed raw upgrade: dial the WebSocket, or report the failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The path does not pass raw upgrades: dial the WebSocket now, and from now on.
    FallBack,
    /// An error to report (and retry with backoff).
    Fail,
}

/// What to do after `failure` with `transport`: `auto` falls back on anything that says the path
/// does not pass raw upgrades; a bad token or a version mismatch would fail the same over the
/// WebSocket, and `raw` never falls back.
pub fn after_raw_failure(transport: Transport, failure: &RawFailure) -> Step {
    match (transport, failure) {
        (_, RawFailure::Unauthorized | RawFailure::Version(_)) => Step::Fail,
        (Transport::Auto, _) => Step::FallBack,
        _ => Step::Fail,
    }
}

const UNAUTHORIZED: &str =
    "unauthorized: the server rejected the token, or wants one (401); check `token` in the config";

/// A `404` to the tunnel's handshake: nothing takes tunnels at the URL's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoEndpoint {
    /// The server URL dialled.
    pub url: String,
    /// The first line of the answer's body.
    pub text: String,
}

impl NoEndpoint {
    fn new(url: &str, body: &str) -> Self {
        let text: String = body.trim().lines().next().unwrap_or("").trim().chars().take(200).collect();
        Self { url: url.to_owned(), text }
    }
}

impl fmt::Display for NoEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no ggrok tunnel endpoint at {}: the server answered 404 Not Found", self.url)?;
        if !self.text.is_empty() {
            write!(f, " ({:?})", self.text)?;
        }
        f.write_str("; check the path of the server URL against the server's tunnel_path (default /$$ggrok)")
    }
}

impl std::error::Error for NoEndpoint {}

/// The [`NoEndpoint`] a raw upgrade's `404` means.
fn no_endpoint(url: &str, failure: &RawFailure) -> Option<NoEndpoint> {
    match failure {
        RawFailure::Declined { status, text } if *status == StatusCode::NOT_FOUND => {
            Some(NoEndpoint::new(url, text))
        }
        _ => None,
    }
}

/// Dials `endpoint` (at `target`, one of the addresses its name resolves to, or any of them when
/// `None`) and upgrades, by its transport.
pub async fn connect(
    daemon: &Daemon,
    endpoint: &Endpoint,
    target: Option<SocketAddr>,
) -> anyhow::Result<Dialled> {
    let headers = handshake_headers(endpoint)?;
    let try_raw = match endpoint.transport {
        Transport::WebSocket => false,
        Transport::Raw => true,
        Transport::Auto => !daemon.raw_fell_back(endpoint),
    };
    let mut fell_back = None;
    if try_raw {
        let url = &endpoint.server.url;
        let stream = tokio::time::timeout(tuning::HANDSHAKE_TIMEOUT, open(endpoint, target))
            .await
            .map_err(|_| anyhow!("timed out connecting to {url}"))??;
        let upgrade = tokio::time::timeout(tuning::HANDSHAKE_TIMEOUT, raw(endpoint, headers.clone(), stream));
        let failure = match upgrade.await {
            Ok(Ok(dialled)) => return Ok(dialled),
            Ok(Err(failure)) => failure,
            Err(_) => RawFailure::Timeout,
        };
        match after_raw_failure(endpoint.transport, &failure) {
            Step::Fail => {
                return Err(match no_endpoint(url, &failure) {
                    Some(none) => none.into(),
                    None => anyhow!("raw upgrade to {url}: {failure}"),
                });
            }
            Step::FallBack => fell_back = Some(failure),
        }
    }
    let dialled = tokio::time::timeout(tuning::HANDSHAKE_TIMEOUT, websocket(endpoint, target, headers))
        .await
        .map_err(|_| anyhow!("timed out connecting to {}", endpoint.server.url))
        .and_then(|dialled| dialled);
    if let Some(failure) = fell_back {
        // A 404 to both says nothing of raw upgrades: the path is wrong (and raw is tried again).
        let path_is_wrong = no_endpoint(&endpoint.server.url, &failure).is_some()
            && dialled.as_ref().err().is_some_and(|e| e.is::<NoEndpoint>());
        if path_is_wrong {
            debug!("raw upgrade: {failure}; the WebSocket got 404 too");
        } else if daemon.remember_raw_fallback(endpoint) {
            info!(server = %endpoint.server.authority, raw = %failure, "the path to the server does not pass raw upgrades; using WebSocket");
        } else {
            debug!("raw upgrade: {failure}; using WebSocket");
        }
    }
    dialled
}

/// The headers of either upgrade: the token, and the range of protocol versions.
fn handshake_headers(endpoint: &Endpoint) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    if let Some(token) = &endpoint.token {
        let bearer = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| anyhow!("the token contains characters not allowed in an HTTP header"))?;
        headers.insert(header::AUTHORIZATION, bearer);
    }
    headers.insert(HEADER_PROTOCOL, HeaderValue::from(ggrok_proto::PROTOCOL_MIN));
    headers.insert(HEADER_PROTOCOL_MAX, HeaderValue::from(version::newest_from_env()));
    Ok(headers)
}

/// TCP (to `target`, else to any address of the server's name), and TLS for `wss://`.
async fn open(endpoint: &Endpoint, target: Option<SocketAddr>) -> anyhow::Result<ServerStream> {
    let url = &endpoint.server.url;
    let tcp = match target {
        Some(address) => TcpStream::connect(address).await,
        None => TcpStream::connect(&endpoint.server.authority).await,
    };
    let tcp = tcp.map_err(|e| match target {
        Some(address) => anyhow!("cannot connect to {url} at {address}: {e}"),
        None => anyhow!("cannot connect to {url}: {e}"),
    })?;
    let _ = tcp.set_nodelay(true);
    Ok(if endpoint.server.tls {
        let tls = crate::tls::client_config(endpoint.ca_file.as_deref()).map_err(|e| anyhow!(e))?;
        Either::Right(crate::tls::connect(tls, &endpoint.server.host, tcp).await.map_err(|e| anyhow!(e))?)
    } else {
        Either::Left(tcp)
    })
}

/// The protocol version of a `101` answer.
fn chosen(headers: &HeaderMap) -> Result<u32, String> {
    version::chosen(headers.get(HEADER_PROTOCOL).and_then(|v| v.to_str().ok()))
}

async fn websocket(
    endpoint: &Endpoint,
    target: Option<SocketAddr>,
    headers: HeaderMap,
) -> anyhow::Result<Dialled> {
    let url = &endpoint.server.url;
    let mut request = url.as_str().into_client_request().context("server URL")?;
    request.headers_mut().extend(headers);
    let stream = open(endpoint, target).await?;
    let address = peer(&stream);
    let config = ggrok_proto::wsio::config();
    match tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await {
        Ok((ws, resp)) => {
            let protocol = chosen(resp.headers()).map_err(|e| anyhow!(e))?;
            Ok(Dialled { carrier: Carrier::WebSocket(Box::new(ws)), protocol, address })
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            if resp.status() == StatusCode::UNAUTHORIZED {
                return Err(anyhow!(UNAUTHORIZED));
            }
            let text =
                resp.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default().trim().to_owned();
            if resp.status() == StatusCode::NOT_FOUND {
                return Err(NoEndpoint::new(url, &text).into());
            }
            Err(anyhow!("the server refused the tunnel: {} {text}", resp.status()))
        }
        Err(e) => Err(anyhow!("WebSocket handshake with {url} failed: {e}")),
    }
}

/// `GET <path>` with `Upgrade: ggrok-h2` over HTTP/1.1 on `stream`; on `101`, the connection.
async fn raw(endpoint: &Endpoint, headers: HeaderMap, stream: ServerStream) -> Result<Dialled, RawFailure> {
    let io_error = |e: hyper::Error| RawFailure::Io(ggrok_proto::headers::error_chain(&e));
    let address = peer(&stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(io_error)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!("raw upgrade connection: {e}");
        }
    });
    let mut request = Request::get(&endpoint.server.path)
        .header(header::HOST, &endpoint.server.authority)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, RAW_TRANSPORT)
        .body(Empty::new())
        .map_err(|e| RawFailure::Io(format!("invalid request: {e}")))?;
    request.headers_mut().extend(headers);
    let response = sender.send_request(request).await.map_err(io_error)?;
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        return Err(RawFailure::Unauthorized);
    }
    let upgraded_to_raw = response
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(RAW_TRANSPORT));
    if status != StatusCode::SWITCHING_PROTOCOLS || !upgraded_to_raw {
        return Err(RawFailure::Declined { status, text: body_text(response).await });
    }
    let protocol = chosen(response.headers()).map_err(RawFailure::Version)?;
    let upgraded = hyper::upgrade::on(response).await.map_err(io_error)?;
    Ok(Dialled { carrier: Carrier::Raw(TokioIo::new(upgraded)), protocol, address })
}

/// The address `stream` is connected to.
fn peer(stream: &ServerStream) -> Option<SocketAddr> {
    match stream {
        Either::Left(tcp) => tcp.peer_addr().ok(),
        Either::Right(tls) => tls.get_ref().0.peer_addr().ok(),
    }
}

/// The first line of an answer's body (at most 1 KiB, within a second), for the log.
async fn body_text(response: http::Response<hyper::body::Incoming>) -> String {
    let body = Limited::new(response.into_body(), 1024);
    match tokio::time::timeout(Duration::from_secs(1), body.collect()).await {
        Ok(Ok(collected)) => {
            String::from_utf8_lossy(&collected.to_bytes()).lines().next().unwrap_or("").trim().to_owned()
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests;
