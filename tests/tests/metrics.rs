//! The admin listener: `/metrics` counts exactly what went through real tunnels (requests by host
//! pattern and status class, body bytes, durations, sessions, hosts, refused handshakes, limit
//! hits), `/healthz` answers, and nothing of it shows on the public port.

#[path = "metrics/limits.rs"]
mod limits;
#[path = "metrics/scrape.rs"]
mod scrape;

use ggrok_tests::admin::{ADMIN_CONFIG, Admin};
use ggrok_tests::client::{Public, full};
use ggrok_tests::cluster::Cluster;
use ggrok_tests::upstream::Upstream;
use http::{Method, Request, StatusCode};
use scrape::{Expected, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_bytes_and_durations_are_counted_exactly_by_registered_host() {
    let up = Upstream::start().await;
    let port = up.port();
    let cluster = Cluster::start_full(&[("api.test", &port), ("*.wild.test", &port)], ADMIN_CONFIG, "");
    let admin = Admin::of(&cluster.server);
    let public = Public::new(cluster.addr());
    let (mut api, mut wild, mut unrouted) = (Expected::default(), Expected::default(), Expected::default());

    for path in ["/status/201", "/status/204", "/status/302", "/status/404", "/status/500", "/status/503"] {
        let reply = public.get("api.test", path).await;
        api.record(reply.status, 0, reply.body.len());
    }
    for len in [1000usize, 70_000] {
        let reply = public.get("API.test:8080", &format!("/bytes/{len}")).await;
        assert_eq!(reply.body.len(), len);
        api.record(reply.status, 0, len);
    }
    let upload = vec![7u8; 12_345];
    let reply = public.fetch("api.test", Request::post("/echo").body(full(upload.clone())).unwrap()).await;
    assert_eq!(reply.json()["body_len"], upload.len());
    api.record(reply.status, upload.len(), reply.body.len());
    // Any number of names under a wildcard count under the pattern.
    for host in ["a.wild.test", "b.wild.test", "c.wild.test"] {
        let reply = public.get(host, "/bytes/10").await;
        wild.record(reply.status, 0, reply.body.len());
    }
    // No tunnel: host="". That includes /metrics asked of the public port.
    let reply = public.get("nobody.example", "/").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    unrouted.record(reply.status, 0, reply.body.len());
    let reply = public.get(&cluster.addr().to_string(), "/metrics").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(!reply.text().contains("ggrok_"), "metrics on the public port: {}", reply.text());
    unrouted.record(reply.status, 0, reply.body.len());

    let text = admin
        .metrics_when(|text| {
            let m = Metrics::parse(text);
            m.durations("api.test") >= api.total()
                && m.durations("*.wild.test") >= wild.total()
                && m.durations("") >= unrouted.total()
        })
        .await;
    let m = Metrics::parse(&text);
    api.check(&m, "api.test");
    wild.check(&m, "*.wild.test");
    unrouted.check(&m, "");
    assert_eq!(m.value("ggrok_tunnel_sessions", &[]), 1.0);
    assert_eq!(m.value("ggrok_hosts_online", &[]), 2.0);
    assert!(!text.contains("a.wild.test"), "raw host names must not become labels");
    assert!(m.value("ggrok_http_request_duration_seconds_sum", &[("host", "api.test")]) > 0.0);
}

/// Reads an HTTP/1.1 response head byte by byte, leaving what follows unread.
pub async fn read_head(conn: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(conn.read_u8().await.expect("response head"));
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_connection_counts_as_101_with_its_bytes() {
    let up = Upstream::start().await;
    let cluster = Cluster::start_full(&[("ws.test", &up.port())], ADMIN_CONFIG, "");
    let admin = Admin::of(&cluster.server);
    let mut conn = TcpStream::connect(cluster.addr()).await.unwrap();
    conn.write_all(
        b"GET /ws HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(read_head(&mut conn).await.starts_with("HTTP/1.1 101"));
    // A masked text frame (mask 0) of "hello": 11 bytes; its echo, unmasked: 7 bytes.
    conn.write_all(b"\x81\x85\0\0\0\0hello").await.unwrap();
    let mut echo = [0u8; 7];
    conn.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"\x81\x05hello");
    conn.shutdown().await.unwrap();
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "{rest:?}");

    let bytes = |m: &Metrics, name: &str| m.value(name, &[("host", "ws.test")]);
    let text = admin.metrics_when(|t| bytes(&Metrics::parse(t), "ggrok_http_sent_bytes_total") >= 7.0).await;
    let m = Metrics::parse(&text);
    assert_eq!(m.requests("ws.test", "1xx"), 1.0);
    assert_eq!(m.durations("ws.test"), 1.0);
    assert_eq!(bytes(&m, "ggrok_http_received_bytes_total"), 11.0);
    assert_eq!(bytes(&m, "ggrok_http_sent_bytes_total"), 7.0);
    assert_eq!((m.value("ggrok_tunnel_sessions", &[]), m.value("ggrok_hosts_online", &[])), (1.0, 1.0));

    // The daemon gone: no session, no host online; the host's series stay while it is offline.
    let mut cluster = cluster;
    cluster.daemon.process.stop();
    let gauges = |m: &Metrics| (m.value("ggrok_tunnel_sessions", &[]), m.value("ggrok_hosts_online", &[]));
    let text = admin.metrics_when(|t| gauges(&Metrics::parse(t)) == (0.0, 0.0)).await;
    let m = Metrics::parse(&text);
    assert_eq!(gauges(&m), (0.0, 0.0));
    assert_eq!(m.requests("ws.test", "1xx"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_until_shutdown_and_other_paths_and_methods_are_refused() {
    let up = Upstream::start().await;
    let cluster = Cluster::start_full(&[("api.test", &up.port())], ADMIN_CONFIG, "");
    let admin = Admin::of(&cluster.server);
    let health = admin.request(Method::GET, "/healthz").await;
    assert_eq!((health.status, health.text().as_str()), (StatusCode::OK, "ok\n"));
    let metrics = admin.request(Method::GET, "/metrics").await;
    assert!(metrics.headers["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    assert_eq!(admin.request(Method::GET, "/nope").await.status, StatusCode::NOT_FOUND);
    assert_eq!(admin.request(Method::GET, "/metrics/x").await.status, StatusCode::NOT_FOUND);
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let reply = admin.request(method.clone(), "/metrics").await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(reply.headers["allow"], "GET, HEAD");
    }
    let head = admin.request(Method::HEAD, "/healthz").await;
    assert_eq!((head.status, head.body.len()), (StatusCode::OK, 0));

    // Shutting down with a request in flight: /healthz says so while the request finishes.
    let public = Public::new(cluster.addr());
    let slow = tokio::spawn(async move { public.get("api.test", "/slow").await });
    while up.served.load(std::sync::atomic::Ordering::SeqCst) < 1 {
        tokio::task::yield_now().await;
    }
    cluster.server.process.signal("TERM");
    cluster.server.process.wait_for(&["waiting up to"]);
    let health = admin.request(Method::GET, "/healthz").await;
    assert_eq!((health.status, health.text().as_str()), (StatusCode::SERVICE_UNAVAILABLE, "stopping\n"));
    up.release_slow();
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_section_there_is_no_admin_listener() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("api.test", &up.port())]);
    // The daemon is online, so the server is well past the point where it would have logged it.
    cluster.server.process.wait_for(&["tunnel client connected"]);
    assert_eq!(cluster.server.process.count(&["admin"]), 0, "{}", cluster.server.process.log());
    let reply = Public::new(cluster.addr()).get(&cluster.addr().to_string(), "/metrics").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[test]
fn a_bad_admin_address_is_a_config_error_and_a_taken_one_a_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.toml");
    let path = path.to_str().unwrap();
    let clients = "[[client]]\nname = \"a\"\ntoken = \"0123456789abcdef\"\nhosts = [\"a.test\"]\n";
    let check = |admin: &str| {
        let text = format!("listen = \"127.0.0.1:0\"\n[admin]\nlisten = \"{admin}\"\n{clients}");
        std::fs::write(path, text).unwrap();
        std::process::Command::new(ggrok_tests::bins::bin("ggrok-server"))
            .args(["--config", path, "--check"])
            .env_clear()
            .output()
            .unwrap()
    };
    let out = check("127.0.0.1:9090");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("ok (1 clients, listen 127.0.0.1:0, admin 127.0.0.1:9090)")
    );
    let out = check("localhost:9090");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{path}:3: admin.listen: \"localhost:9090\" is not an address")), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let text =
        format!("listen = \"127.0.0.1:0\"\n[admin]\nlisten = \"{}\"\n{clients}", taken.local_addr().unwrap());
    std::fs::write(path, text).unwrap();
    let mut server = ggrok_tests::process::Process::spawn(
        &ggrok_tests::bins::bin("ggrok-server"),
        &["--config", path],
        &[],
    );
    assert!(!server.wait_exit().success());
    let line = server.wait_for(&["cannot listen on"]);
    assert!(line.contains("(admin.listen)"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_are_counted_by_port_and_logged_one_line_each() {
    use ggrok_tests::TEST_TOKEN;
    use ggrok_tests::tcp::{echo, free_range, round_trip, server_extra, tcp_tunnel, wait_all_online};
    let ports = free_range(1);
    let port = *ports.start();
    let server = server_extra(&ports, &free_range(1), ADMIN_CONFIG);
    let admin = Admin::of(&server);
    let daemon = ggrok_tests::cluster::Daemon::start(
        &server.ws_url(),
        TEST_TOKEN,
        &[],
        &tcp_tunnel(port, echo().await),
    );
    wait_all_online(&daemon, 1);
    let sizes = [1usize, 1000, 100_000];
    for (seed, size) in sizes.iter().enumerate() {
        let (sent, back) = round_trip(([127, 0, 0, 1], port).into(), seed as u32, *size).await;
        assert_eq!(sent, back);
    }
    let total = sizes.iter().sum::<usize>() as f64;
    let label = port.to_string();
    let labels = [("port", label.as_str())];
    let text = admin
        .metrics_when(|text| {
            let m = Metrics::parse(text);
            m.find("ggrok_tcp_connections_open", &labels).is_some()
                && m.value("ggrok_tcp_connections_open", &labels) == 0.0
                && m.value("ggrok_tcp_sent_bytes_total", &labels) == total
        })
        .await;
    let m = Metrics::parse(&text);
    assert_eq!(m.value("ggrok_tcp_connections_total", &labels), 3.0, "{text}");
    assert_eq!(m.value("ggrok_tcp_received_bytes_total", &labels), total, "{text}");

    // ggrokctl logs: one line per connection, bytes each way and the public client.
    let key = format!("tcp:{port}");
    let entries = ggrok_tests::logs::poll("three TCP lines", || {
        let e = ggrok_tests::logs::entries(&daemon.socket, &[&key]);
        (e.len() == 3).then_some(e)
    });
    for (entry, size) in entries.iter().zip(sizes) {
        assert_eq!(entry["method"], "TCP", "{entry}");
        assert_eq!(entry["host"], key.as_str(), "{entry}");
        assert_eq!(entry["status"], 200, "{entry}");
        assert_eq!(entry["upgrade"], "tcp", "{entry}");
        assert_eq!(entry["client"], "127.0.0.1", "{entry}");
        assert_eq!(
            (entry["bytes_in"].as_u64(), entry["bytes_out"].as_u64()),
            (Some(size as u64), Some(size as u64))
        );
        assert!(entry["duration_ms"].as_f64().is_some(), "{entry}");
    }
    let text = String::from_utf8(daemon.ctl(&["logs"]).stdout).unwrap();
    assert!(
        text.lines().filter(|l| l.contains(&key) && l.contains("TCP") && l.ends_with("[tcp]")).count() == 3,
        "{text}"
    );
}
