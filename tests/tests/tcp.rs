//! TCP tunnels: `[[tunnel]] tcp = PORT` on ggrokd, `[[client]] ports` on the server; each public
//! TCP connection is one stream of the daemon's connection.

use ggrok_tests::TEST_TOKEN;
use ggrok_tests::cluster::{Daemon, Server};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const OTHER_TOKEN: &str = "other-token-0123456789abcdef";

/// `n` consecutive ports on 127.0.0.1 that were free when probed (then released).
fn free_range(n: u16) -> RangeInclusive<u16> {
    loop {
        let base = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if base > u16::MAX - n {
            continue;
        }
        let probes: Vec<_> =
            (base..base + n).map(|p| std::net::TcpListener::bind(("127.0.0.1", p))).collect();
        if probes.iter().all(Result::is_ok) {
            return base..=base + n - 1;
        }
    }
}

/// A server whose client `test` may claim `ports` (and `other`, with its own token, `other`).
fn server(ports: &RangeInclusive<u16>, other: &RangeInclusive<u16>) -> Server {
    Server::start_with(&format!(
        "listen = \"127.0.0.1:0\"\n\
         [[client]]\nname = \"test\"\ntoken = {TEST_TOKEN:?}\nhosts = [\"*.test\"]\nports = [\"{}-{}\"]\n\
         [[client]]\nname = \"other\"\ntoken = {OTHER_TOKEN:?}\nports = [\"{}-{}\"]\n",
        ports.start(),
        ports.end(),
        other.start(),
        other.end()
    ))
}

fn tcp_tunnel(port: u16, local: SocketAddr) -> String {
    format!("\n[[tunnel]]\ntcp = {port}\nlocal = \"{local}\"\n")
}

/// A local service echoing every connection's bytes; it half-closes when its client does.
async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = socket.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Waits until `status` shows every tunnel in state `online`; returns the tunnels.
fn wait_all_online(daemon: &Daemon, n: usize) -> Vec<serde_json::Value> {
    let status = daemon.wait_status("tunnels online", |s| {
        let tunnels = s["tunnels"].as_array().cloned().unwrap_or_default();
        tunnels.len() == n && tunnels.iter().all(|t| t["state"] == "online")
    });
    status["tunnels"].as_array().unwrap().clone()
}

