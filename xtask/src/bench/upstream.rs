//! The local service every path of the benchmark reaches: as cheap as a hyper server can be, so the
//! figures measure the tunnels rather than the service.
//!
//! - `GET /bytes/N`: N bytes, sent as clones of one shared 256 KiB block (no copy per chunk);
//! - `POST /sink`: reads the body, drops it, answers with the byte count;
//! - `GET /ws`: a WebSocket echo (the tests' own, [`ggrok_tests::upstream::websocket`]);
//! - anything else: 404.

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::OnceLock;
use tokio::net::TcpListener;

use ggrok_tests::upstream::Body;

/// Size of the block bulk bodies are cut from, and of each upload chunk.
pub const BLOCK: usize = 256 * 1024;

/// The shared block of bulk bytes.
pub fn block() -> Bytes {
    static BLOCK_BYTES: OnceLock<Bytes> = OnceLock::new();
    BLOCK_BYTES.get_or_init(|| Bytes::from((0..BLOCK).map(|i| (i % 251) as u8).collect::<Vec<u8>>())).clone()
}

/// Binds 127.0.0.1:0 and serves on the current runtime until it ends.
pub async fn start() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|req| async move { Ok::<_, Infallible>(handle(req).await) });
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(addr)
}

async fn handle(req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    if path == "/ws" {
        return ggrok_tests::upstream::websocket(req);
    }
    if path == "/sink" {
        let mut body = req.into_body();
        let mut len = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                len += data.len() as u64;
            }
        }
        return Response::new(Full::new(Bytes::from(len.to_string())).boxed());
    }
    match path.strip_prefix("/bytes/").and_then(|n| n.parse::<u64>().ok()) {
        Some(len) if len <= BLOCK as u64 => Response::builder()
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Full::new(block().slice(..len as usize)).boxed())
            .expect("valid response"),
        Some(len) => {
            let chunks = futures_util::stream::unfold(0u64, move |sent| async move {
                (sent < len).then(|| {
                    let n = (len - sent).min(BLOCK as u64);
                    (Ok::<_, Infallible>(Frame::data(block().slice(..n as usize))), sent + n)
                })
            });
            Response::builder()
                .header(header::CONTENT_LENGTH, len)
                .body(BodyExt::boxed(StreamBody::new(chunks)))
                .expect("valid response")
        }
        None => {
            let mut resp = Response::new(Full::new(Bytes::from_static(b"not found")).boxed());
            *resp.status_mut() = StatusCode::NOT_FOUND;
            resp
        }
    }
}
