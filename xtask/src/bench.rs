//! `cargo xtask bench`: small-request throughput and latency through ggrok against a direct
//! connection to the same local service, measured side by side in one run (rounds interleaved:
//! direct, ggrok, direct, ggrok, …) on loopback, with release builds. It prints figures and ratios;
//! it never asserts a speed.
//!
//! This is the first part of the benchmark issue: rathole, bulk streams, WebSocket round trips and
//! memory figures are still to come.

use anyhow::{Context, bail};
use bytes::Bytes;
use ggrok_tests::process::Process;
use ggrok_tests::upstream::Upstream;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Settings of one run.
struct Plan {
    connections: usize,
    duration: Duration,
    rounds: usize,
}

/// Parses `[--smoke] [--connections N] [--seconds S] [--rounds R]`, rebuilds itself in release
/// mode if needed, and runs.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace root")?.to_owned();
    let mut plan = Plan { connections: 64, duration: Duration::from_secs(10), rounds: 3 };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value =
            || it.next().context("missing value").and_then(|v| v.parse::<u64>().context("not a number"));
        match arg.as_str() {
            "--smoke" => plan = Plan { connections: 4, duration: Duration::from_millis(500), rounds: 1 },
            "--connections" => plan.connections = value()? as usize,
            "--seconds" => plan.duration = Duration::from_secs(value()?),
            "--rounds" => plan.rounds = value()? as usize,
            other => bail!(
                "unknown option {other:?}; usage: cargo xtask bench [--smoke] [--connections N] [--seconds S] [--rounds R]"
            ),
        }
    }
    let release = root.join("target/release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building release binaries ...");
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "-p", "ggrok-server", "-p", "ggrokd"])
        .current_dir(&root)
        .status()?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    measure(&release, &plan)
}

#[tokio::main]
async fn measure(release: &Path, plan: &Plan) -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir()?;
    let (server, daemon, tunnel) = start_tunnel(release, dir.path(), &upstream)?;
    println!(
        "small requests: 100-byte responses, {} keep-alive connections, {:?} per path and round, {} rounds",
        plan.connections, plan.duration, plan.rounds
    );
    println!("{:<8} {:>6} {:>12} {:>10} {:>10}", "path", "round", "req/s", "p50 ms", "p99 ms");
    let mut direct_rates = Vec::new();
    let mut ggrok_rates = Vec::new();
    for round in 1..=plan.rounds {
        for (name, addr, host) in [("direct", upstream.addr, "direct"), ("ggrok", tunnel, "bench.test")] {
            let result = load(addr, host, plan.connections, plan.duration).await?;
            println!(
                "{name:<8} {round:>6} {:>12.0} {:>10.3} {:>10.3}",
                result.rate,
                result.p50.as_secs_f64() * 1e3,
                result.p99.as_secs_f64() * 1e3
            );
            if name == "direct" { direct_rates.push(result.rate) } else { ggrok_rates.push(result.rate) }
        }
    }
    let (direct, ggrok) = (median(&mut direct_rates), median(&mut ggrok_rates));
    println!("median req/s: direct {direct:.0}, ggrok {ggrok:.0}; ggrok/direct = {:.2}", ggrok / direct);
    println!("peak RSS: ggrok-server {} KiB, ggrokd {} KiB", server.peak_rss_kib(), daemon.peak_rss_kib());
    Ok(())
}

fn start_tunnel(
    release: &Path,
    dir: &Path,
    upstream: &Upstream,
) -> anyhow::Result<(Process, Process, SocketAddr)> {
    let token = "bench-token-0123456789abcdef";
    let server_toml = dir.join("server.toml");
    std::fs::write(
        &server_toml,
        format!(
            "listen = \"127.0.0.1:0\"\nlog_level = \"warn,ggrok_server=info\"\n[[client]]\nname = \"bench\"\ntoken = \"{token}\"\nhosts = [\"bench.test\"]\n"
        ),
    )?;
    let server = Process::spawn_echo(
        &binary(release, "ggrok-server"),
        &["--config", server_toml.to_str().unwrap()],
        &[],
        false,
    );
    let line = server.wait_for(&["listening on"]);
    let addr: SocketAddr = ggrok_tests::process::listening_address(&line).context("server address")?;
    let daemon_toml = dir.join("ggrokd.toml");
    std::fs::write(
        &daemon_toml,
        format!(
            "server = \"ws://{addr}\"\ntoken = \"{token}\"\n[[tunnel]]\nhost = \"bench.test\"\nlocal = \"127.0.0.1:{}\"\n",
            upstream.port()
        ),
    )?;
    let socket = dir.join("ggrokd.sock");
    let daemon = Process::spawn_echo(
        &binary(release, "ggrokd"),
        &["--config", daemon_toml.to_str().unwrap(), "--socket", socket.to_str().unwrap()],
        &[],
        false,
    );
    daemon.wait_for(&["tunnel online"]);
    Ok((server, daemon, addr))
}

fn binary(release: &Path, name: &str) -> PathBuf {
    release.join(name)
}

struct Load {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

/// `connections` keep-alive connections each sending `GET /bytes/100` back to back for `duration`.
async fn load(addr: SocketAddr, host: &str, connections: usize, duration: Duration) -> anyhow::Result<Load> {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let host = host.to_owned();
            tokio::spawn(async move { one_connection(addr, &host, deadline).await })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    if latencies.is_empty() {
        bail!("no request completed");
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Ok(Load { rate: latencies.len() as f64 / elapsed.as_secs_f64(), p50: at(0.5), p99: at(0.99) })
}

async fn one_connection(addr: SocketAddr, host: &str, deadline: Instant) -> anyhow::Result<Vec<Duration>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let start = Instant::now();
        let req = Request::get("/bytes/100").header("host", host).body(Empty::new())?;
        let resp = sender.send_request(req).await?;
        let body = resp.into_body().collect().await?.to_bytes();
        if body.len() != 100 {
            bail!("short response: {} bytes", body.len());
        }
        latencies.push(start.elapsed());
    }
    Ok(latencies)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
