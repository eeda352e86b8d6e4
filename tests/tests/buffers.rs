//! Memory stays bounded when public clients stop reading: a thousand downloads that stall, over
//! ten tunnels and four daemon connections, hold no more than `[limits] buffer_memory` (plus what
//! each connection costs anyway) in ggrok-server, and a bounded amount per download in ggrokd; the stream windows shrink
//! while they are stalled and grow back when they are gone; small requests, a slow reader and a
//! fast download go on meanwhile; the stalled ones are closed after `stalled_read_timeout`.

use ggrok_tests::admin::{ADMIN_CONFIG, Admin};
use ggrok_tests::client::Public;
use ggrok_tests::cluster::Cluster;
use ggrok_tests::process::{assert_within, peaks};
use ggrok_tests::upstream::Upstream;
use http::StatusCode;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const STALLED: usize = 1000;
const TUNNELS: usize = 10;
const BUDGET: u64 = 64 << 20;
/// The inspector's cap (`inspect_memory`) in these tests.
const INSPECT_MEMORY: u64 = 8 << 20;
/// What a public connection costs the server whatever it carries (hyper's buffers, the task, the
/// stream's state), allowed on top of the budget; the windows are what the budget bounds.
const PER_CONNECTION: u64 = 96 << 10;
/// What ggrokd may hold per stalled download; see the assertion.
const DAEMON_PER_DOWNLOAD: u64 = 192 << 10;
/// Only catches hangs; nothing here asserts how long anything took.
const HANG: Duration = Duration::from_secs(60);

fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} in\n{metrics}"))
}

const WINDOW: &str = "ggrok_tunnel_stream_window_bytes";
const ANSWERS: &str = "ggrok_answers_in_flight";
const LARGE_READS: &str = "ggrok_large_read_buffers";
const STALLED_CUT: &str = "ggrok_limit_hits_total{limit=\"stalled_read_timeout\"}";

