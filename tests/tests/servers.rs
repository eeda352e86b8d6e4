//! Several servers per daemon (`server = [...]`) and server replicas that name themselves: each
//! server is held on its own, one down never stops the others, and `ggrokctl status` says which
//! server and replica every connection is on.

use ggrok_tests::TEST_TOKEN;
use ggrok_tests::balancer::Balancer;
use ggrok_tests::client::Public;
use ggrok_tests::cluster::{ClientDef, Daemon, Server};
use ggrok_tests::haproxy::HaProxy;
use ggrok_tests::upstream::{Upstream, closed_port};
use http::StatusCode;
use serde_json::Value;

const HOSTS: &[&str] = &["a.test"];

fn server(extra: &str) -> Server {
    Server::start_extra(&[ClientDef { name: "test", token: TEST_TOKEN, hosts: HOSTS }], extra)
}

/// The entry of `status["servers"]` for the server at `addr`.
fn server_entry<'a>(status: &'a Value, addr: &str) -> &'a Value {
    let servers = status["servers"].as_array().map_or(&[][..], Vec::as_slice);
    servers.iter().find(|s| s["server"].as_str().is_some_and(|u| u.contains(addr))).unwrap_or(&Value::Null)
}

fn online(status: &Value) -> bool {
    status["tunnels_online"] == 1
}

