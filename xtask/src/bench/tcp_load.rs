//! The load of the part `tcp`, raw TCP from this process as a public client would send it, in the
//! protocol of [`super::tcp_service`]: one stream each way, and many small connections. Every byte
//! is checked (the download against the block it was cut from, the upload by the count the service
//! read, each echo against what went), so a broken tunnel fails the run instead of reporting a
//! speed; a step that moves nothing for [`STALL`] fails it too.

use super::load::{Rate, quantiles};
use super::tcp_service::PING;
use super::upstream::{BLOCK, block};
use anyhow::{Context, ensure};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one step (connect, a read, a write) may take before the run fails.
pub const STALL: Duration = Duration::from_secs(20);

/// `what` within [`STALL`].
async fn step<T>(what: &str, f: impl Future<Output = std::io::Result<T>>) -> anyhow::Result<T> {
    match tokio::time::timeout(STALL, f).await {
        Ok(result) => result.with_context(|| what.to_owned()),
        Err(_) => anyhow::bail!("{what}: nothing moved for {STALL:?}"),
    }
}

async fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = step(&format!("connect {addr}"), TcpStream::connect(addr)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn request(op: u8, len: u64) -> [u8; 9] {
    let mut head = [op; 9];
    head[1..].copy_from_slice(&len.to_be_bytes());
    head
}

/// One `D` of `bytes` bytes read to the end, each byte compared with the block: megabytes (10^6)
/// per second, from connect to the service's close.
pub async fn download(addr: SocketAddr, bytes: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut stream = connect(addr).await?;
    step("send the download request", stream.write_all(&request(b'D', bytes))).await?;
    let block = block();
    let mut buf = vec![0u8; BLOCK];
    let mut got = 0u64;
    loop {
        let n = step("download", stream.read(&mut buf)).await?;
        if n == 0 {
            break;
        }
        ensure!(got + n as u64 <= bytes, "download: more than the {bytes} bytes asked");
        // The stream is the block repeated: compare piece by piece where it wraps.
        let mut done = 0;
        while done < n {
            let at = ((got + done as u64) % BLOCK as u64) as usize;
            let len = (n - done).min(BLOCK - at);
            ensure!(
                buf[done..done + len] == block[at..at + len],
                "download: wrong bytes at offset {}",
                got + done as u64
            );
            done += len;
        }
        got += n as u64;
    }
    ensure!(got == bytes, "download ended after {got} of {bytes} bytes");
    Ok(bytes as f64 / 1e6 / started.elapsed().as_secs_f64())
}

/// One `U` of `bytes` bytes, cut from the block: megabytes (10^6) per second, from connect to the
/// service's answer (the count it read, which must be `bytes`).
pub async fn upload(addr: SocketAddr, bytes: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut stream = connect(addr).await?;
    step("send the upload request", stream.write_all(&request(b'U', bytes))).await?;
    let block = block();
    let mut sent = 0u64;
    while sent < bytes {
        let n = (bytes - sent).min(BLOCK as u64) as usize;
        step("upload", stream.write_all(&block[..n])).await?;
        sent += n as u64;
    }
    let mut answer = Vec::with_capacity(8);
    step("read the upload's answer", stream.read_to_end(&mut answer)).await?;
    ensure!(answer.len() == 8, "upload: the answer was {} bytes, not 8", answer.len());
    let count = u64::from_be_bytes(answer[..].try_into()?);
    ensure!(count == bytes, "upload: the service read {count} of {bytes} bytes");
    Ok(bytes as f64 / 1e6 / started.elapsed().as_secs_f64())
}

/// One small connection: connect, send `P` and [`PING`] bytes made from `seed`, read the echo to
/// the service's close, check it, close.
pub async fn ping(addr: SocketAddr, seed: u64) -> anyhow::Result<()> {
    let mut message = [b'P'; 1 + PING];
    for (i, byte) in message[1..].iter_mut().enumerate() {
        *byte = (seed.rotate_left(i as u32 * 7) ^ i as u64) as u8;
    }
    let mut stream = connect(addr).await?;
    step("send the ping", stream.write_all(&message)).await?;
    let mut echo = Vec::with_capacity(PING);
    step("read the echo", stream.read_to_end(&mut echo)).await?;
    ensure!(echo.len() == PING, "the echo was {} bytes, not {PING}", echo.len());
    ensure!(echo[..] == message[1..], "the echo differs from what was sent");
    Ok(())
}

/// `workers` tasks each making small connections ([`ping`]) back to back for `duration` (at least
/// one each, so a zero duration is a readiness probe): connections per second and the quantiles
/// of the whole connect-to-close time.
pub async fn connections(addr: SocketAddr, workers: usize, duration: Duration) -> anyhow::Result<Rate> {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..workers as u64)
        .map(|worker| {
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(16 * 1024);
                for n in 0u64.. {
                    let start = Instant::now();
                    ping(addr, worker << 40 | n)
                        .await
                        .with_context(|| format!("connection {n} of worker {worker}"))?;
                    latencies.push(start.elapsed());
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    let (p50, p99) = quantiles(&mut latencies);
    Ok(Rate { count: latencies.len(), per_second: latencies.len() as f64 / elapsed.as_secs_f64(), p50, p99 })
}
