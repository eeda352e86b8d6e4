//! `[limits]` of TCP tunnels: connections open at once per tunnel, and the idle timeout; both
//! close the connection and count in `ggrok_limit_hits_total`.

use ggrok_tests::TEST_TOKEN;
use ggrok_tests::admin::{ADMIN_CONFIG, Admin};
use ggrok_tests::cluster::Daemon;
use ggrok_tests::tcp::{echo, free_range, server_extra, tcp_tunnel, wait_all_online};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A byte sent and echoed back: the connection is through to the local service.
async fn through(socket: &mut TcpStream) {
    socket.write_all(b"x").await.unwrap();
    let mut byte = [0u8; 1];
    socket.read_exact(&mut byte).await.unwrap();
    assert_eq!(&byte, b"x");
}

/// Reads until the end: the server closed the connection (EOF, or a reset).
async fn closed(socket: &mut TcpStream) {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(60), socket.read_to_end(&mut rest));
    assert!(read.await.is_ok(), "the connection stayed open");
    assert!(rest.is_empty(), "{rest:?}");
}

fn limit_hits(text: &str, key: &str) -> Option<u64> {
    let prefix = format!("ggrok_limit_hits_total{{limit=\"{key}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_tunnels_limit_are_closed_and_counted() {
    let ports = free_range(1);
    let port = *ports.start();
    let limits = format!("{ADMIN_CONFIG}[limits]\nmax_tcp_connections_per_tunnel = 2\n");
    let server = server_extra(&ports, &free_range(1), &limits);
    let admin = Admin::of(&server);
    let daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[], &tcp_tunnel(port, echo().await));
    wait_all_online(&daemon, 1);
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        through(&mut socket).await;
        open.push(socket);
    }
    let mut third = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    closed(&mut third).await;
    admin.metrics_when(|text| limit_hits(text, "max_tcp_connections_per_tunnel") == Some(1)).await;
    // The two still work; once one closes, a new connection gets its slot.
    through(&mut open[1]).await;
    drop(open.remove(0));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut byte = [0u8; 1];
        if socket.write_all(b"y").await.is_ok() && socket.read_exact(&mut byte).await.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the freed slot was never given again");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_and_counted() {
    let ports = free_range(1);
    let port = *ports.start();
    let limits = format!("{ADMIN_CONFIG}[limits]\ntcp_idle_timeout = 0.3\n");
    let server = server_extra(&ports, &free_range(1), &limits);
    let admin = Admin::of(&server);
    let daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[], &tcp_tunnel(port, echo().await));
    wait_all_online(&daemon, 1);
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    through(&mut socket).await;
    closed(&mut socket).await;
    admin.metrics_when(|text| limit_hits(text, "tcp_idle_timeout") == Some(1)).await;
}
