//! Local services to put behind tunnels. One [`Upstream`] serves, on any path:
//!
//! - `/bytes/N`: N bytes of [`pattern`], streamed in 64 KiB chunks;
//! - `/pattern/OFFSET/N`: N bytes of [`pattern`] from byte OFFSET on (a body no other request of a
//!   load gets), with the request's `X-Forwarded-For` (the peer the server saw) sent back in
//!   [`SEEN_FORWARDED_FOR`];
//! - `/slow`: answers only after [`Upstream::release_slow`];
//! - `/status/N`: an empty response with status N;
//! - `/ws`: a WebSocket echo (text and binary);
//! - `/hop-headers`: a response carrying hop-by-hop headers next to an end-to-end one;
//! - `/trailers`: a chunked response ending in an `x-checksum` trailer;
//! - anything else: a JSON report of the request — method, path, query, headers in order, HTTP
//!   version, body length and SHA-256 (the body is hashed as it streams, never held whole), and
//!   the request's trailers.
//!
//! [`Upstream::start_tls`] serves the same over TLS (HTTPS, `h2` too when the acceptor offers it).

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The body of every answer the upstream gives.
pub type Body = BoxBody<Bytes, Infallible>;

/// The response header of `/pattern/…` that carries the request's `X-Forwarded-For`.
pub const SEEN_FORWARDED_FOR: &str = "x-seen-forwarded-for";

/// Period of [`pattern`]: a prime, so shifted or reordered chunks never hash the same.
const PATTERN_PERIOD: usize = 1_000_003;

fn pattern_block() -> &'static [u8] {
    static BLOCK: OnceLock<Vec<u8>> = OnceLock::new();
    BLOCK.get_or_init(|| {
        let mut rng = fastrand_like(0x6772_6f6b);
        // Twice the period, so any window up to one period is one slice.
        let block: Vec<u8> = (0..PATTERN_PERIOD).map(|_| rng()).collect();
        [block.as_slice(), block.as_slice()].concat()
    })
}

fn fastrand_like(mut state: u64) -> impl FnMut() -> u8 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 24) as u8
    }
}

/// `len` bytes of the test pattern starting at byte `offset` of the endless pattern stream.
pub fn pattern(offset: u64, len: usize) -> Bytes {
    assert!(len <= PATTERN_PERIOD);
    let start = (offset % PATTERN_PERIOD as u64) as usize;
    Bytes::copy_from_slice(&pattern_block()[start..start + len])
}

/// SHA-256 (hex) of the first `len` bytes of the pattern stream.
pub fn pattern_sha256(len: u64) -> String {
    let mut hash = Sha256::new();
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(1 << 19) as usize;
        hash.update(pattern(offset, n));
        offset += n as u64;
    }
    hex::encode(hash.finalize())
}

/// A running local service.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    release: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    /// Requests answered so far.
    pub served: Arc<AtomicU64>,
}

impl Upstream {
    /// Binds 127.0.0.1:0 and serves on the current tokio runtime until dropped with it.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Binds `addr` (to restart a service on the port it had) and serves until [`Upstream::stop`].
    pub async fn start_on(addr: SocketAddr) -> Self {
        Self::serve(TcpListener::bind(addr).await.expect("bind upstream"), None)
    }

    /// Like [`Upstream::start`], over TLS with `acceptor`; HTTP/1.1 or HTTP/2, whichever the
    /// client speaks.
    pub async fn start_tls(acceptor: tokio_rustls::TlsAcceptor) -> Self {
        Self::serve(TcpListener::bind("127.0.0.1:0").await.expect("bind upstream"), Some(acceptor))
    }

    /// Like [`Upstream::start`], with the kernel's send buffer of each connection fixed at
    /// `send_buffer` (doubled by the kernel): for tests that leave a thousand answers unread, whose
    /// autotuned buffers would otherwise run the machine's TCP memory out.
    pub async fn start_with_send_buffer(send_buffer: u32) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(send_buffer).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        Self::serve(socket.listen(1024).unwrap(), None)
    }

    fn serve(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let addr = listener.local_addr().unwrap();
        let (release, released) = watch::channel(false);
        let (stop, stopped) = watch::channel(false);
        let served = Arc::new(AtomicU64::new(0));
        let counter = served.clone();
        tokio::spawn(async move {
            let mut stop_accepting = stopped.clone();
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                    _ = stop_accepting.wait_for(|s| *s) => return,
                };
                let (released, counter, mut stopped) = (released.clone(), counter.clone(), stopped.clone());
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        counter.fetch_add(1, Ordering::Relaxed);
                        handle(req, released.clone())
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let Some(tls) = tls else {
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        tokio::select! {
                            _ = conn => {}
                            _ = stopped.wait_for(|s| *s) => {}
                        }
                        return;
                    };
                    let Ok(stream) = tls.accept(stream).await else { return };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = stopped.wait_for(|s| *s) => {}
                    }
                });
            }
        });
        Self { addr, release, stop, served }
    }

    /// Stops listening and closes every connection, as a service that exits.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Lets every waiting and future `/slow` request answer.
    pub fn release_slow(&self) {
        let _ = self.release.send(true);
    }

    /// The port, as a string for `local = "…"`.
    pub fn port(&self) -> String {
        self.addr.port().to_string()
    }
}

