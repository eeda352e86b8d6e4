//! Protocols end to end (issue 18, points 3 and 4): HTTP/2 on the public listener (curl over TLS,
//! a Rust HTTP/2 client with concurrent streams and trailers, h2c with prior knowledge, WebSocket
//! over extended CONNECT, 421 for a host the connection's certificate does not cover), gRPC with
//! tonic unary and streaming through TLS to an h2c local service, and local services over
//! `https://` (refused unverified, then passing with `tls_skip_verify` or `ca_file`) and `h2c://`.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use ggrok_tests::TEST_TOKEN;
use ggrok_tests::client::Public;
use ggrok_tests::cluster::{Cluster, Daemon, Server};
use ggrok_tests::grpc::{self, EchoClient};
use ggrok_tests::tls::{TestCa, acceptor, h2_connect};
use ggrok_tests::upstream::{Body, Upstream};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

/// A server with HTTPS: `*.tls.test` and `localhost` certificates from a test CA.
struct TlsServer {
    server: Server,
    https: SocketAddr,
    ca: TestCa,
    ca_file: PathBuf,
}

fn start_tls_server() -> TlsServer {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap().keep();
    let (wild_cert, wild_key) = ca.issue(&dir, "wildcard", &["*.tls.test"]);
    let (local_cert, local_key) = ca.issue(&dir, "localhost", &["localhost"]);
    let ca_file = ca.write_ca(&dir);
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\n[tls]\nlisten = \"127.0.0.1:0\"\n\n\
         [[tls.certificate]]\ncert = {wild_cert:?}\nkey = {wild_key:?}\n\n\
         [[tls.certificate]]\ncert = {local_cert:?}\nkey = {local_key:?}\n\n\
         [[client]]\nname = \"t\"\ntoken = \"{TEST_TOKEN}\"\nhosts = [\"*.tls.test\"]\n"
    );
    let server = Server::start_with(&config);
    let line = server.process.wait_for(&["listening on", "https"]);
    let https = ggrok_tests::process::listening_address(&line).unwrap();
    TlsServer { server, https, ca, ca_file }
}

impl TlsServer {
    /// A daemon with these tunnels (host, local) and `extra` TOML, all online.
    fn daemon(&self, tunnels: &[(&str, &str)], extra: &str) -> Daemon {
        let daemon = Daemon::start(&self.server.ws_url(), TEST_TOKEN, tunnels, extra);
        for (host, _) in tunnels {
            daemon.wait_online(host);
        }
        daemon
    }
}

fn full(body: &'static str) -> Body {
    Full::new(Bytes::from_static(body.as_bytes())).boxed()
}

