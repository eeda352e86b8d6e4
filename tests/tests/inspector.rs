//! The inspector's API with real traffic through the tunnel: the list and its filters, one
//! request in detail, replay as is and edited (reaching the local service, which echoes what it
//! got), the body cap (a 5 MiB body passes whole while 64 KiB are kept), HAR, clear, and the
//! refusal of foreign `Host` and `Origin` headers.

use ggrok_tests::client::{Public, full};
use ggrok_tests::cluster::Cluster;
use ggrok_tests::inspector::Inspector;
use ggrok_tests::upstream::{Upstream, pattern, pattern_sha256};
use http::{Method, Request, StatusCode};
use serde_json::{Value, json};

async fn cluster() -> (Upstream, Cluster, Inspector, Public) {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("a.test", &up.port()), ("b.test", &up.port())]);
    let inspector = Inspector::of(&cluster.daemon);
    let public = Public::new(cluster.addr());
    (up, cluster, inspector, public)
}

/// The first `len` bytes of the test pattern.
fn pattern_bytes(len: u64) -> bytes::Bytes {
    let mut out = Vec::with_capacity(len as usize);
    while (out.len() as u64) < len {
        let n = (len - out.len() as u64).min(1 << 19) as usize;
        out.extend_from_slice(&pattern(out.len() as u64, n));
    }
    out.into()
}