/// GETs `/` through `public` until it answers 200 (a claim may still be on its way), for at most
/// 10 s; returns the last status.
async fn get_ok(public: &Public) -> StatusCode {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let reply = public.get("a.test", "/").await;
        if reply.status == StatusCode::OK || std::time::Instant::now() > deadline {
            return reply.status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_down_at_start_is_retried_while_the_other_serves_then_takes_over() {
    let up = Upstream::start().await;
    let (held, port_a) = closed_port();
    let addr_a = format!("127.0.0.1:{port_a}");
    let b = server("[cluster]\nreplica = \"b\"");
    let addr_b = b.addr.to_string();
    let daemon = Daemon::start(
        &format!("[\"ws://{addr_a}\", \"ws://{addr_b}\"]"),
        TEST_TOKEN,
        &[("a.test", &up.port())],
        "reconnect_initial = 0.1\nreconnect_max = 0.5",
    );
    let status = daemon.wait_status("B serving, A retrying", |s| {
        let (a, b) = (server_entry(s, &addr_a), server_entry(s, &addr_b));
        let a_retrying = s["connections"].as_array().is_some_and(|c| {
            c.iter().any(|c| {
                c["server"].as_str().unwrap_or("").contains(&addr_a) && c["attempt"].as_u64() > Some(0)
            })
        });
        online(s) && b["state"] == "connected" && a["state"] != "connected" && a_retrying
    });
    assert_eq!(server_entry(&status, &addr_b)["replicas"], serde_json::json!(["b"]), "{status:#}");
    assert_eq!(get_ok(&Public::new(b.addr)).await, StatusCode::OK);
    let text = String::from_utf8(daemon.ctl(&["status"]).stdout).unwrap();
    // Between attempts the connection is disconnected, during one connecting: either says retrying.
    let line_a = text.lines().find(|l| l.starts_with(&format!("  {addr_a}  "))).unwrap_or_default();
    assert!(line_a.contains(" 0/1 up, retrying (attempt "), "{text}");
    assert!(text.contains(&format!("{addr_b}  connected, 1/1 up, replicas b (of b)")), "{text}");

    // B goes, A comes: the tunnel comes back through A on its own.
    drop(b);
    drop(held);
    let a = Server::start_with(&format!(
        "listen = \"{addr_a}\"\n[cluster]\nreplica = \"a\"\n\n[[client]]\nname = \"test\"\ntoken = {TEST_TOKEN:?}\nhosts = [\"a.test\"]\n"
    ));
    let status = daemon.wait_status("A serving", |s| {
        online(s)
            && server_entry(s, &addr_a)["state"] == "connected"
            && server_entry(s, &addr_b)["state"] != "connected"
    });
    assert_eq!(server_entry(&status, &addr_a)["replicas"], serde_json::json!(["a"]), "{status:#}");
    let public = Public::new(a.addr);
    assert_eq!(get_ok(&public).await, StatusCode::OK);
    for i in 0..20 {
        let reply = public.get("a.test", &format!("/n/{i}")).await;
        assert_eq!(reply.status, StatusCode::OK, "request {i}: {}", reply.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_replica_of_each_server() {
    let up = Upstream::start().await;
    let (a, b) = (server("[cluster]\nreplica = \"eu-1\""), server("[cluster]\nreplica = \"eu-2\""));
    let (addr_a, addr_b) = (a.addr.to_string(), b.addr.to_string());
    let daemon = Daemon::start(
        &format!("[\"{}\", \"{}\"]", a.ws_url(), b.ws_url()),
        TEST_TOKEN,
        &[("a.test", &up.port())],
        "",
    );
    let status = daemon.wait_status("both replicas held", |s| {
        online(s)
            && server_entry(s, &addr_a)["replicas"] == serde_json::json!(["eu-1"])
            && server_entry(s, &addr_b)["replicas"] == serde_json::json!(["eu-2"])
    });
    let replicas: Vec<&str> =
        status["connections"].as_array().unwrap().iter().filter_map(|c| c["replica"].as_str()).collect();
    assert_eq!(replicas, ["eu-1", "eu-2"], "{status:#}");
    for server in [&a, &b] {
        assert_eq!(get_ok(&Public::new(server.addr)).await, StatusCode::OK);
    }
    let text = String::from_utf8(daemon.ctl(&["status"]).stdout).unwrap();
    assert!(text.contains("replicas eu-1 (of eu-1)") && text.contains("replicas eu-2 (of eu-2)"), "{text}");
    assert!(text.contains(" eu-1 ") && text.contains(" eu-2 "), "the connections table: {text}");
}

/// Three replicas named r1-r3 behind a balancer made by `balance` from their addresses: ggrokd,
/// with `replicas = "all"`, finds and holds each, and requests through the balancer, each on a
/// connection of its own, reach every replica, which serves them from its own connection.
async fn every_replica_is_found_and_held<B>(
    balance: impl FnOnce(Vec<std::net::SocketAddr>) -> B,
    addr: impl Fn(&B) -> std::net::SocketAddr,
) {
    let up = Upstream::start().await;
    let replicas: Vec<Server> =
        ["r1", "r2", "r3"].iter().map(|r| server(&format!("[cluster]\nreplica = \"{r}\""))).collect();
    let balancer = balance(replicas.iter().map(|r| r.addr).collect());
    let balanced = addr(&balancer);
    let daemon = Daemon::start(
        &format!("ws://{balanced}"),
        TEST_TOKEN,
        &[("a.test", &up.port())],
        "replicas = \"all\"",
    );
    let started = std::time::Instant::now();
    let key = balanced.to_string();
    let status = daemon.wait_status("every replica held, exploring over", |s| {
        let entry = server_entry(s, &key);
        online(s)
            && entry["replicas"] == serde_json::json!(["r1", "r2", "r3"])
            && entry["connections"] == 3
            && entry["up"] == 3
    });
    println!("held every replica after {:.2}s", started.elapsed().as_secs_f64());
    assert_eq!(server_entry(&status, &key)["known_replicas"], serde_json::json!(["r1", "r2", "r3"]));
    for replica in &replicas {
        assert_eq!(get_ok(&Public::new(replica.addr)).await, StatusCode::OK);
    }
    let before: Vec<u64> = daemon.status()["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["requests"].as_u64().unwrap())
        .collect();
    for i in 0..9 {
        // A client of its own: a new connection, which the balancer sends to the next replica.
        let reply = Public::new(balanced).get("a.test", &format!("/n/{i}")).await;
        assert_eq!(reply.status, StatusCode::OK, "request {i} through the balancer: {}", reply.text());
    }
    let after = daemon.status();
    let carried: Vec<u64> = after["connections"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&before)
        .map(|(c, b)| c["requests"].as_u64().unwrap() - b)
        .collect();
    assert!(carried.iter().all(|n| *n > 0), "every replica's connection carried some: {carried:?} {after:#}");
    assert_eq!(carried.iter().sum::<u64>(), 9);
    let text = String::from_utf8(daemon.ctl(&["status"]).stdout).unwrap();
    assert!(text.contains("replicas r1, r2, r3 (of r1, r2, r3)"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_one_balanced_address_every_replica_is_found_and_held() {
    let handle = tokio::runtime::Handle::current();
    let start = |targets| tokio::task::block_in_place(|| handle.block_on(Balancer::start(targets)));
    every_replica_is_found_and_held(start, |b| b.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_every_replica_is_found_and_held() {
    every_replica_is_found_and_held(|targets: Vec<_>| HaProxy::start(&targets), |h| h.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_and_removes_servers_leaving_the_others_alone() {
    let up = Upstream::start().await;
    let (a, b) = (server("[cluster]\nreplica = \"a\""), server("[cluster]\nreplica = \"b\""));
    let (addr_a, addr_b) = (a.addr.to_string(), b.addr.to_string());
    let daemon = Daemon::start(&a.ws_url(), TEST_TOKEN, &[("a.test", &up.port())], "");
    let first = daemon.wait_status("A held", |s| online(s) && server_entry(s, &addr_a)["up"] == 1);
    let session_a = first["connections"][0]["session"].clone();

    let text = std::fs::read_to_string(&daemon.config).unwrap();
    let listed = format!("server = [\"{}\", \"{}\"]", a.ws_url(), b.ws_url());
    std::fs::write(&daemon.config, text.replacen(&format!("server = \"{}\"", a.ws_url()), &listed, 1))
        .unwrap();
    assert!(daemon.ctl(&["reload"]).status.success());
    let both = daemon.wait_status("A and B held", |s| {
        server_entry(s, &addr_a)["up"] == 1 && server_entry(s, &addr_b)["up"] == 1
    });
    let on_a = both["connections"].as_array().unwrap().iter().find(|c| c["replica"] == "a").unwrap();
    assert_eq!(on_a["session"], session_a, "A's connection was left alone: {both:#}");
    assert_eq!(get_ok(&Public::new(b.addr)).await, StatusCode::OK);

    let text = std::fs::read_to_string(&daemon.config).unwrap();
    std::fs::write(&daemon.config, text.replacen(&listed, &format!("server = [\"{}\"]", b.ws_url()), 1))
        .unwrap();
    daemon.process.signal("HUP");
    let status = daemon.wait_status("B alone", |s| {
        s["servers"].as_array().is_some_and(|v| v.len() == 1)
            && s["connections"].as_array().is_some_and(|c| c.len() == 1)
    });
    assert_eq!(status["connections"][0]["replica"], "b", "{status:#}");
    assert_eq!(get_ok(&Public::new(b.addr)).await, StatusCode::OK);
    // A no longer has the daemon: its host is offline there (502 while it waits for the daemon).
    let reply = Public::new(a.addr).get("a.test", "/").await;
    assert_ne!(reply.status, StatusCode::OK, "{}", reply.text());
}

/// The `ggrok_daemon_sessions` samples of `text` for client `test`: (daemon, replica, value).
fn daemon_sessions(text: &str) -> Vec<(String, String, f64)> {
    let label = |series: &str, key: &str| {
        let start = series.find(&format!("{key}=\""))? + key.len() + 2;
        Some(series[start..].split('"').next()?.to_owned())
    };
    text.lines()
        .filter(|l| l.starts_with("ggrok_daemon_sessions{client=\"test\""))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((label(series, "daemon")?, label(series, "replica")?, value.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_replica_counts_the_sessions_of_each_daemon() {
    use ggrok_tests::admin::{ADMIN_CONFIG, Admin};
    let up = Upstream::start().await;
    let a = server(&format!("{ADMIN_CONFIG}[cluster]\nreplica = \"eu-1\""));
    let b = server(&format!("{ADMIN_CONFIG}[cluster]\nreplica = \"eu-2\""));
    let mut daemon = Daemon::start(
        &format!("[\"{}\", \"{}\"]", a.ws_url(), b.ws_url()),
        TEST_TOKEN,
        &[("a.test", &up.port())],
        "connections = 2",
    );
    daemon.wait_status("2 connections to each", |s| {
        online(s) && s["connections"].as_array().unwrap().len() == 4
    });
    for (server, replica) in [(&a, "eu-1"), (&b, "eu-2")] {
        let admin = Admin::of(server);
        let text = admin.metrics_when(|t| daemon_sessions(t).iter().any(|s| s.2 == 2.0)).await;
        let samples = daemon_sessions(&text);
        assert_eq!(samples.len(), 1, "one daemon: {text}");
        assert_eq!((samples[0].1.as_str(), samples[0].2), (replica, 2.0), "{text}");
        let info = text.lines().find(|l| l.starts_with("ggrok_server_info{")).unwrap_or_default();
        assert!(info.contains(&format!("replica=\"{replica}\"")) && info.ends_with(" 1"), "{text}");
    }
    daemon.process.stop();
    let text = Admin::of(&a).metrics_when(|t| daemon_sessions(t).is_empty()).await;
    assert!(daemon_sessions(&text).is_empty(), "a daemon gone leaves no series: {text}");
}
