//! Several connections per daemon: every connection registered and carrying traffic, one cut
//! under load while the others serve and then back by itself, the server's workers covered with
//! `connections = "auto"`, takeover by another ggrokd of the same client without flapping, old and
//! new protocol versions together, and the raw transport with its fallback to the WebSocket.

use futures_util::future::join_all;
use ggrok_tests::TEST_TOKEN;
use ggrok_tests::admin::Admin;
use ggrok_tests::client::{Public, full};
use ggrok_tests::cluster::{ClientDef, Daemon, Server};
use ggrok_tests::relay::{self, Relay};
use ggrok_tests::upstream::{Upstream, closed_port, pattern_sha256};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

fn server(hosts: &[&str], extra: &str) -> Server {
    Server::start_extra(&[ClientDef { name: "test", token: TEST_TOKEN, hosts }], extra)
}

fn connections(status: &Value) -> &Vec<Value> {
    status["connections"].as_array().expect("connections in status")
}

fn all_connected(status: &Value, n: usize) -> bool {
    let c = status["connections"].as_array().map_or(&[][..], Vec::as_slice);
    // Connected and greeted: the server's session id is known.
    c.len() == n && c.iter().all(|c| c["state"] == "connected" && c["session"].is_u64())
}

fn tunnel_state(status: &Value, host: &str) -> String {
    let tunnels = status["tunnels"].as_array().map_or(&[][..], Vec::as_slice);
    let t = tunnels.iter().find(|t| t["host"] == host);
    t.and_then(|t| t["state"].as_str()).unwrap_or("absent").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_is_registered_and_carries_traffic() {
    let up = Upstream::start().await;
    // The load opens one connection per request, all from 127.0.0.1.
    let server = server(&["a.test", "b.test"], "[limits]\nmax_pending_per_ip = 2000");
    let daemon = Daemon::start(
        &server.ws_url(),
        TEST_TOKEN,
        &[("a.test", &up.port()), ("b.test", &up.port())],
        "connections = 3",
    );
    let status = daemon.wait_status("3 connections up", |s| {
        all_connected(s, 3) && tunnel_state(s, "a.test") == "online" && tunnel_state(s, "b.test") == "online"
    });
    assert_eq!(tunnel_state(&status, "a.test"), "online");
    assert_eq!(status["connection"], "connected");
    // Three sessions on the server, one daemon.
    server.process.wait_for_nth(&["tunnel client connected", "sessions=3"], 1);

    let public = Public::new(server.addr);
    let load = (0..600).map(|i| {
        let public = public.clone();
        let host = if i % 2 == 0 { "a.test" } else { "b.test" };
        async move { public.get(host, &format!("/n/{i}")).await }
    });
    let replies: Vec<_> = join_all(load).await;
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(r.status, StatusCode::OK, "request {i}: {}", r.text());
        assert_eq!(r.json()["path"], format!("/n/{i}"), "request {i} got another's answer");
    }
    let status = daemon.status();
    let carried: Vec<u64> = connections(&status).iter().map(|c| c["requests"].as_u64().unwrap()).collect();
    println!("requests per connection: {carried:?}");
    assert_eq!(carried.iter().sum::<u64>(), 600, "{status:#}");
    assert!(carried.iter().all(|n| *n > 0), "every connection carries traffic: {carried:?}");
    let human = String::from_utf8(daemon.ctl(&["status"]).stdout).unwrap();
    assert!(human.contains("connections"), "{human}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_comes_back_while_the_others_keep_serving() {
    let up = Upstream::start().await;
    let server = server(&["a.test"], "");
    let relay = Relay::start(server.addr).await;
    let daemon = Daemon::start(
        &format!("ws://{}", relay.addr),
        TEST_TOKEN,
        &[("a.test", &up.port())],
        "connections = 3\nreconnect_initial = 0.1\nreconnect_max = 1",
    );
    daemon.wait_status("3 connections up", |s| all_connected(s, 3) && tunnel_state(s, "a.test") == "online");
    let first_sessions: Vec<u64> =
        connections(&daemon.status()).iter().map(|c| c["session"].as_u64().unwrap()).collect();

    // Load: 4 clients downloading 256 KiB each, checking every byte, until told to stop.
    let public = Public::new(server.addr);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let expected = pattern_sha256(256 * 1024);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (public, stop, ok, failed, expected) =
                (public.clone(), stop.clone(), ok.clone(), failed.clone(), expected.clone());
            tokio::spawn(async move {
                let mut corrupted = 0;
                for _ in 0..100_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    // A request in flight on the cut connection fails before its head (502),
                    // after it (the body ends short), or with the public connection closed
                    // before the head went out (the server writes it with the first bytes of the
                    // body, which never came); each counts as failed.
                    let req = Request::get("/bytes/262144").body(full("")).unwrap();
                    let Ok(r) = public.try_send("a.test", req).await else {
                        failed.fetch_add(1, Ordering::SeqCst);
                        continue;
                    };
                    if r.status() != StatusCode::OK {
                        failed.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    let Ok(body) = r.into_body().collect().await.map(|b| b.to_bytes()) else {
                        failed.fetch_add(1, Ordering::SeqCst);
                        continue;
                    };
                    if hex::encode(Sha256::digest(&body)) != expected {
                        corrupted += 1;
                    }
                    ok.fetch_add(1, Ordering::SeqCst);
                }
                corrupted
            })
        })
        .collect();
    let wait_ok = |n: u64| {
        let ok = ok.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while ok.load(Ordering::SeqCst) < n {
                assert!(tokio::time::Instant::now() < deadline, "the load stalled");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_ok(50).await;

    // Cut the first connection the relay carried: the others keep serving.
    relay.cut_first(1);
    let before_cut_failed = failed.load(Ordering::SeqCst);
    let served = ok.load(Ordering::SeqCst);
    wait_ok(served + 200).await;
    let status = daemon.wait_status("the cut connection back", |s| {
        all_connected(s, 3) && connections(s).iter().all(|c| c["session"].is_u64())
    });
    let sessions: Vec<u64> = connections(&status).iter().map(|c| c["session"].as_u64().unwrap()).collect();
    let replaced = sessions.iter().zip(&first_sessions).filter(|(a, b)| a != b).count();
    assert_eq!(replaced, 1, "one connection was dialled again: {first_sessions:?} → {sessions:?}");
    let served = ok.load(Ordering::SeqCst);
    wait_ok(served + 100).await;
    stop.store(true, Ordering::SeqCst);
    let mut corrupted = 0;
    for c in clients {
        corrupted += c.await.unwrap();
    }
    let failed = failed.load(Ordering::SeqCst);
    println!(
        "{} downloads, {failed} failed (all at the cut: requests in flight on it)",
        ok.load(Ordering::SeqCst)
    );
    assert_eq!(corrupted, 0, "no corrupted response");
    assert_eq!(before_cut_failed, 0, "nothing failed before the cut");
    // At most the requests in flight on the cut connection fail: each client has one in flight.
    assert!(failed <= 4, "{failed} failed");
    assert_eq!(daemon.process.count(&["lost the connection to the server"]), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_auto_follow_the_servers_workers_and_requests_stay_on_their_worker() {
    let up = Upstream::start().await;
    let mut toml = String::from("listen = \"127.0.0.1:0\"\nthreads = 2\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    toml.push_str(&format!("[[client]]\nname = \"test\"\ntoken = \"{TEST_TOKEN}\"\nhosts = [\"a.test\"]\n"));
    let server = Server::start_with(&toml);
    let daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[("a.test", &up.port())], "");
    // Two connections (auto: the server's two workers), one on each worker: a connection that
    // lands on a worker already held is dialled again.
    daemon.wait_status("one connection on each of the 2 workers", |s| {
        let mut workers: Vec<u64> = s["connections"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter_map(|c| c["worker"].as_u64())
            .collect();
        workers.sort();
        all_connected(s, 2) && workers == [0, 1] && tunnel_state(s, "a.test") == "online"
    });

    let public = Public::new(server.addr);
    for i in 0..200 {
        assert_eq!(public.get("a.test", &format!("/{i}")).await.status, StatusCode::OK);
    }
    let metrics = Admin::of(&server).metrics().await;
    let same = sample(&metrics, "ggrok_tunnel_streams_total{route=\"same_worker\"}");
    let other = sample(&metrics, "ggrok_tunnel_streams_total{route=\"other_worker\"}");
    println!("same worker {same}, other worker {other}");
    assert_eq!((same, other), (200.0, 0.0), "every request used a connection on its own worker");
    assert_eq!(sample(&metrics, "ggrok_tunnel_daemons"), 1.0);
    assert_eq!(sample(&metrics, "ggrok_tunnel_sessions"), 2.0);
}

fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} in\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_ggrokd_of_the_client_takes_over_and_the_two_do_not_flap() {
    let up = Upstream::start().await;
    let (_held, dead) = closed_port();
    let server = server(&["a.test"], "");
    let relay = Relay::start(server.addr).await;
    // A reaches the local service; B's local service is down, so B answers 502 itself.
    let a = Daemon::start(
        &format!("ws://{}", relay.addr),
        TEST_TOKEN,
        &[("a.test", &up.port())],
        "connections = 2\nreconnect_initial = 0.1\nreconnect_max = 1",
    );
    a.wait_status("A online", |s| all_connected(s, 2) && tunnel_state(s, "a.test") == "online");
    let public = Public::new(server.addr);
    assert_eq!(public.get("a.test", "/").await.status, StatusCode::OK);

    let b = Daemon::start(&server.ws_url(), TEST_TOKEN, &[("a.test", &dead)], "connections = 2");
    b.wait_status("B online", |s| all_connected(s, 2) && tunnel_state(s, "a.test") == "online");
    let status = a.wait_status("A displaced", |s| tunnel_state(s, "a.test") == "displaced");
    println!("A: {}", status["tunnels"][0]["reason"]);
    assert_eq!(public.get("a.test", "/").await.status, StatusCode::BAD_GATEWAY, "B serves it");

    // A's connections drop and come back: A must not take the tunnel back.
    relay.cut_existing();
    a.process.wait_for(&["lost the connection to the server"]);
    a.wait_status("A reconnected", |s| all_connected(s, 2));
    for _ in 0..20 {
        assert_eq!(public.get("a.test", "/").await.status, StatusCode::BAD_GATEWAY, "still B");
    }
    assert_eq!(tunnel_state(&a.status(), "a.test"), "displaced");
    // B serves it (its local service failing shows as "error").
    assert_eq!(tunnel_state(&b.status(), "a.test"), "error");

    // A reload of A takes it back, once; then B stays displaced.
    let out = a.ctl(&["reload"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    a.wait_status("A online again", |s| tunnel_state(s, "a.test") == "online");
    b.wait_status("B displaced", |s| tunnel_state(s, "a.test") == "displaced");
    assert_eq!(public.get("a.test", "/").await.status, StatusCode::OK);

    // `ggrokctl add` of the same tunnel again takes it back too (as the displaced line says),
    // without writing it to the file a second time.
    let out = b.ctl(&["add", "a.test", &dead]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("is online again") && said.contains("(in the config)"), "{said}");
    a.wait_status("A displaced again", |s| tunnel_state(s, "a.test") == "displaced");
    assert_eq!(public.get("a.test", "/").await.status, StatusCode::BAD_GATEWAY, "B serves it again");
    let file = std::fs::read_to_string(&b.config).unwrap();
    assert_eq!(file.matches("a.test").count(), 1, "{file}");
    // Another target for a tunnel that exists is still refused.
    let out = b.ctl(&["add", "a.test", &up.port()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already has a tunnel"), "{out:?}");

    // B stops: once the tunnel has stayed free a moment, the server tells A, which claims it
    // back on its own (without taking it from anyone).
    let mut b = b;
    b.process.stop();
    a.wait_status("A online once B is gone", |s| tunnel_state(s, "a.test") == "online");
    a.process.wait_for(&["the ggrokd that took the tunnel over is gone: claiming it back"]);
    assert_eq!(public.get("a.test", "/").await.status, StatusCode::OK, "A serves it again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_one_daemon_works_with_this_server() {
    let up = Upstream::start().await;
    let server = server(&["a.test"], "");
    let daemon = Daemon::start_env(
        &server.ws_url(),
        TEST_TOKEN,
        &[("a.test", &up.port())],
        "",
        &[("GGROK_PROTOCOL_MAX", "1")],
    );
    daemon.wait_online("a.test");
    server.process.wait_for(&["daemon identified", "version=1"]);
    assert_eq!(Public::new(server.addr).get("a.test", "/").await.status, StatusCode::OK);
    let status = daemon.status();
    assert_eq!(connections(&status)[0]["protocol"], 1, "{status:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_daemon_works_with_a_version_one_server() {
    let up = Upstream::start().await;
    let toml = format!(
        "listen = \"127.0.0.1:0\"\nthreads = 2\n[[client]]\nname = \"test\"\ntoken = \"{TEST_TOKEN}\"\nhosts = [\"a.test\"]\n"
    );
    let server = Server::start_with_env(&toml, &[("GGROK_PROTOCOL_MAX", "1")]);
    let daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[("a.test", &up.port())], "");
    daemon.wait_online("a.test");
    assert_eq!(Public::new(server.addr).get("a.test", "/").await.status, StatusCode::OK);
    let status = daemon.status();
    // A version-1 server announces no workers: one connection.
    assert_eq!(connections(&status).len(), 1, "{status:#}");
    assert_eq!(connections(&status)[0]["protocol"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_raw_transport_is_used_when_the_path_allows_and_websocket_otherwise() {
    let up = Upstream::start().await;
    let server = server(&["a.test", "b.test", "c.test"], "");
    let public = Public::new(server.addr);

    let direct = Daemon::start(&server.ws_url(), TEST_TOKEN, &[("a.test", &up.port())], "");
    let status =
        direct.wait_status("online", |s| all_connected(s, 1) && tunnel_state(s, "a.test") == "online");
    assert_eq!(connections(&status)[0]["transport"], "raw", "{status:#}");
    let r = public.get("a.test", "/bytes/1048576").await;
    assert_eq!((r.status, r.body.len()), (StatusCode::OK, 1 << 20));

    let proxy = relay::websocket_only(server.addr).await;
    let behind = Daemon::start(&format!("ws://{proxy}"), TEST_TOKEN, &[("b.test", &up.port())], "");
    let status =
        behind.wait_status("online", |s| all_connected(s, 1) && tunnel_state(s, "b.test") == "online");
    assert_eq!(connections(&status)[0]["transport"], "websocket", "{status:#}");
    behind.process.wait_for(&["using WebSocket"]);
    let r = public.get("b.test", "/bytes/1048576").await;
    assert_eq!((r.status, r.body.len()), (StatusCode::OK, 1 << 20));

    // Forced WebSocket: no raw attempt.
    let forced =
        Daemon::start(&server.ws_url(), TEST_TOKEN, &[("c.test", &up.port())], "transport = \"websocket\"");
    let status = forced.wait_status("connected", |s| all_connected(s, 1));
    assert_eq!(connections(&status)[0]["transport"], "websocket");
}
