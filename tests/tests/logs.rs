//! `ggrokctl logs` (listing, follow, filters, WebSocket entries, the bounded ring, a follower that
//! falls behind) and the traffic counters of `list` and `status`, against the real binaries.

use futures_util::{SinkExt, StreamExt};
use ggrok_tests::client::{Public, full};
use ggrok_tests::cluster::Cluster;
use ggrok_tests::logs::{Follower, entries, poll};
use ggrok_tests::upstream::Upstream;
use http::{Request, StatusCode};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn path_is(path: &str) -> impl Fn(&Value) -> bool + '_ {
    move |v| v["path"] == path
}

fn paths(entries: &[Value]) -> Vec<String> {
    entries.iter().map(|e| e["path"].as_str().unwrap().to_owned()).collect()
}

/// The tunnel `host` as `list --json` shows it.
fn tunnel(socket: &Path, host: &str) -> Value {
    let out = ggrok_tests::cluster::ctl(socket, &["list", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).expect("list --json");
    list["tunnels"].as_array().unwrap().iter().find(|t| t["host"] == host).expect(host).clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_appear_with_their_fields() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("api.test", &up.port())]);
    let public = Public::new(cluster.addr());
    let socket = &cluster.daemon.socket;
    let before = now();
    let post = Request::post("/echo?x=1&y=2").body(full(vec![b'x'; 1234])).unwrap();
    let echo = public.fetch("api.test", post).await;
    assert_eq!(echo.status, StatusCode::OK);
    assert_eq!(public.get("api.test", "/bytes/5000").await.body.len(), 5000);
    assert_eq!(public.get("api.test", "/status/404").await.status, StatusCode::NOT_FOUND);
    let after = now();

    let logged = poll("three entries", || Some(entries(socket, &[])).filter(|e| e.len() == 3));
    assert_eq!(paths(&logged), ["/echo?x=1&y=2", "/bytes/5000", "/status/404"]);
    let (post, download, missing) = (&logged[0], &logged[1], &logged[2]);
    assert_eq!((post["host"].as_str(), post["method"].as_str()), (Some("api.test"), Some("POST")));
    assert_eq!((post["status"].as_u64(), post["bytes_in"].as_u64()), (Some(200), Some(1234)));
    assert_eq!(post["bytes_out"].as_u64(), Some(echo.body.len() as u64));
    assert_eq!(post["client"], "127.0.0.1");
    assert!(post.get("upgrade").is_none(), "{post}");
    for e in &logged {
        assert!(e["duration_ms"].as_f64().unwrap() > 0.0, "{e}");
        let time = e["time"].as_f64().unwrap();
        assert!(time >= before - 0.01 && time <= after + 0.01, "{time} not in [{before}, {after}]");
    }
    assert_eq!((download["method"].as_str(), download["bytes_in"].as_u64()), (Some("GET"), Some(0)));
    assert_eq!(download["bytes_out"].as_u64(), Some(5000));
    assert_eq!((missing["status"].as_u64(), missing["bytes_out"].as_u64()), (Some(404), Some(0)));

    // -n keeps the newest; the text form has a header and one line per request.
    assert_eq!(paths(&entries(socket, &["-n", "1"])), ["/status/404"]);
    let text = String::from_utf8(cluster.daemon.ctl(&["logs"]).stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("TIME") && lines[0].ends_with("REQUEST"), "{text}");
    assert_eq!(lines.len(), 4, "{text}");
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(cells[1..3], ["200", "POST"], "{text}");
    assert!(
        lines[1].contains("1.2 KiB") && lines[1].ends_with("127.0.0.1        api.test/echo?x=1&y=2"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_shows_requests_as_they_complete_and_filters_by_host() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("a.test", &up.port()), ("b.test", &up.port())]);
    let public = Public::new(cluster.addr());
    let socket = &cluster.daemon.socket;
    public.get("a.test", "/first").await;

    let all = Follower::start(socket, &[]);
    let only_a = Follower::start(socket, &["a.test"]);
    // The first request reaches each follower, from its backlog or live: from then on it is live.
    all.wait_for("/first", path_is("/first"));
    only_a.wait_for("/first", path_is("/first"));

    public.get("b.test", "/second").await;
    public.get("a.test", "/third").await;
    all.wait_for("/third", path_is("/third"));
    only_a.wait_for("/third", path_is("/third"));
    assert_eq!(paths(&all.lines()), ["/first", "/second", "/third"]);
    let filtered = only_a.lines();
    assert_eq!(paths(&filtered), ["/first", "/third"]);
    assert!(filtered.iter().all(|l| l["host"] == "a.test" && l["kind"] == "request"), "{filtered:?}");

    // The same filter without follow, and a pattern.
    assert_eq!(paths(&entries(socket, &["b.test"])), ["/second"]);
    assert_eq!(entries(socket, &["*.test"]).len(), 3);
    let bad = cluster.daemon.ctl(&["logs", "bad host"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid host"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_is_one_entry_with_its_lifetime_and_bytes() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("ws.test", &up.port())]);
    let socket = &cluster.daemon.socket;
    let tcp = tokio::net::TcpStream::connect(cluster.addr()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("ws://ws.test/ws", tcp).await.unwrap();
    let blob = vec![7u8; 100_000];
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    ws.send(Message::binary(blob.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(blob));

    // Open: counted in flight, not logged yet.
    assert_eq!(tunnel(socket, "ws.test")["active"], 1);
    assert!(entries(socket, &[]).is_empty());
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    // The connection ends when both directions have: the client closes its side too.
    drop(ws);

    let logged = poll("the WebSocket's entry", || Some(entries(socket, &[])).filter(|e| !e.is_empty()));
    assert_eq!(logged.len(), 1, "{logged:?}");
    let e = &logged[0];
    assert_eq!((e["path"].as_str(), e["method"].as_str()), (Some("/ws"), Some("GET")));
    assert_eq!((e["status"].as_u64(), e["upgrade"].as_str()), (Some(101), Some("websocket")));
    assert_eq!(e["client"], "127.0.0.1");
    // The payloads plus WebSocket framing (a few bytes a frame) each way.
    let payload = 100_005;
    for key in ["bytes_in", "bytes_out"] {
        let n = e[key].as_u64().unwrap();
        assert!((payload..payload + 64).contains(&n), "{key} = {n}");
    }
    assert!(e["duration_ms"].as_f64().unwrap() > 0.0);
    let t = poll("no stream in flight", || Some(tunnel(socket, "ws.test")).filter(|t| t["active"] == 0));
    assert_eq!((t["requests"].as_u64(), t["bytes_in"].as_u64()), (Some(1), e["bytes_in"].as_u64()));
    assert!(t.get("p50_ms").is_none(), "an upgraded connection's lifetime is no latency: {t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ring_stays_bounded_under_ten_thousand_requests() {
    let up = Upstream::start().await;
    let cluster = Cluster::start_with(&[("ring.test", &up.port())], "request_log = 100");
    let public = Public::new(cluster.addr());
    let socket = &cluster.daemon.socket;
    // 9,900 requests on 9 keep-alive connections at once, then the last 100 one after another.
    let burst: Vec<_> = (0..9)
        .map(|t| {
            let public = public.clone();
            tokio::spawn(async move {
                for i in 0..1100 {
                    assert_eq!(
                        public.get("ring.test", &format!("/burst/{t}/{i}")).await.status,
                        StatusCode::OK
                    );
                }
            })
        })
        .collect();
    for task in burst {
        task.await.unwrap();
    }
    for i in 0..100 {
        public.get("ring.test", &format!("/last/{i}")).await;
    }
    let newest: Vec<String> = (0..100).map(|i| format!("/last/{i}")).collect();
    let logged =
        poll("the newest 100", || Some(entries(socket, &["-n", "all"])).filter(|e| paths(e) == newest));
    assert_eq!(logged.len(), 100);
    assert_eq!(entries(socket, &["-n", "5000"]).len(), 100);
    assert_eq!(paths(&entries(socket, &["-n", "3"])), newest[97..]);
    assert_eq!(tunnel(socket, "ring.test")["requests"], 10_000);
}

/// A follower that reads nothing fills its socket; the daemon goes on serving, and the follower
/// later learns how many requests it missed: delivered plus missed is every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_falls_behind_is_told_what_it_missed() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("lag.test", &up.port())]);
    let public = Public::new(cluster.addr());
    let follower = std::os::unix::net::UnixStream::connect(&cluster.daemon.socket).unwrap();
    (&follower).write_all(b"{\"version\":1,\"cmd\":\"logs\",\"follow\":true,\"last\":1}\n").unwrap();
    let mut reader = BufReader::new(follower);
    // The first request comes from the backlog or live: either way, the follow is live after it.
    public.get("lag.test", "/start").await;
    assert_eq!(read_reply(&mut reader)["path"], "/start");

    let burst: Vec<_> = (0..8)
        .map(|t| {
            let public = public.clone();
            tokio::spawn(async move {
                for i in 0..750 {
                    public.get("lag.test", &format!("/lag/{t}/{i}")).await;
                }
            })
        })
        .collect();
    for task in burst {
        task.await.unwrap();
    }
    public.get("lag.test", "/end").await;

    let (mut delivered, mut missed) = (0u64, 0u64);
    loop {
        let v = read_reply(&mut reader);
        match v["kind"].as_str() {
            Some("request") => delivered += 1,
            Some("missed") => missed += v["count"].as_u64().unwrap(),
            _ => panic!("unexpected {v}"),
        }
        if v["path"] == "/end" {
            break;
        }
    }
    assert!(missed > 0, "the follower never fell behind ({delivered} delivered)");
    assert_eq!(delivered + missed, 6001);
}

fn read_reply(reader: &mut impl BufRead) -> Value {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_status_count_what_passed() {
    let up = Upstream::start().await;
    let (_held, down) = ggrok_tests::upstream::closed_port();
    let tunnels = [("count.test", up.port()), ("idle.test", up.port()), ("down.test", down)];
    let cluster = Cluster::start(&tunnels.each_ref().map(|(h, p)| (*h, p.as_str())));
    let public = Public::new(cluster.addr());
    let socket = &cluster.daemon.socket;
    for _ in 0..3 {
        public.get("count.test", "/bytes/1000").await;
    }
    for status in [404, 404, 503] {
        public.get("count.test", &format!("/status/{status}")).await;
    }
    let echo = public.fetch("count.test", Request::post("/echo").body(full(vec![1u8; 500])).unwrap()).await;
    assert_eq!(public.get("down.test", "/").await.status, StatusCode::BAD_GATEWAY);

    let t = poll("requests done", || Some(tunnel(socket, "count.test")).filter(|t| t["active"] == 0));
    assert_eq!(
        (t["requests"].as_u64(), t["status_4xx"].as_u64(), t["status_5xx"].as_u64()),
        (Some(7), Some(2), Some(1))
    );
    assert_eq!(
        (t["bytes_in"].as_u64(), t["bytes_out"].as_u64()),
        (Some(500), Some(3000 + echo.body.len() as u64))
    );
    let (p50, p99) = (t["p50_ms"].as_f64().unwrap(), t["p99_ms"].as_f64().unwrap());
    assert!(0.0 < p50 && p50 <= p99 && p99 < 10_000.0, "p50 {p50} p99 {p99}");
    let idle = tunnel(socket, "idle.test");
    assert_eq!((idle["requests"].as_u64(), idle.get("p50_ms")), (Some(0), None));
    let down = poll("the 502", || Some(tunnel(socket, "down.test")).filter(|t| t["active"] == 0));
    assert_eq!((down["status_5xx"].as_u64(), down["errors"].as_u64()), (Some(1), Some(1)));

    // A slow request is in flight until its answer is done.
    let slow = {
        let public = public.clone();
        tokio::spawn(async move { public.get("count.test", "/slow").await })
    };
    poll("the slow request in flight", || Some(tunnel(socket, "count.test")).filter(|t| t["active"] == 1));
    let status: Value = serde_json::from_slice(&cluster.daemon.ctl(&["status", "--json"]).stdout).unwrap();
    let in_status = status["tunnels"].as_array().unwrap().iter().find(|t| t["host"] == "count.test").unwrap();
    assert_eq!((in_status["active"].as_u64(), in_status["requests"].as_u64()), (Some(1), Some(8)));
    let list = String::from_utf8(cluster.daemon.ctl(&["list"]).stdout).unwrap();
    assert!(list.lines().next().unwrap().contains("REQUESTS  4XX  5XX  ACTIVE"), "{list}");
    let row: Vec<&str> =
        list.lines().find(|l| l.starts_with("http://count.test:")).unwrap().split_whitespace().collect();
    assert_eq!(row[3..7], ["8", "2", "1", "1"], "{list}");
    up.release_slow();
    assert_eq!(slow.await.unwrap().text(), "slow done");
    poll("nothing in flight", || Some(tunnel(socket, "count.test")).filter(|t| t["active"] == 0));

    let text = String::from_utf8(cluster.daemon.ctl(&["status"]).stdout).unwrap();
    let header = text.lines().find(|l| l.starts_with("HOST")).unwrap_or_else(|| panic!("{text}"));
    let heads: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(heads, ["HOST", "REQUESTS", "4XX", "5XX", "UNREACHABLE", "IN", "OUT", "ACTIVE", "P50", "P99"]);
    let row = text.lines().find(|l| l.starts_with("count.test")).unwrap();
    assert!(row.contains("500 B") && row.contains("ms"), "{text}");
}

#[test]
fn a_bad_request_log_size_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ggrokd.toml");
    std::fs::write(&path, "server = \"ws://127.0.0.1:9\"\n\nrequest_log = 1000000\n").unwrap();
    let out = std::process::Command::new(ggrok_tests::bins::bin("ggrokd"))
        .args(["--check", "--config", path.to_str().unwrap()])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:3: request_log: must be between 0 and 100000", path.display())),
        "{err}"
    );
}

#[test]
fn logs_without_a_daemon_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody.sock");
    for args in [&["logs"][..], &["logs", "-f", "a.test"]] {
        let out = ggrok_tests::cluster::ctl(&socket, args);
        assert_eq!((out.status.code(), out.stdout.as_slice()), (Some(3), &b""[..]));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(socket.to_str().unwrap()) && err.contains("systemctl --user start ggrokd"),
            "{err}"
        );
    }
}
