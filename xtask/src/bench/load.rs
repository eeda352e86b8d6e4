//! The load the benchmark puts on each path: small requests over many keep-alive connections, one
//! bulk stream each way, and WebSocket round trips. All of it is HTTP/1.1 from this process, as a
//! public client would send it.

use super::upstream;
use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Where a path is reached: the address to connect to and the `Host` to send.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
}

/// Requests per second and latency quantiles of one measurement.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub count: usize,
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// `connections` keep-alive connections each sending `GET /bytes/100` back to back for `duration`.
pub async fn small_requests(target: &Target, connections: usize, duration: Duration) -> anyhow::Result<Rate> {
    small_requests_spread(std::slice::from_ref(target), connections, duration).await
}

/// [`small_requests`] with the connections spread evenly over `targets`, one rate for them all.
pub async fn small_requests_spread(
    targets: &[Target],
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Rate> {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            let target = targets[i % targets.len()].clone();
            tokio::spawn(async move { one_connection(&target, deadline).await })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    ensure!(!latencies.is_empty(), "no request completed");
    let (p50, p99) = quantiles(&mut latencies);
    Ok(Rate { count: latencies.len(), per_second: latencies.len() as f64 / elapsed.as_secs_f64(), p50, p99 })
}

/// The 50th and 99th percentiles.
pub fn quantiles(latencies: &mut [Duration]) -> (Duration, Duration) {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

async fn one_connection(target: &Target, deadline: Instant) -> anyhow::Result<Vec<Duration>> {
    let mut sender = http1::<Empty<Bytes>>(target.addr).await?;
    let mut latencies = Vec::with_capacity(64 * 1024);
    // At least one request, so a zero duration is a readiness probe.
    loop {
        let start = Instant::now();
        let req = Request::get("/bytes/100").header("host", &target.host).body(Empty::new())?;
        let resp = sender.send_request(req).await?;
        ensure!(resp.status().is_success(), "status {}", resp.status());
        let body = resp.into_body().collect().await?.to_bytes();
        ensure!(body.len() == 100, "short response: {} bytes", body.len());
        latencies.push(start.elapsed());
        if Instant::now() >= deadline {
            return Ok(latencies);
        }
    }
}

async fn http1<B>(addr: SocketAddr) -> anyhow::Result<hyper::client::conn::http1::SendRequest<B>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One `GET /bytes/{bytes}` read to the end: megabytes (10^6) per second.
pub async fn download(target: &Target, bytes: u64) -> anyhow::Result<f64> {
    let mut sender = http1::<Empty<Bytes>>(target.addr).await?;
    let started = Instant::now();
    let req = Request::get(format!("/bytes/{bytes}")).header("host", &target.host).body(Empty::new())?;
    let resp = sender.send_request(req).await?;
    ensure!(resp.status().is_success(), "status {}", resp.status());
    let mut body = resp.into_body();
    let mut got = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            got += data.len() as u64;
        }
    }
    ensure!(got == bytes, "download ended after {got} of {bytes} bytes");
    Ok(bytes as f64 / 1e6 / started.elapsed().as_secs_f64())
}

/// One `POST /sink` of `bytes` bytes: megabytes (10^6) per second, until the service's answer.
pub async fn upload(target: &Target, bytes: u64) -> anyhow::Result<f64> {
    type Chunks = StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;
    let mut sender = http1::<Chunks>(target.addr).await?;
    let block = upstream::block();
    let chunks = futures_util::stream::unfold(0u64, move |sent| {
        let block = block.clone();
        async move {
            (sent < bytes).then(|| {
                let n = (bytes - sent).min(block.len() as u64);
                (Ok(Frame::data(block.slice(..n as usize))), sent + n)
            })
        }
    });
    let started = Instant::now();
    let req = Request::post("/sink")
        .header("host", &target.host)
        .header("content-length", bytes)
        .body(StreamBody::new(chunks.boxed()))?;
    let resp = sender.send_request(req).await?;
    ensure!(resp.status().is_success(), "status {}", resp.status());
    let answer = resp.into_body().collect().await?.to_bytes();
    ensure!(answer == bytes.to_string().as_bytes(), "the service got {answer:?} of {bytes} bytes");
    Ok(bytes as f64 / 1e6 / started.elapsed().as_secs_f64())
}

/// `count` 32-byte WebSocket messages sent one at a time, each waiting for its echo: p50 and p99
/// of the round trip.
pub async fn websocket_round_trips(target: &Target, count: usize) -> anyhow::Result<(Duration, Duration)> {
    let stream = TcpStream::connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let mut request = format!("ws://{}/ws", target.addr).into_client_request()?;
    request.headers_mut().insert("host", target.host.parse()?);
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream).await?;
    let payload = Bytes::from_static(&[7u8; 32]);
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        ws.send(Message::Binary(payload.clone())).await?;
        match ws.next().await {
            Some(Ok(Message::Binary(echo))) if echo == payload => latencies.push(start.elapsed()),
            other => bail!("unexpected WebSocket answer: {other:?}"),
        }
    }
    ws.close(None).await?;
    Ok(quantiles(&mut latencies))
}
