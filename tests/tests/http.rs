//! Plain HTTP through the tunnel: routing by Host, methods, queries, headers, bodies, keep-alive.

use ggrok_tests::TEST_TOKEN;
use ggrok_tests::client::read_response;
use ggrok_tests::client::{Public, full};
use ggrok_tests::cluster::{ClientDef, Cluster, Daemon, Server};
use ggrok_tests::upstream::Upstream;
use http::{Method, Request, StatusCode};
use http_body_util::StreamBody;
use hyper::body::Frame;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn header_values<'a>(report: &'a Value, name: &str) -> Vec<&'a str> {
    report["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| pair[0] == name)
        .map(|pair| pair[1].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tunnel_is_reachable_by_its_host() {
    let (a, b, c) = (Upstream::start().await, Upstream::start().await, Upstream::start().await);
    let (pa, pb, pc) =
        (a.port(), format!("127.0.0.1:{}", b.port()), format!("http://127.0.0.1:{}", c.port()));
    let cluster = Cluster::start(&[("a.test", &pa), ("b.example.com", &pb), ("*.wild.test", &pc)]);
    let public = Public::new(cluster.addr());

    for (host, upstream) in
        [("a.test", &a), ("B.Example.com:8080", &b), ("x.wild.test", &c), ("y.wild.test", &c)]
    {
        let before = upstream.served.load(std::sync::atomic::Ordering::SeqCst);
        let reply = public.get(host, "/hello").await;
        assert_eq!(reply.status, StatusCode::OK, "{host}: {}", reply.text());
        assert_eq!(reply.json()["path"], "/hello");
        assert_eq!(
            upstream.served.load(std::sync::atomic::Ordering::SeqCst),
            before + 1,
            "{host} reached the wrong upstream"
        );
    }
    // Wildcards cover exactly one label.
    assert_eq!(public.get("a.b.wild.test", "/").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_queries_and_repeated_headers_arrive_intact() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("api.test", &up.port())]);
    let public = Public::new(cluster.addr());

    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"] {
        let req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri("/items/42?sort=desc&tag=a&tag=b&q=%20x")
            .header("x-multi", "one")
            .header("x-multi", "two")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .body(full(""))
            .unwrap();
        let reply = public.fetch("api.test", req).await;
        assert_eq!(reply.status, StatusCode::OK, "{method}");
        let report = reply.json();
        assert_eq!(report["method"], method);
        assert_eq!(report["path"], "/items/42");
        assert_eq!(report["query"], "sort=desc&tag=a&tag=b&q=%20x");
        assert_eq!(header_values(&report, "x-multi"), ["one", "two"]);
        assert_eq!(header_values(&report, "cookie").len(), 2);
        assert_eq!(header_values(&report, "host"), ["api.test"]);
    }

    // HEAD: headers only.
    let req = Request::builder().method(Method::HEAD).uri("/bytes/1000").body(full("")).unwrap();
    let reply = public.fetch("api.test", req).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["content-length"], "1000");
    assert!(reply.body.is_empty());

    // Status codes pass through unchanged.
    for status in [201u16, 204, 301, 404, 418, 500, 503] {
        assert_eq!(public.get("api.test", &format!("/status/{status}")).await.status.as_u16(), status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_length_and_chunked_bodies_stream_through() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("api.test", &up.port())]);
    let public = Public::new(cluster.addr());

    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let digest = hex::encode(Sha256::digest(&payload));

    // Fixed length.
    let req = Request::post("/upload").body(full(payload.clone())).unwrap();
    let report = public.fetch("api.test", req).await.json();
    assert_eq!(report["body_len"], payload.len());
    assert_eq!(report["body_sha256"], digest.as_str());
    assert_eq!(header_values(&report, "content-length"), [payload.len().to_string()]);

    // Chunked: a body of unknown length, in uneven pieces.
    let pieces: Vec<Result<Frame<bytes::Bytes>, Box<dyn std::error::Error + Send + Sync>>> =
        payload.chunks(7777).map(|c| Ok(Frame::data(bytes::Bytes::copy_from_slice(c)))).collect();
    let body = http_body_util::BodyExt::boxed(StreamBody::new(futures_util::stream::iter(pieces)));
    let req = Request::post("/upload").body(body).unwrap();
    let report = public.fetch("api.test", req).await.json();
    assert_eq!(report["body_len"], payload.len());
    assert_eq!(report["body_sha256"], digest.as_str());
    assert!(header_values(&report, "content-length").is_empty());

    // A download with a known length.
    let reply = public.get("api.test", "/bytes/500000").await;
    assert_eq!(reply.body.len(), 500_000);
    assert_eq!(hex::encode(Sha256::digest(&reply.body)), ggrok_tests::upstream::pattern_sha256(500_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_are_added_and_hop_by_hop_headers_dropped() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("api.test", &up.port())]);
    let public = Public::new(cluster.addr());
    let req = Request::get("/")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("te", "gzip, trailers")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "spoofed.example")
        .header("x-end-to-end", "kept")
        .body(full(""))
        .unwrap();
    let report = public.fetch("api.test:8443", req).await.json();
    assert_eq!(header_values(&report, "x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
    assert_eq!(header_values(&report, "x-forwarded-proto"), ["http"]);
    assert_eq!(header_values(&report, "x-forwarded-host"), ["api.test:8443"]);
    assert_eq!(header_values(&report, "host"), ["api.test:8443"]);
    assert_eq!(header_values(&report, "x-end-to-end"), ["kept"]);
    // Only the end-to-end part of TE survives.
    assert_eq!(header_values(&report, "te"), ["trailers"]);
    for dropped in ["x-hop", "keep-alive", "proxy-authorization"] {
        assert!(header_values(&report, dropped).is_empty(), "{dropped} was forwarded");
    }
    // The local service sees a connection of its own, not the public one's options.
    assert!(header_values(&report, "connection").iter().all(|v| !v.contains("x-hop")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_rewrite_sends_the_local_address() {
    let up = Upstream::start().await;
    let local = format!("127.0.0.1:{}", up.port());
    let server = Server::start(&[ClientDef { name: "t", token: TEST_TOKEN, hosts: &["vite.test"] }]);
    let tunnel = format!("[[tunnel]]\nhost = \"vite.test\"\nlocal = {local:?}\nhost_header = \"rewrite\"\n");
    let daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[], &tunnel);
    daemon.wait_online("vite.test");
    let report = Public::new(server.addr).get("vite.test", "/").await.json();
    assert_eq!(header_values(&report, "host"), [local.as_str()]);
    assert_eq!(header_values(&report, "x-forwarded-host"), ["vite.test"]);
}

/// Raw HTTP/1.1 on one TCP connection: several requests, keep-alive, a chunked request body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("api.test", &up.port())]);
    let mut conn = TcpStream::connect(cluster.addr()).await.unwrap();
    let requests = [
        "GET /one HTTP/1.1\r\nHost: api.test\r\n\r\n".to_owned(),
        "POST /two HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_owned(),
        "PUT /three HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\n\r\nabc".to_owned(),
    ];
    for (i, request) in requests.iter().enumerate() {
        conn.write_all(request.as_bytes()).await.unwrap();
        let (head, body) = read_response(&mut conn).await;
        assert!(head.starts_with("HTTP/1.1 200"), "request {i}: {head}");
        assert!(!head.to_ascii_lowercase().contains("connection: close"), "{head}");
        let report: Value = serde_json::from_slice(&body).unwrap();
        match i {
            0 => assert_eq!(report["path"], "/one"),
            1 => assert_eq!(report["body_start"], "hello world"),
            _ => assert_eq!(report["body_start"], "abc"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_hop_by_hop_headers_are_dropped_and_trailers_arrive() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("api.test", &up.port())]);
    let public = Public::new(cluster.addr());
    let reply = public.get("api.test", "/hop-headers").await;
    assert_eq!(reply.headers["x-public"], "yes");
    for dropped in ["x-private", "keep-alive"] {
        assert!(!reply.headers.contains_key(dropped), "{dropped} reached the client: {:?}", reply.headers);
    }

    let req = Request::get("/trailers").header("te", "trailers").body(full("")).unwrap();
    let collected =
        http_body_util::BodyExt::collect(public.send("api.test", req).await.into_body()).await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers were dropped");
    assert_eq!(trailers["x-checksum"], "abc123");
    assert_eq!(collected.to_bytes(), "body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_host_headers_are_400() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("api.test", &up.port())]);
    let mut conn = TcpStream::connect(cluster.addr()).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: api.test\r\nHost: other.test\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 400"));
}