fn ids(list: &[Value]) -> Vec<u64> {
    list.iter().map(|r| r["id"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_listed_filtered_and_shown_in_full() {
    let (_up, _cluster, inspector, public) = cluster().await;
    let post = Request::post("/hook?event=push")
        .header("content-type", "application/json")
        .header("x-signature", "sha1=abc")
        .body(full(r#"{"ref":"main"}"#))
        .unwrap();
    assert_eq!(public.fetch("a.test", post).await.status, StatusCode::OK);
    assert_eq!(public.get("b.test", "/status/404").await.status, StatusCode::NOT_FOUND);
    assert_eq!(public.get("a.test", "/status/503").await.status, StatusCode::SERVICE_UNAVAILABLE);

    let list = inspector.list_when("", |l| l.len() == 3 && l.iter().all(|r| r["state"] == "done")).await;
    assert_eq!(list.len(), 3, "{list:#?}");
    let paths: Vec<&str> = list.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/status/503", "/status/404", "/hook?event=push"], "newest first");
    let hook = &list[2];
    assert_eq!(
        (hook["method"].as_str(), hook["host"].as_str(), hook["status"].as_u64()),
        (Some("POST"), Some("a.test"), Some(200))
    );
    assert!(hook["duration_ms"].as_f64().is_some() && hook["request_size"] == 14, "{hook:#}");

    assert_eq!(ids(&inspector.list("?status=4xx").await), [list[1]["id"].as_u64().unwrap()]);
    assert_eq!(inspector.list("?status=503").await.len(), 1);
    assert_eq!(inspector.list("?status=5xx&host=a.test").await.len(), 1);
    assert_eq!(inspector.list("?host=b.test").await.len(), 1);
    assert_eq!(inspector.list("?method=post").await.len(), 1);
    assert_eq!(inspector.list("?q=hook").await.len(), 1);
    assert_eq!(inspector.list("?limit=2").await.len(), 2);
    let bad = inspector.request(Method::GET, "/api/requests?colour=red", "").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text());

    let detail = inspector.get(&format!("/api/requests/{}", hook["id"])).await;
    let headers = detail["request"]["headers"].as_array().unwrap();
    assert!(headers.contains(&json!(["x-signature", "sha1=abc"])), "{detail:#}");
    assert_eq!(detail["request"]["body"]["text"], r#"{"ref":"main"}"#);
    let echoed: Value = serde_json::from_str(detail["response"]["body"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(echoed["path"], "/hook", "the answer as the local service gave it");
    assert!(
        detail["response"]["headers"]
            .as_array()
            .unwrap()
            .contains(&json!(["content-type", "application/json"]))
    );
    let raw = inspector.request(Method::GET, &format!("/api/requests/{}/request/body", hook["id"]), "").await;
    assert_eq!(
        (raw.text().as_str(), raw.headers["content-type"].to_str().unwrap()),
        (r#"{"ref":"main"}"#, "application/json")
    );
    assert_eq!(
        inspector.request(Method::GET, "/api/requests/999999", "").await.status,
        StatusCode::NOT_FOUND
    );

    let har = inspector.get("/api/har").await;
    assert_eq!(har["log"]["version"], "1.2");
    let entries = har["log"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    let first = &entries[0];
    assert_eq!(first["request"]["url"], "http://a.test/hook?event=push");
    assert_eq!(first["request"]["queryString"], json!([{"name": "event", "value": "push"}]));
    assert_eq!(first["request"]["postData"]["text"], r#"{"ref":"main"}"#);
    assert_eq!(first["response"]["status"], 200);
    assert!(first["startedDateTime"].as_str().unwrap().ends_with('Z'));
    for key in ["time", "cache", "timings"] {
        assert!(!first[key].is_null(), "HAR entries need {key}");
    }

    let cleared = inspector.request(Method::DELETE, "/api/requests", "").await;
    assert_eq!(cleared.status, StatusCode::NO_CONTENT);
    assert!(inspector.list("").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_reach_the_local_service_as_is_and_edited() {
    let (_up, cluster, inspector, public) = cluster().await;
    let post = Request::post("/orders?x=1").header("x-token", "t1").body(full("first body")).unwrap();
    assert_eq!(public.fetch("a.test", post).await.status, StatusCode::OK);
    let original =
        inspector.list_when("", |l| l.first().is_some_and(|r| r["state"] == "done")).await[0].clone();
    let id = original["id"].as_u64().unwrap();

    // As is: the local service gets the same method, path, headers and body.
    let replay = inspector.request(Method::POST, &format!("/api/requests/{id}/replay"), "").await;
    assert_eq!(replay.status, StatusCode::OK, "{}", replay.text());
    let replay = replay.json();
    assert_eq!(replay["replay_of"], id);
    let echoed: Value = serde_json::from_str(replay["response"]["body"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        (echoed["method"].as_str(), echoed["path"].as_str(), echoed["query"].as_str()),
        (Some("POST"), Some("/orders"), Some("x=1"))
    );
    assert_eq!(echoed["body_start"], "first body");
    assert!(echoed["headers"].as_array().unwrap().contains(&json!(["x-token", "t1"])), "{echoed:#}");
    assert!(echoed["headers"].as_array().unwrap().contains(&json!(["host", "a.test"])), "{echoed:#}");

    // Edited: method, path, headers and body.
    let edits =
        json!({"method": "PUT", "path": "/orders/7", "headers": [["x-token", "t2"]], "body": "second"});
    let edited =
        inspector.request(Method::POST, &format!("/api/requests/{id}/replay"), &edits.to_string()).await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.text());
    let echoed: Value =
        serde_json::from_str(edited.json()["response"]["body"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        (echoed["method"].as_str(), echoed["path"].as_str(), echoed["body_start"].as_str()),
        (Some("PUT"), Some("/orders/7"), Some("second"))
    );
    assert!(echoed["headers"].as_array().unwrap().contains(&json!(["x-token", "t2"])));

    // Both replays are in the list, marked.
    let list = inspector.list_when("", |l| l.len() == 3).await;
    let replays: Vec<&Value> = list.iter().filter(|r| r["replay_of"] == id).collect();
    assert_eq!(replays.len(), 2, "{list:#?}");

    // ggrokctl replay prints the answer; --json has it whole.
    let out = cluster.daemon.ctl(&["replay", &id.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.starts_with(&format!("replayed request {id} as "))
            && text.contains("POST /orders?x=1 -> 200 OK"),
        "{text}"
    );
    assert!(text.contains("\"body_start\":\"first body\""), "{text}");
    let out = cluster.daemon.ctl(&["--json", "replay", &id.to_string()]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (json["kind"].as_str(), json["replay_of"].as_u64(), json["status"].as_u64()),
        (Some("replayed"), Some(id), Some(200))
    );
    let out = cluster.daemon.ctl(&["replay", "424242"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no request 424242 is kept"));

    // Bad edits are refused with the reason.
    let bad =
        inspector.request(Method::POST, &format!("/api/requests/{id}/replay"), r#"{"path":"nope"}"#).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text());
    assert!(bad.text().contains("must start with /"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_passes_whole_while_the_capture_stops_at_the_limit() {
    let (_up, _cluster, inspector, public) = cluster().await;
    const FIVE_MIB: u64 = 5 << 20;
    let upload = Request::post("/up").body(full(pattern_bytes(FIVE_MIB))).unwrap();
    let echoed = public.fetch("a.test", upload).await.json();
    assert_eq!(
        (echoed["body_len"].as_u64(), echoed["body_sha256"].as_str()),
        (Some(FIVE_MIB), Some(pattern_sha256(FIVE_MIB).as_str()))
    );
    let download = public.get("a.test", &format!("/bytes/{FIVE_MIB}")).await;
    assert_eq!(download.body.len() as u64, FIVE_MIB);
    assert_eq!(download.body, pattern_bytes(FIVE_MIB), "the answer passes whole");

    let list = inspector.list_when("", |l| l.len() == 2 && l.iter().all(|r| r["state"] == "done")).await;
    let (down, up) = (&list[0], &list[1]);
    let up = inspector.get(&format!("/api/requests/{}", up["id"])).await;
    let body = &up["request"]["body"];
    assert_eq!(
        (body["size"].as_u64(), body["captured"].as_u64(), body["truncated"].as_bool()),
        (Some(FIVE_MIB), Some(64 << 10), Some(true)),
        "{body:#}"
    );
    let down = inspector.get(&format!("/api/requests/{}", down["id"])).await;
    let body = &down["response"]["body"];
    assert_eq!(
        (body["size"].as_u64(), body["captured"].as_u64(), body["truncated"].as_bool()),
        (Some(FIVE_MIB), Some(64 << 10), Some(true)),
        "{body:#}"
    );
    // A cut body is not replayed as is: it would be another request.
    let replay = inspector.request(Method::POST, &format!("/api/requests/{}/replay", up["id"]), "").await;
    assert_eq!(replay.status, StatusCode::CONFLICT, "{}", replay.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_hosts_and_origins_are_refused_and_the_page_is_served() {
    let (_up, _cluster, inspector, _public) = cluster().await;
    let client = Public::new(inspector.addr);
    let port = inspector.addr.port();
    let rebinding = client.get(&format!("evil.example:{port}"), "/api/requests").await;
    assert_eq!(rebinding.status, StatusCode::FORBIDDEN, "{}", rebinding.text());
    let local = client.get(&format!("localhost:{port}"), "/api/requests").await;
    assert_eq!(local.status, StatusCode::OK);
    let csrf =
        Request::delete("/api/requests").header("origin", "https://evil.example").body(full("")).unwrap();
    assert_eq!(client.fetch(&format!("127.0.0.1:{port}"), csrf).await.status, StatusCode::FORBIDDEN);
    let page = client.get(&format!("127.0.0.1:{port}"), "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(page.headers["content-security-policy"].to_str().unwrap().contains("default-src 'self'"));
    for path in ["/app.js", "/views.js", "/style.css"] {
        assert_eq!(client.get(&format!("127.0.0.1:{port}"), path).await.status, StatusCode::OK, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_are_shown_with_their_lifetime_and_bytes() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (_up, cluster, inspector, _public) = cluster().await;
    let tcp = tokio::net::TcpStream::connect(cluster.addr()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("ws://a.test/ws", tcp).await.expect("handshake");
    let open = inspector.list_when("", |l| l.first().is_some_and(|r| r["upgrade"] == "websocket")).await;
    assert_eq!(open[0]["state"], "in_flight", "an open WebSocket is in flight: {open:#?}");
    let open = inspector.list_when("", |l| l.first().is_some_and(|r| r["status"] == 101)).await;
    assert_eq!(open[0]["status"], 101, "its 101 shows while it is open: {open:#?}");
    for i in 0..10 {
        ws.send(Message::text(format!("message {i:03}"))).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(format!("message {i:03}")));
    }
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    drop(ws);
    let done = inspector.list_when("", |l| l.first().is_some_and(|r| r["state"] == "done")).await;
    let ws = &done[0];
    assert_eq!((ws["upgrade"].as_str(), ws["status"].as_u64()), (Some("websocket"), Some(101)), "{ws:#}");
    // Ten 11-byte text frames each way, plus the closing frames: masked from the client.
    let (sent, received) = (ws["request_size"].as_u64().unwrap(), ws["response_size"].as_u64().unwrap());
    assert!(sent >= 10 * (11 + 6) && received >= 10 * (11 + 2), "{ws:#}");
    assert!(ws["duration_ms"].as_f64().unwrap() > 0.0, "its lifetime: {ws:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_inspector_port_is_a_warning_and_off_is_off() {
    let up = Upstream::start().await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let cluster = Cluster::start_with(&[("a.test", &up.port())], &format!("inspect = \"127.0.0.1:{port}\""));
    let line = cluster.daemon.process.wait_for(&["WARN", "the inspector cannot listen on"]);
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    let public = Public::new(cluster.addr());
    assert_eq!(public.get("a.test", "/").await.status, StatusCode::OK, "the tunnels serve all the same");

    let off = Cluster::start_with(&[("a.test", &up.port())], "inspect = \"off\"");
    assert_eq!(Public::new(off.addr()).get("a.test", "/x").await.status, StatusCode::OK);
    assert_eq!(off.daemon.process.count(&["inspector on"]), 0, "{}", off.daemon.process.log());
    let out = off.daemon.ctl(&["replay", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the inspector is off"), "{out:?}");
}

/// The config file with its `inspect` line set to `value`.
fn set_inspect(config: &std::path::Path, value: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    let lines: Vec<String> = text
        .lines()
        .map(|l| if l.starts_with("inspect =") { format!("inspect = {value:?}") } else { l.to_owned() })
        .collect();
    assert!(lines.iter().any(|l| l.starts_with("inspect =")), "{text}");
    std::fs::write(config, lines.join("\n") + "\n").unwrap();
}

/// A keep-alive connection to the inspector at `addr`, with one `GET /api/requests` answered.
async fn kept_alive(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(ask(&mut conn, addr).await, "no answer from {addr}");
    conn
}

/// Sends `GET /api/requests` on `conn`: whether an answer came (not the connection's end).
async fn ask(conn: &mut tokio::net::TcpStream, addr: std::net::SocketAddr) -> bool {
    use tokio::io::AsyncWriteExt;
    let request = format!("GET /api/requests HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    if conn.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut first = [0u8; 1];
    if !matches!(conn.peek(&mut first).await, Ok(1)) {
        return false;
    }
    let (head, _) = ggrok_tests::client::read_response(conn).await;
    head.starts_with("HTTP/1.1 200")
}

/// Whether nothing listens at `addr` any more.
fn refused(addr: std::net::SocketAddr) -> bool {
    std::net::TcpStream::connect(addr).is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_stops_and_starts_the_inspector() {
    let (_up, cluster, first, public) = cluster().await;
    assert_eq!(public.get("a.test", "/before-the-move").await.status, StatusCode::OK);
    first.list_when("", |l| !l.is_empty()).await;
    let reload = |what: &str| {
        let out = cluster.daemon.ctl(&["reload"]);
        assert!(out.status.success(), "{what}: {out:?}");
    };
    let mut open_on_first = kept_alive(first.addr).await;

    // Moved: the new address answers, with what was captured before; the old one is closed (a
    // reload returns once it is), and so are its open connections.
    let moved = ggrok_tests::haproxy::free_addr();
    set_inspect(&cluster.daemon.config, &moved.to_string());
    reload("moved");
    assert!(refused(first.addr), "the old address still answers");
    assert_eq!(
        cluster.daemon.status()["inspector"],
        format!("http://{moved}"),
        "ggrokctl status shows where"
    );
    let second = Inspector::at(moved);
    let list = second.list("").await;
    assert!(list.iter().any(|r| r["path"] == "/before-the-move"), "{list:?}");
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut rest = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut open_on_first, &mut rest).await.ok()
    });
    assert!(ended.await.is_ok(), "a connection to the old listener stayed open");
    assert_eq!(public.get("a.test", "/after-the-move").await.status, StatusCode::OK);
    second.list_when("", |l| l.iter().any(|r| r["path"] == "/after-the-move")).await;

    // A reload that leaves `inspect` alone leaves the listener alone: its connections too.
    let mut open_on_second = kept_alive(moved).await;
    reload("unchanged");
    assert!(ask(&mut open_on_second, moved).await, "the listener was restarted by an unchanged reload");

    // Off: nothing listens, nothing is captured, and replay says so.
    set_inspect(&cluster.daemon.config, "off");
    reload("off");
    assert!(refused(moved), "the inspector still answers when off");
    assert!(cluster.daemon.status().get("inspector").is_none(), "{:#}", cluster.daemon.status());
    assert_eq!(public.get("a.test", "/while-off").await.status, StatusCode::OK);
    let out = cluster.daemon.ctl(&["replay", "1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("the inspector is off"), "{out:?}");

    // On again, at the same address: the requests from before, none while it was off.
    set_inspect(&cluster.daemon.config, &moved.to_string());
    reload("on again");
    let paths: Vec<Value> = Inspector::at(moved).list("").await.iter().map(|r| r["path"].clone()).collect();
    assert_eq!(paths, [json!("/after-the-move"), json!("/before-the-move")], "newest first");
}
