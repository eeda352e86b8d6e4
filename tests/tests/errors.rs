//! Every failure is answered with the right status and says what failed.

use ggrok_tests::TEST_TOKEN;
use ggrok_tests::client::Public;
use ggrok_tests::cluster::{ClientDef, Cluster, Daemon, Server};
use ggrok_tests::upstream::Upstream;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_is_404_naming_the_host() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("api.test", &up.port())]);
    let reply = Public::new(cluster.addr()).get("Nobody.Test:8080", "/").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.text().contains("nobody.test"), "{}", reply.text());
    assert_eq!(reply.headers["content-type"], "text/plain; charset=utf-8");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_service_down_is_502_naming_the_local_address_and_recovers() {
    let (held, port) = ggrok_tests::upstream::closed_port();
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("down.test", &port), ("up.test", &up.port())]);
    let public = Public::new(cluster.addr());
    let reply = public.get("down.test", "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(reply.text().contains(&format!("localhost:{port}")), "{}", reply.text());
    assert!(reply.text().contains("down.test"), "{}", reply.text());
    // The other tunnel is unaffected.
    assert_eq!(public.get("up.test", "/").await.status, StatusCode::OK);

    // Once something listens there, the same tunnel works without any restart.
    drop(held);
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await.unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = s.read(&mut buf).await.unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nback").await.unwrap();
    });
    let reply = public.get("down.test", "/").await;
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "back"));
}

/// `https://` in `local` for a service that speaks plain HTTP: the 502 says what is likely wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_plain_http_local_service_is_502_with_a_hint() {
    let up = Upstream::start().await;
    let local = format!("https://127.0.0.1:{}", up.port());
    let cluster = Cluster::start(&[("plain.test", &local)]);
    let reply = Public::new(cluster.addr()).get("plain.test", "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    let text = reply.text();
    assert!(text.contains(&local) && text.contains("TLS handshake with 127.0.0.1 failed"), "{text}");
    assert!(text.contains("is the local service plain HTTP? Then use http://"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_401_before_the_upgrade_and_logged_by_the_daemon() {
    let server = Server::start(&[ClientDef { name: "t", token: TEST_TOKEN, hosts: &["api.test"] }]);
    let daemon = Daemon::start(&server.ws_url(), "not-the-right-token", &[("api.test", "1")], "");
    let line = daemon.process.wait_for(&["unauthorized"]);
    assert!(line.contains("401"), "{line}");
    assert!(!daemon.process.log().contains("not-the-right-token"), "token leaked into the log");
    server.process.wait_for(&["tunnel client refused: unauthorized"]);

    // The same handshake by hand: 401 and no upgrade.
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    let handshake = "GET /$$ggrok HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nggrok-protocol: 1\r\n\
        Authorization: Bearer wrong\r\n\r\n";
    conn.write_all(handshake.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = conn.read(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(text.to_ascii_lowercase().contains("www-authenticate: bearer"), "{text}");
}

/// A `server` URL with the wrong path: ggrokd says there is no tunnel endpoint there (not that
/// raw upgrades do not pass, nor that no tunnel is online for the server's host).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_server_path_is_named_as_such() {
    let server = Server::start(&[ClientDef { name: "t", token: TEST_TOKEN, hosts: &["api.test"] }]);
    let url = format!("{}/wrongpath", server.ws_url());
    let daemon = Daemon::start(&url, TEST_TOKEN, &[("api.test", "1")], "");
    let line = daemon.process.wait_for(&["cannot connect to the server", "no ggrok tunnel endpoint"]);
    assert!(line.contains(&format!("at {url}: the server answered 404 Not Found")), "{line}");
    assert!(line.contains("this server takes tunnels at another path"), "{line}");
    assert!(line.contains("tunnel_path (default /$$ggrok)"), "{line}");
    assert!(!daemon.process.log().contains("raw upgrades"), "{}", daemon.process.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_path_without_websocket_is_400() {
    let server = Server::start(&[ClientDef { name: "t", token: TEST_TOKEN, hosts: &["api.test"] }]);
    let reply = Public::new(server.addr).get("api.test", "/$$ggrok").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.text().contains("WebSocket"), "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disallowed_host_is_refused_on_both_sides_and_the_rest_still_work() {
    let up = Upstream::start().await;
    let server = Server::start(&[ClientDef { name: "alice", token: TEST_TOKEN, hosts: &["*.alice.test"] }]);
    let daemon = Daemon::start(
        &server.ws_url(),
        TEST_TOKEN,
        &[("api.alice.test", &up.port()), ("bank.test", &up.port()), ("*.test", &up.port())],
        "",
    );
    daemon.wait_online("api.alice.test");
    let d = daemon.process.wait_for(&["tunnel refused", "bank.test"]);
    assert!(d.contains("may not claim bank.test"), "{d}");
    daemon.process.wait_for(&["tunnel refused", "*.test"]);
    let s = server.process.wait_for(&["host refused", "bank.test"]);
    assert!(s.contains("alice"), "{s}");

    let public = Public::new(server.addr);
    assert_eq!(public.get("api.alice.test", "/").await.status, StatusCode::OK);
    assert_eq!(public.get("bank.test", "/").await.status, StatusCode::NOT_FOUND);
    assert_eq!(public.get("other.test", "/").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_held_by_another_client_is_refused() {
    let up = Upstream::start().await;
    let server = Server::start(&[
        ClientDef { name: "alice", token: TEST_TOKEN, hosts: &["shared.test"] },
        ClientDef { name: "bob", token: "bob-token-0123456789abc", hosts: &["shared.test"] },
    ]);
    let alice = Daemon::start(&server.ws_url(), TEST_TOKEN, &[("shared.test", &up.port())], "");
    alice.wait_online("shared.test");
    let bob = Daemon::start(&server.ws_url(), "bob-token-0123456789abc", &[("shared.test", &up.port())], "");
    let line = bob.process.wait_for(&["tunnel refused", "shared.test"]);
    assert!(line.contains("already served by another client"), "{line}");
    assert_eq!(Public::new(server.addr).get("shared.test", "/").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_host_headers_are_400() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("api.test", &up.port())]);
    for host in ["bad_host!", "a..test", "api.test:http", "*.test"] {
        let mut conn = TcpStream::connect(cluster.addr()).await.unwrap();
        conn.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = conn.read(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 400"), "{host}: {text}");
    }
    // HTTP/1.1 without any Host: hyper or ggrok answers 400.
    let mut conn = TcpStream::connect(cluster.addr()).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 400"));
}
