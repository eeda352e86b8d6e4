//! Tunnels that survive: server restarts and freezes, a daemon started first, takeover of a
//! session that vanished without a FIN, in-flight requests on a dying session, local service
//! restarts, and graceful shutdown of both programs. Durations are printed, never asserted.

use ggrok_tests::TEST_TOKEN;
use ggrok_tests::client::Public;
use ggrok_tests::cluster::{ClientDef, Cluster, Daemon, Server};
use ggrok_tests::relay::Relay;
use ggrok_tests::upstream::{Upstream, closed_port};
use http::StatusCode;
use std::time::{Duration, Instant};

/// Bound for anything that must not hang (a 502 "quickly", a shutdown): generous, it only catches hangs.
const HANG: Duration = Duration::from_secs(30);

fn server_allowing(hosts: &[&str], extra: &str) -> Server {
    Server::start_extra(&[ClientDef { name: "test", token: TEST_TOKEN, hosts }], extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_and_restarted_on_the_same_port() {
    let up = Upstream::start().await;
    let mut cluster = Cluster::start(&[("a.test", &up.port()), ("b.test", &up.port())]);
    let public = Public::new(cluster.addr());
    assert_eq!(public.get("a.test", "/").await.status, StatusCode::OK);

    let killed = Instant::now();
    cluster.server.restart();
    cluster.daemon.process.wait_for(&["reconnected to the server"]);
    cluster.daemon.process.wait_for_nth(&["tunnel online", "a.test"], 2);
    cluster.daemon.process.wait_for_nth(&["tunnel online", "b.test"], 2);
    println!("tunnels back {:.2}s after the server was killed", killed.elapsed().as_secs_f64());
    let public = Public::new(cluster.addr());
    assert_eq!(public.get("a.test", "/").await.status, StatusCode::OK);
    assert_eq!(public.get("b.test", "/").await.status, StatusCode::OK);
    // One loss and one recovery in the log, not a line per attempt.
    assert_eq!(cluster.daemon.process.count(&["lost the connection to the server"]), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_server_is_detected_and_the_daemon_comes_back_after_it_thaws() {
    let up = Upstream::start().await;
    let server = server_allowing(&["a.test"], "");
    let daemon = Daemon::start(
        &server.ws_url(),
        TEST_TOKEN,
        &[("a.test", &up.port())],
        "keepalive_interval = 1\nreconnect_max = 1",
    );
    daemon.wait_online("a.test");

    let frozen = Instant::now();
    server.process.signal("STOP");
    let line = daemon.process.wait_for(&["lost the connection to the server"]);
    println!("frozen server detected after {:.2}s: {line}", frozen.elapsed().as_secs_f64());
    server.process.signal("CONT");
    daemon.process.wait_for(&["reconnected to the server"]);
    daemon.process.wait_for_nth(&["tunnel online"], 2);
    assert_eq!(Public::new(server.addr).get("a.test", "/").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_started_before_the_server() {
    let up = Upstream::start().await;
    let (held, port) = closed_port();
    let daemon = Daemon::start(
        &format!("ws://127.0.0.1:{port}"),
        TEST_TOKEN,
        &[("a.test", &up.port())],
        "reconnect_max = 1",
    );
    daemon.process.wait_for(&["cannot connect to the server"]);
    let status = daemon.ctl(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(status["attempt"].as_u64().unwrap() >= 1 && status["next_retry"].is_number(), "{status}");

    drop(held);
    let server = Server::start_with(&format!(
        "listen = \"127.0.0.1:{port}\"\n[[client]]\nname = \"t\"\ntoken = \"{TEST_TOKEN}\"\nhosts = [\"a.test\"]\n"
    ));
    daemon.process.wait_for(&["reconnected to the server"]);
    daemon.wait_online("a.test");
    assert_eq!(Public::new(server.addr).get("a.test", "/").await.status, StatusCode::OK);
}

/// A daemon (with `env`) whose connection froze and which reconnected while the server, with a
/// long keepalive, still holds the old session; with the relay and the upstream, which must live
/// as long as the test.
async fn reconnected_behind_a_frozen_connection(env: &[(&str, &str)]) -> (Server, Daemon, Relay, Upstream) {
    let up = Upstream::start().await;
    let server = server_allowing(&["a.test"], "keepalive_interval = 600");
    let relay = Relay::start(server.addr).await;
    let daemon = Daemon::start_env(
        &format!("ws://{}", relay.addr),
        TEST_TOKEN,
        &[("a.test", &up.port())],
        "keepalive_interval = 1\nreconnect_initial = 0.1\nreconnect_max = 0.5",
        env,
    );
    daemon.wait_online("a.test");
    relay.freeze_existing();
    daemon.process.wait_for(&["lost the connection to the server"]);
    daemon.wait_for_second_online("a.test");
    (server, daemon, relay, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_connection_replaces_its_stale_session() {
    let (server, _daemon, _relay, _up) = reconnected_behind_a_frozen_connection(&[]).await;
    // The same connection of the same daemon: the old session is closed, the host never offline.
    server.process.wait_for(&["the daemon dialled this connection again: closing the old one"]);
    server.process.wait_for(&[
        "tunnel client disconnected",
        "replaced by a new connection of the same daemon",
        "hosts_offline=0",
    ]);
    assert_eq!(server.process.count(&["host taken over"]), 0, "{}", server.process.log());
    assert_eq!(Public::new(server.addr).get("a.test", "/").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_version_one_client_takes_over_its_hosts_from_its_stale_session() {
    // A daemon of protocol version 1 sends no daemon id: its new session takes the hosts over.
    let (server, _daemon, _relay, _up) =
        reconnected_behind_a_frozen_connection(&[("GGROK_PROTOCOL_MAX", "1")]).await;
    let line = server.process.wait_for(&["taken over from an older session"]);
    assert!(line.contains("a.test"), "{line}");
    assert_eq!(server.process.count(&["tunnel client disconnected"]), 0, "the old session was not stale");
    assert_eq!(Public::new(server.addr).get("a.test", "/").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_detects_a_silent_daemon_and_answers_offline() {
    let up = Upstream::start().await;
    let server = server_allowing(&["a.test"], "keepalive_interval = 1");
    let relay = Relay::start(server.addr).await;
    // This daemon will not notice: its keepalive is long and it never reconnects by itself here.
    let daemon = Daemon::start(
        &format!("ws://{}", relay.addr),
        TEST_TOKEN,
        &[("a.test", &up.port())],
        "keepalive_interval = 600",
    );
    daemon.wait_online("a.test");
    relay.freeze_existing();
    let frozen = Instant::now();
    server.process.wait_for(&["tunnel client disconnected"]);
    println!("silent daemon detected after {:.2}s", frozen.elapsed().as_secs_f64());
    let reply = Public::new(server.addr).get("a.test", "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(reply.text().contains("offline, reconnecting"), "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_on_a_killed_session_get_502_and_others_are_undisturbed() {
    let (mine, theirs) = (Upstream::start().await, Upstream::start().await);
    let server = Server::start(&[
        ClientDef { name: "a", token: TEST_TOKEN, hosts: &["a.test"] },
        ClientDef { name: "b", token: "b-token-0123456789abcdef", hosts: &["b.test"] },
    ]);
    let mut doomed = Daemon::start(&server.ws_url(), TEST_TOKEN, &[("a.test", &mine.port())], "");
    let other =
        Daemon::start(&server.ws_url(), "b-token-0123456789abcdef", &[("b.test", &theirs.port())], "");
    doomed.wait_online("a.test");
    other.wait_online("b.test");
    let public = Public::new(server.addr);
    let spawn_slow = |host: &'static str| {
        let public = public.clone();
        tokio::spawn(async move { public.get(host, "/slow").await })
    };
    let (on_doomed, on_other) = (spawn_slow("a.test"), spawn_slow("b.test"));
    while mine.served.load(std::sync::atomic::Ordering::SeqCst) == 0
        || theirs.served.load(std::sync::atomic::Ordering::SeqCst) == 0
    {
        tokio::task::yield_now().await;
    }

    let killed = Instant::now();
    doomed.process.stop();
    let reply = tokio::time::timeout(HANG, on_doomed).await.expect("in-flight request hung").unwrap();
    println!("in-flight request answered {:.3}s after the daemon died", killed.elapsed().as_secs_f64());
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    let reply = public.get("a.test", "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(reply.text().contains("offline, reconnecting"), "{}", reply.text());

    // The other client's request in flight finishes normally.
    theirs.release_slow();
    let reply = tokio::time::timeout(HANG, on_other).await.expect("hung").unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "slow done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarting_local_service_affects_only_its_tunnel() {
    let (flaky, steady) = (Upstream::start().await, Upstream::start().await);
    let cluster = Cluster::start(&[("flaky.test", &flaky.port()), ("steady.test", &steady.port())]);
    let public = Public::new(cluster.addr());
    assert_eq!(public.get("flaky.test", "/").await.status, StatusCode::OK);

    flaky.stop();
    let addr = flaky.addr;
    drop(flaky);
    for _ in 0..3 {
        assert_eq!(public.get("flaky.test", "/").await.status, StatusCode::BAD_GATEWAY);
        assert_eq!(public.get("steady.test", "/").await.status, StatusCode::OK);
    }
    let _back = Upstream::start_on(addr).await;
    for _ in 0..3 {
        assert_eq!(public.get("flaky.test", "/").await.status, StatusCode::OK);
    }
    assert_eq!(cluster.daemon.process.count(&["lost the connection"]), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_shutdown_lets_a_long_request_finish() {
    let up = Upstream::start().await;
    let mut cluster = Cluster::start(&[("a.test", &up.port())]);
    let public = Public::new(cluster.addr());
    let in_flight = {
        let public = public.clone();
        tokio::spawn(async move { public.get("a.test", "/slow").await })
    };
    while up.served.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    cluster.server.process.signal("TERM");
    cluster.server.process.wait_for(&["waiting up to"]);
    up.release_slow();
    let reply = tokio::time::timeout(HANG, in_flight).await.expect("hung").unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "slow done"));
    let status = cluster.server.process.wait_exit();
    assert!(status.success(), "ggrok-server exited with {status}");
    // The daemon saw the server go and keeps trying on its own.
    cluster.daemon.process.wait_for(&["lost the connection to the server"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_shutdown_lets_a_long_request_finish() {
    let up = Upstream::start().await;
    let mut cluster = Cluster::start(&[("a.test", &up.port())]);
    let public = Public::new(cluster.addr());
    let in_flight = {
        let public = public.clone();
        tokio::spawn(async move { public.get("a.test", "/slow").await })
    };
    while up.served.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    cluster.daemon.process.signal("TERM");
    cluster.daemon.process.wait_for(&["draining requests in flight"]);
    // New requests meanwhile: the host is offline, not unknown.
    cluster.server.process.wait_for(&["tunnel client going away"]);
    let reply = public.get("a.test", "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(reply.text().contains("offline, reconnecting"), "{}", reply.text());
    up.release_slow();
    let reply = tokio::time::timeout(HANG, in_flight).await.expect("hung").unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "slow done"));
    let status = cluster.daemon.process.wait_exit();
    assert!(status.success(), "ggrokd exited with {status}");
    assert_eq!(cluster.daemon.process.count(&["grace period over"]), 0);
}