/// Sends `size` bytes of a pattern seeded by `seed`, shuts down its write side, and reads the
/// echo to the end; returns the checksums of what went and what came back.
async fn round_trip(addr: SocketAddr, seed: u32, size: usize) -> (Vec<u8>, Vec<u8>) {
    let socket = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = socket.into_split();
    let data: Vec<u8> = (0..size).map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as u8).collect();
    let sent = Sha256::digest(&data).to_vec();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        // Half-close: the reply must still arrive whole.
        w.shutdown().await.unwrap();
        w
    });
    let mut back = Vec::with_capacity(size);
    r.read_to_end(&mut back).await.unwrap();
    let _w = writer.await.unwrap();
    assert_eq!(back.len(), size, "connection {seed}: echo length");
    (sent, Sha256::digest(&back).to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_connections_echo_a_mebibyte_each_with_half_close() {
    let ports = free_range(2);
    let server = server(&ports, &free_range(1));
    let local = echo().await;
    let port = *ports.start();
    let daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[], &tcp_tunnel(port, local));
    let tunnels = wait_all_online(&daemon, 1);
    assert_eq!(tunnels[0]["host"], format!("tcp://127.0.0.1:{port}"));
    let public: SocketAddr = ([127, 0, 0, 1], port).into();
    let tasks: Vec<_> = (0..50).map(|n| tokio::spawn(round_trip(public, n, 1 << 20))).collect();
    for (n, task) in tasks.into_iter().enumerate() {
        let (sent, back) = task.await.unwrap();
        assert_eq!(sent, back, "connection {n}: checksum");
    }
    let list = String::from_utf8(daemon.ctl(&["list"]).stdout).unwrap();
    assert!(list.contains(&format!("tcp://127.0.0.1:{port}")), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_service_closing_first_is_seen_after_its_data() {
    let ports = free_range(1);
    let server = server(&ports, &free_range(1));
    // Says hello and half-closes at once, then reads what the client still sends.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let (got_tx, got_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        socket.write_all(b"hello from the service").await.unwrap();
        socket.shutdown().await.unwrap();
        let mut got = Vec::new();
        socket.read_to_end(&mut got).await.unwrap();
        let _ = got_tx.send(got);
    });
    let port = *ports.start();
    let daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[], &tcp_tunnel(port, local));
    wait_all_online(&daemon, 1);
    let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut hello = Vec::new();
    client.read_to_end(&mut hello).await.unwrap();
    assert_eq!(hello, b"hello from the service", "the data, then EOF");
    // The other direction is still open.
    client.write_all(b"still talking").await.unwrap();
    client.shutdown().await.unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(30), got_rx).await.unwrap().unwrap();
    assert_eq!(got, b"still talking");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_outside_the_range_held_or_busy_are_refused_with_the_reason() {
    let ports = free_range(2);
    let (held, busy) = (*ports.start(), *ports.end());
    let server = server(&ports, &ports);
    let local = echo().await;
    // Another client holds the first port.
    let other = Daemon::start(&server.ws_url(), OTHER_TOKEN, &[], &tcp_tunnel(held, local));
    wait_all_online(&other, 1);
    // Something else listens on the second.
    let _busy = std::net::TcpListener::bind(("127.0.0.1", busy)).unwrap();
    let outside = free_range(1);
    let extra =
        [tcp_tunnel(held, local), tcp_tunnel(busy, local), tcp_tunnel(*outside.start(), local)].concat();
    let daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[], &extra);
    let status = daemon.wait_status("three refusals", |s| {
        let tunnels = s["tunnels"].as_array().cloned().unwrap_or_default();
        tunnels.len() == 3 && tunnels.iter().all(|t| t["state"] == "refused")
    });
    let reason = |port: u16| {
        let tunnels = status["tunnels"].as_array().unwrap();
        let t = tunnels.iter().find(|t| t["host"] == format!("tcp://127.0.0.1:{port}")).unwrap();
        t["reason"].as_str().unwrap().to_owned()
    };
    assert!(
        reason(held).contains(&format!("TCP port {held} is already served by another client")),
        "{}",
        reason(held)
    );
    assert!(reason(busy).contains(&format!("cannot listen on 127.0.0.1:{busy}")), "{}", reason(busy));
    let outside_reason = reason(*outside.start());
    assert!(
        outside_reason.contains("may not claim TCP port") && outside_reason.contains("allowed ports"),
        "{outside_reason}"
    );
    // The holder still serves.
    let (sent, back) = round_trip(([127, 0, 0, 1], held).into(), 7, 1000).await;
    assert_eq!(sent, back);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_port_is_saved_and_kept_across_a_daemon_restart() {
    let ports = free_range(3);
    let server = server(&ports, &free_range(1));
    let local = echo().await;
    let mut daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[], &tcp_tunnel(0, local));
    let tunnels = daemon.wait_status("a port picked", |s| {
        s["tunnels"].as_array().is_some_and(|t| {
            t.len() == 1 && t[0]["state"] == "online" && !t[0]["host"].as_str().unwrap().ends_with(":0")
        })
    })["tunnels"]
        .clone();
    let url = tunnels[0]["host"].as_str().unwrap().to_owned();
    let port: u16 = url.rsplit_once(':').unwrap().1.parse().unwrap();
    assert!(ports.contains(&port), "{url}");
    let text = std::fs::read_to_string(&daemon.config).unwrap();
    assert!(text.contains(&format!("tcp = {port}")) && !text.contains("tcp = 0"), "{text}");
    let (sent, back) = round_trip(([127, 0, 0, 1], port).into(), 1, 100_000).await;
    assert_eq!(sent, back);

    daemon.restart();
    let tunnels = daemon.wait_status("back online", |s| {
        s["tunnels"].as_array().is_some_and(|t| t.len() == 1 && t[0]["state"] == "online")
    })["tunnels"]
        .clone();
    assert_eq!(tunnels[0]["host"], url.as_str(), "the same port after a restart");
    let (sent, back) = round_trip(([127, 0, 0, 1], port).into(), 2, 100_000).await;
    assert_eq!(sent, back);
}
