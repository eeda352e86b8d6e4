//! Refused tunnel handshakes and limit hits, counted by reason and by limit.

use super::read_head;
use super::scrape::{Expected, Metrics};
use futures_util::SinkExt;
use ggrok_tests::TEST_TOKEN;
use ggrok_tests::admin::{ADMIN_CONFIG, Admin};
use ggrok_tests::client::Public;
use ggrok_tests::cluster::{ClientDef, Daemon, Server};
use ggrok_tests::rogue;
use ggrok_tests::tls::TestCa;
use ggrok_tests::upstream::Upstream;
use http::StatusCode;
use std::collections::HashMap;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// Sends one raw request on a new connection and returns its status line.
async fn status_line(server: std::net::SocketAddr, request: &str) -> String {
    let mut conn = TcpStream::connect(server).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    read_head(&mut conn).await.lines().next().unwrap().to_owned()
}

const HANDSHAKE: &str = "GET /$$ggrok HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_handshakes_and_limit_hits_are_counted_by_reason() {
    let up = Upstream::start().await;
    let limits = "[limits]\nmax_header_bytes = 8192\nmax_streams_per_session = 1\nmax_hosts_per_client = 1\n";
    let server = Server::start_extra(
        &[ClientDef { name: "t", token: TEST_TOKEN, hosts: &["*.test"] }],
        &format!("{ADMIN_CONFIG}{limits}"),
    );
    let admin = Admin::of(&server);
    // ggrokd registers its tunnels sorted by host: api.test is claimed, other.test is one too many.
    let daemon =
        Daemon::start(&server.ws_url(), TEST_TOKEN, &[("api.test", &up.port()), ("other.test", "1")], "");
    daemon.process.wait_for(&["tunnel refused", "other.test", "max_hosts_per_client"]);
    daemon.wait_online("api.test");

    let addr = server.addr;
    let refused = [
        (format!("{HANDSHAKE}ggrok-protocol: 1\r\nAuthorization: Bearer wrong-token-000000\r\n\r\n"), "401"),
        (format!("{HANDSHAKE}ggrok-protocol: 999\r\nAuthorization: Bearer {TEST_TOKEN}\r\n\r\n"), "400"),
        ("GET /$$ggrok HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(), "400"),
    ];
    for (request, status) in &refused {
        let line = status_line(addr, request).await;
        assert!(line.starts_with(&format!("HTTP/1.1 {status}")), "{line}");
    }
    let big = format!("GET / HTTP/1.1\r\nHost: api.test\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    assert!(status_line(addr, &big).await.starts_with("HTTP/1.1 431"));

    // One request in flight fills the session; the next is refused with 503.
    let public = Public::new(addr);
    let mut expected = Expected::default();
    let slow = tokio::spawn({
        let public = public.clone();
        async move { public.get("api.test", "/slow").await }
    });
    while up.served.load(std::sync::atomic::Ordering::SeqCst) < 1 {
        tokio::task::yield_now().await;
    }
    let reply = public.get("api.test", "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.text());
    expected.record(reply.status, 0, reply.body.len());
    up.release_slow();
    let reply = slow.await.unwrap();
    expected.record(reply.status, 0, reply.body.len());

    let limit = |m: &Metrics, key: &str| m.value("ggrok_limit_hits_total", &[("limit", key)]);
    let text = admin.metrics_when(|t| Metrics::parse(t).durations("api.test") >= expected.total()).await;
    let m = Metrics::parse(&text);
    let rejected = |reason: &str| m.value("ggrok_tunnel_handshakes_rejected_total", &[("reason", reason)]);
    assert_eq!(rejected("unauthorized"), 1.0);
    assert_eq!(rejected("bad_version"), 1.0);
    assert_eq!(rejected("not_websocket"), 1.0);
    assert_eq!(rejected("tls_required"), 0.0);
    assert_eq!(limit(&m, "max_header_bytes"), 1.0);
    assert_eq!(limit(&m, "max_hosts_per_client"), 1.0);
    assert_eq!(limit(&m, "max_streams_per_session"), 1.0);
    assert_eq!(limit(&m, "header_read_timeout"), 0.0);
    expected.check(&m, "api.test");
    assert_eq!(m.value("ggrok_hosts_online", &[]), 1.0);
    // Requests answered before any routing (the 431) are limit hits, not requests.
    assert_eq!(m.durations(""), 0.0);
}

/// Only catches hangs; nothing here asserts how long anything took.
const HANG: std::time::Duration = std::time::Duration::from_secs(30);

async fn connect_from(ip: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(ip.parse().unwrap(), 0)).unwrap();
    socket.connect(server).await.unwrap()
}

/// The status of the canned answer the server gives a connection before closing it.
async fn final_status(mut conn: TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(HANG, conn.read_to_end(&mut out)).await.expect("the server never closed");
    String::from_utf8_lossy(&out).split(' ').nth(1).unwrap_or("closed").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_waiting_connection_and_session_limit_is_counted() {
    let limits = "[limits]\nheader_read_timeout = 2\nmax_pending_per_ip = 2\nmax_pending_connections = 3\n\
                  handshake_timeout = 1\nmax_control_message = 1024\n";
    let server = Server::start_extra(
        &[ClientDef { name: "t", token: TEST_TOKEN, hosts: &["*.test"] }],
        &format!("{ADMIN_CONFIG}{limits}"),
    );
    let admin = Admin::of(&server);

    // Connections that never send a head: two may wait per address, three in all; the others are
    // refused (429 per address, 503 in all), the waiting ones answered 408. How the accepts
    // interleave varies, so each connection's answer is tallied and the metrics must match it.
    let mut silent = Vec::new();
    for ip in ["127.0.0.2"; 4].into_iter().chain(["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"]) {
        silent.push(connect_from(ip, server.addr).await);
    }
    let mut tally: HashMap<String, f64> = HashMap::new();
    for status in futures_util::future::join_all(silent.into_iter().map(final_status)).await {
        *tally.entry(status).or_default() += 1.0;
    }
    assert_eq!(tally.values().sum::<f64>(), 8.0, "{tally:?}");
    for status in ["408", "429", "503"] {
        assert!(tally.contains_key(status), "{tally:?}");
    }

    // A tunnel client that never greets, one that sends an oversized control message, and one
    // that speaks no HTTP/2 over its WebSocket.
    let _silent = rogue::control_stream(server.addr, TEST_TOKEN).await;
    server.process.wait_for(&["no greeting within handshake_timeout"]);
    let mut huge = hyper_util::rt::TokioIo::new(rogue::control_stream(server.addr, TEST_TOKEN).await);
    huge.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
    server.process.wait_for(&["tunnel client disconnected", "frame size too big"]);
    let mut garbage = rogue::websocket(server.addr, TEST_TOKEN).await;
    garbage.send(Message::binary(vec![0u8; 100])).await.unwrap();
    server.process.wait_for(&["tunnel setup failed"]);

    let m = Metrics::parse(&admin.metrics().await);
    let limit = |key: &str| m.value("ggrok_limit_hits_total", &[("limit", key)]);
    let count = |status: &str| tally.get(status).copied().unwrap_or(0.0);
    assert_eq!(limit("header_read_timeout"), count("408"), "{tally:?}");
    assert_eq!(limit("max_pending_per_ip"), count("429"), "{tally:?}");
    assert_eq!(limit("max_pending_connections"), count("503"), "{tally:?}");
    assert_eq!(limit("handshake_timeout"), 1.0);
    assert_eq!(limit("max_control_message"), 1.0);
    assert_eq!(m.value("ggrok_tunnel_handshakes_rejected_total", &[("reason", "setup_failed")]), 1.0);
    assert_eq!(m.value("ggrok_tunnel_handshakes_rejected_total", &[("reason", "unauthorized")]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_slow_handshake_is_a_limit_hit_and_plain_requests_are_redirected() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.issue(dir.path(), "localhost", &["localhost"]);
    let server = Server::start_with(&format!(
        "listen = \"127.0.0.1:0\"\n{ADMIN_CONFIG}[limits]\nheader_read_timeout = 1\n\
         [tls]\nlisten = \"127.0.0.1:0\"\nredirect_http = true\n\
         [[tls.certificate]]\ncert = {cert:?}\nkey = {key:?}\n\
         [[client]]\nname = \"t\"\ntoken = \"{TEST_TOKEN}\"\nhosts = [\"*.test\"]\n"
    ));
    let admin = Admin::of(&server);
    let https = ggrok_tests::process::listening_address(&server.process.wait_for(&["listening on", "https"]))
        .unwrap();

    let plain = format!("{HANDSHAKE}ggrok-protocol: 1\r\nAuthorization: Bearer {TEST_TOKEN}\r\n\r\n");
    assert!(status_line(server.addr, &plain).await.starts_with("HTTP/1.1 403"));
    let reply = Public::new(server.addr).get("api.test", "/x").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    let mut redirected = Expected::default();
    redirected.record(reply.status, 0, reply.body.len());
    // A TLS connection that never says hello is closed at the header_read_timeout.
    assert_eq!(final_status(TcpStream::connect(https).await.unwrap()).await, "closed");

    let text = admin.metrics_when(|t| Metrics::parse(t).durations("") >= 1.0).await;
    let m = Metrics::parse(&text);
    assert_eq!(m.value("ggrok_tunnel_handshakes_rejected_total", &[("reason", "tls_required")]), 1.0);
    assert_eq!(m.value("ggrok_limit_hits_total", &[("limit", "header_read_timeout")]), 1.0);
    redirected.check(&m, "");
}