/// A connection that asks for 64 MiB and never reads; a small receive buffer, so the kernel does
/// not take the place of the server's buffers.
async fn stalled_download(server: SocketAddr, host: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 << 10).unwrap();
    let mut conn = socket.connect(server).await.unwrap();
    conn.write_all(format!("GET /bytes/67108864 HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
    conn
}

/// Downloads `len` bytes reading `chunk` bytes every `pause` (none: as fast as it can); the bytes
/// of the body received.
async fn download(server: SocketAddr, host: &str, len: u64, chunk: usize, pause: Option<Duration>) -> u64 {
    let mut conn = TcpStream::connect(server).await.unwrap();
    let head = format!("GET /bytes/{len} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; chunk];
    let mut total = 0u64;
    loop {
        let n = tokio::time::timeout(HANG, conn.read(&mut buf)).await.expect("the download hung").unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_stalled_downloads_stay_within_the_buffer_budget() {
    // The kernel's buffers are bounded on both sides, so that what is measured is ggrok's: the
    // local service's with its send buffer, the server's with `send_buffer` (below).
    let up = Upstream::start_with_send_buffer(64 << 10).await;
    let port = up.port();
    let hosts: Vec<String> = (0..TUNNELS).map(|i| format!("t{i}.test")).collect();
    let tunnels: Vec<(&str, &str)> = hosts.iter().map(|h| (h.as_str(), port.as_str())).collect();
    let server_extra = format!(
        "threads = 2\n[limits]\nbuffer_memory = \"{} MiB\"\nstalled_read_timeout = 15\nsend_buffer = \"64 KiB\"\n\
         max_pending_per_ip = 4096\nmax_streams_per_session = 4096\n{ADMIN_CONFIG}",
        BUDGET >> 20
    );
    // `send_buffer` bounds what the kernel holds for each stalled client (128 KiB): with its
    // autotuning, a thousand of them (and the local service's sockets) run the machine's TCP
    // memory out, and the kernel then drops and resets connections, the tunnel's among them.
    // The inspector captures too (as by default), within a cap counted in what ggrokd may hold.
    let daemon_extra = format!("connections = 4\ninspect_memory = \"{} MiB\"", INSPECT_MEMORY >> 20);
    let cluster = Cluster::start_full(&tunnels, &server_extra, &daemon_extra);
    let admin = Admin::of(&cluster.server);
    let (server, daemon) = (&cluster.server.process, &cluster.daemon.process);
    let addr = cluster.addr();
    let full_window = sample(&admin.metrics().await, WINDOW);
    assert_eq!(full_window, (4 << 20) as f64);
    // The fast download's usual speed, for comparison (before the idle figures: what a download
    // leaves in the allocators is not what the stalled ones hold).
    let fast_len = 256u64 << 20;
    let alone_started = Instant::now();
    let alone = download(addr, "t2.test", fast_len, 256 << 10, None).await;
    assert!(alone >= fast_len);
    let alone_speed = alone as f64 / alone_started.elapsed().as_secs_f64() / 1e6;
    println!("fast download alone: {alone_speed:.0} MB/s");
    let (server_idle, daemon_idle) = (server.rss_kib() << 10, daemon.rss_kib() << 10);

    let mut stalled = Vec::with_capacity(STALLED);
    for i in 0..STALLED {
        stalled.push(stalled_download(addr, &hosts[i % TUNNELS]).await);
    }
    // A thousand answers starting on a busy machine can take a while: wait as long as for a hang.
    let metrics = admin.metrics_within(HANG, |m| sample(m, ANSWERS) >= STALLED as f64).await;
    let in_flight = sample(&metrics, ANSWERS);
    assert!(in_flight >= STALLED as f64, "every stalled answer is in flight: {in_flight} of {STALLED}");
    let shrunk = sample(&metrics, WINDOW);
    println!(
        "window with {STALLED} answers in flight: {} KiB (full: {} KiB)",
        shrunk / 1024.0,
        full_window / 1024.0
    );
    assert!(shrunk < full_window / 16.0, "the window shrank under pressure: {shrunk}");
    // A thousand connections at each end, but at most budget / 2 MiB of them read with 256 KiB
    // buffers (fewer when some that held one have closed since); the others read 64 KiB.
    let large = sample(&metrics, LARGE_READS);
    assert!((1.0..=(BUDGET / (2 << 20)) as f64).contains(&large), "the server's large read buffers: {large}");
    let status = cluster.daemon.status();
    let (large, most) =
        (&status["buffers"]["large_read_buffers"], status["buffers"]["limit"].as_u64().unwrap() / (2 << 20));
    assert!((1..=most).contains(&large.as_u64().unwrap()), "ggrokd's large read buffers: {status:#}");

    // Meanwhile: small requests on every tunnel, a slow reader, a fast download.
    let public = Public::new(addr);
    for host in &hosts {
        let reply = public.get(host, "/small").await;
        assert_eq!(reply.status, StatusCode::OK, "{host}: {}", reply.text());
    }
    let slow_started = Instant::now();
    let slow = tokio::spawn(download(addr, "t1.test", 512 << 10, 10 << 10, Some(Duration::from_millis(100))));
    let fast_started = Instant::now();
    let fast = download(addr, "t2.test", fast_len, 256 << 10, None).await;
    let fast_secs = fast_started.elapsed().as_secs_f64();
    assert!(fast >= fast_len, "the fast download got {fast} bytes");
    let beside = fast as f64 / fast_secs / 1e6;
    println!(
        "fast download beside the stalled ones: {beside:.0} MB/s ({:.2} of alone)",
        beside / alone_speed
    );
    let slow = slow.await.unwrap();
    assert!(slow >= 512 << 10, "the slow reader got {slow} bytes");
    println!("slow reader (100 KB/s) done in {:.1}s", slow_started.elapsed().as_secs_f64());

    let (server_peak, daemon_peak) =
        peaks(&format!("with {STALLED} stalled downloads"), (server, server_idle), (daemon, daemon_idle));
    let allowed = server_idle + BUDGET + STALLED as u64 * PER_CONNECTION;
    assert_within("server", server_peak, allowed);
    // ggrokd holds, per stalled download, the piece waiting for window and its local connection's
    // read buffer (64 KiB each at most), and what a local connection and a stream cost anyway.
    // And the inspector its copies of the first bytes of each answer, within inspect_memory.
    let daemon_allowed = daemon_idle + STALLED as u64 * DAEMON_PER_DOWNLOAD + INSPECT_MEMORY;
    assert_within("ggrokd", daemon_peak, daemon_allowed);

    // The stalled ones are closed after the timeout, and the windows grow back.
    let deadline = Instant::now() + HANG;
    let mut metrics = admin.metrics().await;
    while sample(&metrics, STALLED_CUT) < STALLED as f64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        metrics = admin.metrics().await;
    }
    assert!(sample(&metrics, STALLED_CUT) >= STALLED as f64, "every stalled reader was cut");
    for mut conn in stalled {
        let mut rest = Vec::new();
        tokio::time::timeout(HANG, conn.read_to_end(&mut rest))
            .await
            .expect("a stalled reader not closed")
            .ok();
        assert!(rest.len() < 64 << 20);
    }
    let metrics = admin.metrics_when(|m| sample(m, ANSWERS) == 0.0 && sample(m, WINDOW) == full_window).await;
    assert_eq!(sample(&metrics, ANSWERS), 0.0);
    assert_eq!(sample(&metrics, WINDOW), full_window, "the window grew back");
    let again_started = Instant::now();
    let again = download(addr, "t3.test", fast_len, 256 << 10, None).await;
    assert!(again >= fast_len);
    println!(
        "fast download once they are gone: {:.0} MB/s",
        again as f64 / again_started.elapsed().as_secs_f64() / 1e6
    );
}
