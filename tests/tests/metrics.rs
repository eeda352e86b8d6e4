//! The admin listener: `/metrics` counts exactly what went through real tunnels (requests by host
//! pattern and status class, body bytes, durations, sessions, hosts, refused handshakes, limit
//! hits), `/healthz` answers, and nothing of it shows on the public port.

use ggrok_tests::TEST_TOKEN;
use ggrok_tests::admin::{ADMIN_CONFIG, Admin};
use ggrok_tests::client::{Public, full};
use ggrok_tests::cluster::{ClientDef, Cluster, Daemon, Server};
use ggrok_tests::upstream::Upstream;
use http::{Method, Request, StatusCode};
use prometheus_parse::{Sample, Scrape, Value};
use std::collections::HashMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed scrape.
struct Metrics(Scrape);

impl Metrics {
    fn parse(text: &str) -> Self {
        Self(Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format"))
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&Sample> {
        self.0.samples.iter().find(|s| {
            s.metric == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }

    /// The value of a counter, gauge or untyped sample; panics when it is missing.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.find(name, labels).map(|s| &s.value) {
            Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
            other => panic!("{name}{labels:?}: {other:?}"),
        }
    }

    fn requests(&self, host: &str, class: &str) -> f64 {
        self.value("ggrok_http_requests_total", &[("host", host), ("status_class", class)])
    }

    /// The histogram's `_count`, after checking that its `+Inf` bucket agrees.
    fn durations(&self, host: &str) -> f64 {
        let count = self.value("ggrok_http_request_duration_seconds_count", &[("host", host)]);
        let Some(Value::Histogram(buckets)) =
            self.find("ggrok_http_request_duration_seconds", &[("host", host)]).map(|s| &s.value)
        else {
            panic!("no duration histogram for {host:?}")
        };
        let inf = buckets.iter().find(|b| b.less_than.is_infinite()).expect("+Inf bucket");
        assert_eq!(inf.count, count, "+Inf bucket and _count of {host:?}");
        assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count), "buckets are cumulative");
        assert_eq!(buckets.first().map(|b| b.less_than), Some(0.001));
        assert_eq!(buckets.iter().rev().nth(1).map(|b| b.less_than), Some(30.0));
        count
    }
}

/// Requests answered per status class, body bytes each way, for one host label.
#[derive(Default, Debug)]
struct Expected {
    classes: HashMap<&'static str, f64>,
    received: f64,
    sent: f64,
}

impl Expected {
    fn record(&mut self, status: StatusCode, request_body: usize, response_body: usize) {
        let class = ["1xx", "2xx", "3xx", "4xx", "5xx"][usize::from(status.as_u16() / 100) - 1];
        *self.classes.entry(class).or_default() += 1.0;
        self.received += request_body as f64;
        self.sent += response_body as f64;
    }

    fn total(&self) -> f64 {
        self.classes.values().sum()
    }

    fn check(&self, m: &Metrics, host: &str) {
        for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
            let want = self.classes.get(class).copied().unwrap_or(0.0);
            assert_eq!(m.requests(host, class), want, "requests {host:?} {class}");
        }
        assert_eq!(m.value("ggrok_http_received_bytes_total", &[("host", host)]), self.received, "{host:?}");
        assert_eq!(m.value("ggrok_http_sent_bytes_total", &[("host", host)]), self.sent, "{host:?}");
        assert_eq!(m.durations(host), self.total(), "durations {host:?}");
    }
}

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
            m.durations("api.test") >= api.total() && m.durations("") >= unrouted.total()
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
async fn read_head(conn: &mut TcpStream) -> String {
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
}

/// Sends one raw request on a new connection and returns the status line.
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
    let clients = "[[client]]\nname = \"a\"\ntoken = \"0123456789abcdef\"\nhosts = [\"a.test\"]\n";
    std::fs::write(
        &path,
        format!("listen = \"127.0.0.1:0\"\n[admin]\nlisten = \"localhost:9090\"\n{clients}"),
    )
    .unwrap();
    let path = path.to_str().unwrap();
    let out = std::process::Command::new(ggrok_tests::bins::bin("ggrok-server"))
        .args(["--config", path, "--check"])
        .env_clear()
        .output()
        .unwrap();
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