async fn handle(
    req: Request<Incoming>,
    mut released: watch::Receiver<bool>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/ws" {
        return Ok(websocket(req));
    }
    if path == "/slow" {
        let _ = released.wait_for(|r| *r).await;
        return Ok(text(StatusCode::OK, "slow done"));
    }
    if let Some(n) = path.strip_prefix("/status/") {
        let status =
            n.parse().ok().and_then(|n| StatusCode::from_u16(n).ok()).unwrap_or(StatusCode::BAD_REQUEST);
        return Ok(text(status, ""));
    }
    if path == "/hop-headers" {
        return Ok(Response::builder()
            .header(header::CONNECTION, "x-private")
            .header("x-private", "1")
            .header("keep-alive", "timeout=5")
            .header("x-public", "yes")
            .body(Full::new(Bytes::from_static(b"ok")).boxed())
            .unwrap());
    }
    if path == "/trailers" {
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"body"))),
            Ok(Frame::trailers(http::HeaderMap::from_iter([(
                http::HeaderName::from_static("x-checksum"),
                http::HeaderValue::from_static("abc123"),
            )]))),
        ];
        return Ok(Response::builder()
            .header(header::TRAILER, "x-checksum")
            .body(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames))))
            .unwrap());
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let Ok(len) = n.parse::<u64>() else { return Ok(text(StatusCode::BAD_REQUEST, "bad length")) };
        return Ok(stream_pattern(len));
    }
    if let Some(rest) = path.strip_prefix("/pattern/") {
        let parsed = rest.split_once('/').and_then(|(o, n)| Some((o.parse().ok()?, n.parse().ok()?)));
        let Some((offset, len)) = parsed.filter(|(_, n)| *n <= PATTERN_PERIOD) else {
            return Ok(text(StatusCode::BAD_REQUEST, "bad offset or length"));
        };
        let mut resp = Response::new(Full::new(pattern(offset, len)).boxed());
        if let Some(seen) = req.headers().get("x-forwarded-for") {
            resp.headers_mut().insert(SEEN_FORWARDED_FOR, seen.clone());
        }
        return Ok(resp);
    }
    Ok(echo(req).await)
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_owned())).boxed());
    *resp.status_mut() = status;
    resp
}

fn stream_pattern(len: u64) -> Response<Body> {
    const CHUNK: u64 = 64 * 1024;
    let chunks = futures_util::stream::unfold(0u64, move |offset| async move {
        (offset < len).then(|| {
            let n = (len - offset).min(CHUNK);
            (Ok::<_, Infallible>(Frame::data(pattern(offset, n as usize))), offset + n)
        })
    });
    Response::builder()
        .header(header::CONTENT_LENGTH, len)
        .body(BodyExt::boxed(StreamBody::new(chunks)))
        .unwrap()
}

async fn echo(req: Request<Incoming>) -> Response<Body> {
    let (parts, mut body) = req.into_parts();
    let mut hash = Sha256::new();
    let mut len = 0u64;
    let mut first = Vec::new();
    let mut trailers = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return text(StatusCode::BAD_REQUEST, "body error") };
        let frame = match frame.into_trailers() {
            Ok(fields) => {
                let text = |v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
                trailers.extend(fields.iter().map(|(k, v)| (k.as_str().to_owned(), text(v))));
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(data) = frame.into_data() {
            hash.update(&data);
            len += data.len() as u64;
            if first.len() < 4096 {
                first.extend_from_slice(&data[..data.len().min(4096 - first.len())]);
            }
        }
    }
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let report = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_len": len,
        "body_sha256": hex::encode(hash.finalize()),
        "body_start": String::from_utf8_lossy(&first),
        "trailers": trailers,
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(report.to_string())).boxed())
        .unwrap()
}

/// Answers a WebSocket handshake with 101 and echoes every text and binary message (400 when it
/// is not a WebSocket request).
pub fn websocket(mut req: Request<Incoming>) -> Response<Body> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return text(StatusCode::BAD_REQUEST, "not a websocket request");
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Full::new(Bytes::new()).boxed())
        .unwrap()
}

/// A port on 127.0.0.1 where nothing listens, held so no other test can take it: a socket bound
/// there without `listen`, so connections are refused. Keep the socket alive while the port must
/// stay closed; drop it to let something else bind the port.
///
/// The port is taken below the kernel's ephemeral range: once the socket is dropped, a client
/// that keeps dialling the port (a ggrokd retrying a server that is down) could otherwise be
/// given that very port as its own source port and connect to itself (TCP simultaneous open),
/// holding the port before the server the test starts there can bind it.
pub fn closed_port() -> (tokio::net::TcpSocket, String) {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    for _ in 0..500 {
        let port = fastrand::u16(10_000..ephemeral_start.max(10_001));
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        if socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], port))).is_ok() {
            return (socket, port.to_string());
        }
    }
    panic!("no free port below the ephemeral range ({ephemeral_start}) after 500 tries");
}