async fn curl(args: Vec<String>) -> String {
    let out = tokio::task::spawn_blocking(move || std::process::Command::new("curl").args(&args).output())
        .await
        .unwrap()
        .expect("run curl");
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn report_of(text: &str) -> serde_json::Value {
    let body = text.split("\r\n\r\n").nth(1).unwrap_or(text);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_speaks_http2_over_tls_and_h2c() {
    let version = std::process::Command::new("curl").arg("--version").output().expect("curl is installed");
    assert!(String::from_utf8_lossy(&version.stdout).contains("HTTP2"), "this curl has no HTTP/2");
    let up = Upstream::start().await;
    let tls = start_tls_server();
    let _daemon = tls.daemon(&[("api.tls.test", &up.port())], "");

    let port = tls.https.port();
    let text = curl(vec![
        "-sS".into(),
        "-i".into(),
        "--http2".into(),
        "--cacert".into(),
        tls.ca_file.display().to_string(),
        "--resolve".into(),
        format!("api.tls.test:{port}:127.0.0.1"),
        format!("https://api.tls.test:{port}/hello?x=1"),
    ])
    .await;
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    let report = report_of(&text);
    assert_eq!((report["path"].as_str(), report["query"].as_str()), (Some("/hello"), Some("x=1")));
    let forwarded: Vec<_> =
        report["headers"].as_array().unwrap().iter().filter(|h| h[0] == "x-forwarded-host").collect();
    assert_eq!(forwarded[0][1], format!("api.tls.test:{port}"), "{report}");

    // Cleartext with prior knowledge (h2c).
    let plain = tls.server.addr.port();
    let text = curl(vec![
        "-sS".into(),
        "-i".into(),
        "--http2-prior-knowledge".into(),
        "--resolve".into(),
        format!("api.tls.test:{plain}:127.0.0.1"),
        format!("http://api.tls.test:{plain}/h2c"),
    ])
    .await;
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert_eq!(report_of(&text)["path"], "/h2c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_multiplexes_streams_with_trailers_and_gets_421_for_other_names() {
    let up = Upstream::start().await;
    let tls = start_tls_server();
    let _daemon = tls.daemon(&[("a.tls.test", &up.port()), ("b.tls.test", &up.port())], "");
    let port = tls.https.port();
    let sender = h2_connect::<Body>(tls.ca.client_config(), tls.https, "a.tls.test").await.unwrap();

    // Several requests at once on the one connection, each with a body and trailers.
    let requests = (0..8).map(|i| {
        let mut sender = sender.clone();
        async move {
            let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
                Ok(Frame::data(Bytes::from(format!("body {i}")))),
                Ok(Frame::trailers(http::HeaderMap::from_iter([(
                    http::HeaderName::from_static("x-sum"),
                    http::HeaderValue::from(i),
                )]))),
            ];
            let req = Request::post(format!("https://a.tls.test:{port}/echo/{i}"))
                .header("te", "trailers")
                // An HTTP/1.1 local service gets the trailers the request declares (hyper sends
                // only those), as chunked trailer fields.
                .header("trailer", "x-sum")
                .body(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames))))
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.version(), http::Version::HTTP_2);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let report: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(report["path"], format!("/echo/{i}"));
            assert_eq!(report["body_len"], format!("body {i}").len());
            assert_eq!(report["trailers"], serde_json::json!([["x-sum", i.to_string()]]), "{report}");
            let te: Vec<_> = report["headers"].as_array().unwrap().iter().filter(|h| h[0] == "te").collect();
            assert_eq!(
                te,
                [&serde_json::json!(["te", "trailers"])],
                "te: trailers must reach the local service"
            );
        }
    });
    futures_util::future::join_all(requests).await;

    // Response trailers.
    let req = Request::get(format!("https://a.tls.test:{port}/trailers"))
        .header("te", "trailers")
        .body(full(""))
        .unwrap();
    let resp = sender.clone().send_request(req).await.unwrap();
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().expect("trailers were dropped")["x-checksum"], "abc123");
    // Another name the certificate covers, on the same connection (coalescing): served.
    let req = Request::get(format!("https://b.tls.test:{port}/coalesced")).body(full("")).unwrap();
    let resp = sender.clone().send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // A connection opened for localhost (its own certificate) asking for a.tls.test: 421.
    let sender = h2_connect::<Body>(tls.ca.client_config(), tls.https, "localhost").await.unwrap();
    let req = Request::get(format!("https://a.tls.test:{port}/")).body(full("")).unwrap();
    let resp = sender.clone().send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::MISDIRECTED_REQUEST);
    let text = String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned();
    assert!(text.contains("opened for localhost") && text.contains("a.tls.test"), "{text}");
    // HTTP/1.1 over TLS is checked the same way.
    let mut h1 = ggrok_tests::tls::HttpsConnection::open(tls.ca.client_config(), tls.https, "localhost")
        .await
        .unwrap();
    let (status, _) = h1.get("a.tls.test", "/").await.unwrap();
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_http2_extended_connect() {
    let up = Upstream::start().await;
    let tls = start_tls_server();
    let _daemon = tls.daemon(&[("ws.tls.test", &up.port())], "");
    let port = tls.https.port();
    let mut sender = h2_connect::<Body>(tls.ca.client_config(), tls.https, "ws.tls.test").await.unwrap();
    // One request first: the server's SETTINGS (extended CONNECT enabled) have arrived by its answer.
    let req = Request::get(format!("https://ws.tls.test:{port}/")).body(full("")).unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), StatusCode::OK);

    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("https://ws.tls.test:{port}/ws"))
        .header("sec-websocket-version", "13")
        .body(full(""))
        .unwrap();
    req.extensions_mut().insert(hyper::ext::Protocol::from_static("websocket"));
    let mut resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{:?}", resp.headers());
    assert!(!resp.headers().contains_key("sec-websocket-accept"));
    let upgraded = hyper::upgrade::on(&mut resp).await.unwrap();
    let mut ws =
        WebSocketStream::from_raw_socket(hyper_util::rt::TokioIo::new(upgraded), Role::Client, None).await;
    for text in ["one", "two"] {
        ws.send(Message::text(text)).await.unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().into_data().as_ref(), [1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_and_streaming_through_tls_to_h2c() {
    let service = grpc::serve_h2c().await;
    let tls = start_tls_server();
    // h2c://, and http:// with app_protocol = "http2": the same.
    let second = format!(
        "[[tunnel]]\nhost = \"grpc2.tls.test\"\nlocal = \"http://{service}\"\napp_protocol = \"http2\"\n"
    );
    let daemon = tls.daemon(&[("grpc.tls.test", &format!("h2c://{service}"))], &second);
    daemon.wait_online("grpc2.tls.test");
    let port = tls.https.port();

    for host in ["grpc.tls.test", "grpc2.tls.test"] {
        let sender = h2_connect(tls.ca.client_config(), tls.https, host).await.unwrap();
        let mut client = EchoClient::new(sender, &format!("https://{host}:{port}"));
        assert_eq!(client.unary("hello", false).await.unwrap(), "HELLO");
        let counted = client.count(5).await.unwrap();
        assert_eq!(counted, ["0", "1", "2", "3", "4"]);
        let chat = client.chat(&["a", "b", "c"]).await.unwrap();
        assert_eq!(chat, ["echo: a", "echo: b", "echo: c"]);
        // A failure's status and message travel in the trailers.
        let status = client.unary("nothing here", true).await.unwrap_err();
        assert_eq!((status.code(), status.message()), (tonic::Code::NotFound, "nothing here"), "{status:?}");
        // Many calls at once on one connection.
        let calls = (0..20).map(|i| {
            let sender = client_sender(&tls, host);
            async move {
                let mut client = EchoClient::new(sender.await, &format!("https://{host}:{port}"));
                assert_eq!(client.unary(&format!("m{i}"), false).await.unwrap(), format!("M{i}"));
            }
        });
        futures_util::future::join_all(calls).await;
    }
    let list = String::from_utf8(daemon.ctl(&["list"]).stdout).unwrap();
    assert!(list.contains(&format!("h2c://{service}")), "{list}");
}

async fn client_sender(
    tls: &TlsServer,
    host: &str,
) -> hyper::client::conn::http2::SendRequest<tonic::body::Body> {
    h2_connect(tls.ca.client_config(), tls.https, host).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_local_services_are_verified_unless_told_otherwise() {
    // The local service's certificate comes from a CA ggrokd does not know.
    let local_ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = local_ca.issue(dir.path(), "local", &["localhost"]);
    let local_ca_file = local_ca.write_ca(dir.path());
    let both = Upstream::start_tls(acceptor(&cert, &key, &[b"h2", b"http/1.1"])).await;
    let h1_only = Upstream::start_tls(acceptor(&cert, &key, &[b"http/1.1"])).await;
    let url = |up: &Upstream| format!("https://localhost:{}", up.port());
    let extra = format!(
        "[[tunnel]]\nhost = \"skip.test\"\nlocal = \"{}\"\ntls_skip_verify = true\n\n\
         [[tunnel]]\nhost = \"ca.test\"\nlocal = \"{}\"\nca_file = {local_ca_file:?}\n\n\
         [[tunnel]]\nhost = \"h1.test\"\nlocal = \"{}\"\nca_file = {local_ca_file:?}\n\n\
         [[tunnel]]\nhost = \"forced.test\"\nlocal = \"{}\"\nca_file = {local_ca_file:?}\napp_protocol = \"http1\"\n",
        url(&both),
        url(&both),
        url(&h1_only),
        url(&both)
    );
    let cluster = Cluster::start_with(&[("strict.test", &url(&both))], &extra);
    for host in ["skip.test", "ca.test", "h1.test", "forced.test"] {
        cluster.daemon.wait_online(host);
    }
    let public = Public::new(cluster.addr());

    let refused = public.get("strict.test", "/").await;
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY);
    let text = refused.text();
    assert!(
        text.contains("certificate") && text.contains("tls_skip_verify") && text.contains("ca_file"),
        "{text}"
    );

    // ALPN: HTTP/2 where the service offers it, HTTP/1.1 where not or when told.
    for (host, version) in [
        ("skip.test", "HTTP/2.0"),
        ("ca.test", "HTTP/2.0"),
        ("h1.test", "HTTP/1.1"),
        ("forced.test", "HTTP/1.1"),
    ] {
        for round in 0..2 {
            let reply = public.get(host, &format!("/r{round}")).await;
            assert_eq!(reply.status, StatusCode::OK, "{host}: {}", reply.text());
            let report = reply.json();
            assert_eq!(report["version"], version, "{host}: {report}");
            let hosts: Vec<_> =
                report["headers"].as_array().unwrap().iter().filter(|h| h[0] == "host").collect();
            assert!(hosts.is_empty() || hosts[0][1] == host, "{host}: {report}");
        }
    }
    // Trailers from an HTTP/2 local service.
    let req = Request::get("/trailers").header("te", "trailers").body(ggrok_tests::client::full("")).unwrap();
    let resp = public.send("skip.test", req).await;
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().expect("trailers were dropped")["x-checksum"], "abc123");

    // --check names the unverified tunnel.
    let out = std::process::Command::new(ggrok_tests::bins::bin("ggrokd"))
        .args(["--check", "--config", cluster.daemon.config.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("warning: tunnel skip.test: tls_skip_verify = true"), "{stdout}");
    assert_eq!(stdout.matches("tls_skip_verify").count(), 1, "{stdout}");

    // The same from ggrokctl: --ca-file (saved as an absolute path) and --tls-skip-verify.
    let ctl = |args: &[&str], code: i32| {
        let out = cluster.daemon.ctl(args);
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(code), "ggrokctl {args:?}: {text}");
        text
    };
    let ca = local_ca_file.to_str().unwrap();
    ctl(&["add", "ctl-ca.test", &url(&both), "--ca-file", ca], 0);
    ctl(&["add", "ctl-skip.test", &url(&both), "--tls-skip-verify"], 0);
    for host in ["ctl-ca.test", "ctl-skip.test"] {
        let reply = public.get(host, "/").await;
        assert_eq!(reply.status, StatusCode::OK, "{host}: {}", reply.text());
    }
    let saved = std::fs::read_to_string(&cluster.daemon.config).unwrap();
    let absolute = std::fs::canonicalize(&local_ca_file).unwrap();
    assert!(saved.contains(&format!("ca_file = {:?}", absolute.display().to_string())), "{saved}");
    assert!(
        saved.contains("host = \"ctl-skip.test\"") && saved.matches("tls_skip_verify = true").count() == 2
    );
    let err = ctl(&["add", "plain.test", "8080", "--tls-skip-verify"], 2); // checked by ggrokctl
    assert!(err.contains("--tls-skip-verify: applies to https:// local services only"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_local_services_and_ggrokctl_add() {
    let up = Upstream::start().await;
    let local = format!("h2c://127.0.0.1:{}", up.port());
    let cluster = Cluster::start(&[("h2c.test", &local)]);
    let public = Public::new(cluster.addr());
    let reply = public.get("h2c.test", "/over-h2c").await;
    assert_eq!(reply.status, StatusCode::OK);
    let report = reply.json();
    assert_eq!((report["version"].as_str(), report["path"].as_str()), (Some("HTTP/2.0"), Some("/over-h2c")));
    let req = Request::get("/trailers").header("te", "trailers").body(ggrok_tests::client::full("")).unwrap();
    let collected = public.send("h2c.test", req).await.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().expect("trailers were dropped")["x-checksum"], "abc123");

    // ggrokctl add takes the URL, list shows it, and the file keeps it.
    let out = cluster.daemon.ctl(&["add", "added.test", &local]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list = String::from_utf8(cluster.daemon.ctl(&["list"]).stdout).unwrap();
    assert!(list.lines().any(|l| l.contains("added.test") && l.contains(&local)), "{list}");
    assert!(
        std::fs::read_to_string(&cluster.daemon.config).unwrap().contains(&format!("local = \"{local}\""))
    );
    let reply = public.get("added.test", "/added").await;
    assert_eq!(reply.json()["version"], "HTTP/2.0");
    let out = cluster.daemon.ctl(&["add", "bad.test", "https://127.0.0.1:1/path"]);
    assert!(!out.status.success());

    // The tunnel's own protocols are not for the public (here by HTTP/1.1 upgrade; HTTP/2
    // extended CONNECT meets the same check).
    for protocol in ["ggrok-tcp", "ggrok-control"] {
        let req = Request::get("/")
            .header("connection", "upgrade")
            .header("upgrade", protocol)
            .body(ggrok_tests::client::full(""))
            .unwrap();
        assert_eq!(public.send("h2c.test:5432", req).await.status(), StatusCode::BAD_REQUEST, "{protocol}");
    }
}
