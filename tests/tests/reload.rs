//! Reloading server.toml on SIGHUP while tunnels serve: clients added and removed, a token
//! changed, hosts and ports narrowed, an invalid file refused, settings that need a restart named,
//! systemd told, and certificates swapped for new connections only.

#[path = "reload/certificates.rs"]
mod certificates;

use ggrok_tests::admin::{ADMIN_CONFIG, Admin};
use ggrok_tests::client::Public;
use ggrok_tests::cluster::{Daemon, Server};
use ggrok_tests::notify::NotifySocket;
use ggrok_tests::tcp::{echo, free_range, tcp_tunnel};
use ggrok_tests::upstream::Upstream;
use http::StatusCode;
use std::path::PathBuf;

const A: &str = "token-of-client-a-0123456789";
const B: &str = "token-of-client-b-0123456789";
const C: &str = "token-of-client-c-0123456789";

/// A server.toml: `extra` top-level lines, then one `[[client]]` per (name, token, hosts).
fn config(extra: &str, clients: &[(&str, &str, &str)]) -> String {
    let mut text = format!("listen = \"127.0.0.1:0\"\n{extra}\n");
    for (name, token, hosts) in clients {
        text += &format!("\n[[client]]\nname = {name:?}\ntoken = {token:?}\nhosts = [{hosts}]\n");
    }
    text
}

fn path(server: &Server) -> PathBuf {
    server.dir.path().join("server.toml")
}

/// Writes `text` as the server's config, sends SIGHUP and returns the log line that says how it
/// went (the `n`th reload line of the server's life).
fn reload(server: &Server, text: &str, n: usize) -> String {
    std::fs::write(path(server), text).unwrap();
    server.process.signal("HUP");
    server.process.wait_for_nth(&["config ", "reloaded"], n)
}

/// Waits until the local service has taken `n` requests.
async fn wait_served(up: &Upstream, n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while up.served.load(std::sync::atomic::Ordering::Relaxed) < n {
        assert!(std::time::Instant::now() < deadline, "the local service never got {n} requests");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The session ids of a daemon's connections.
fn sessions(daemon: &Daemon) -> Vec<u64> {
    let status = daemon.status();
    status["connections"].as_array().unwrap().iter().filter_map(|c| c["session"].as_u64()).collect()
}

fn tunnel_state(daemon: &Daemon, host: &str) -> String {
    let status = daemon.status();
    let tunnels = status["tunnels"].as_array().cloned().unwrap_or_default();
    let t = tunnels.iter().find(|t| t["host"] == host);
    t.map_or("absent".into(), |t| t["state"].as_str().unwrap_or("").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_added_and_another_removed_while_a_long_request_on_a_third_completes() {
    let up = Upstream::start().await;
    let notify = NotifySocket::bind();
    let text = config("", &[("b", B, "\"*.b.test\""), ("c", C, "\"*.c.test\"")]);
    let server = Server::start_with_env(&text, &[("NOTIFY_SOCKET", notify.env())]);
    let mut notify = notify;
    notify.wait_line("READY=1");
    let b = Daemon::start(&server.ws_url(), B, &[("api.b.test", &up.port())], "");
    let c = Daemon::start(&server.ws_url(), C, &[("api.c.test", &up.port())], "");
    b.wait_online("api.b.test");
    c.wait_online("api.c.test");
    let c_sessions = sessions(&c);
    let public = Public::new(server.addr);
    // A request on c's tunnel that answers only when the test says so: in flight across the reload.
    let slow = {
        let public = Public::new(server.addr);
        tokio::spawn(async move { public.get("api.c.test", "/slow").await })
    };
    wait_served(&up, 1).await;

    let text = config("", &[("a", A, "\"*.a.test\""), ("c", C, "\"*.c.test\"")]);
    let line = reload(&server, &text, 1);
    assert!(
        line.contains("config reloaded") && line.contains("added=a") && line.contains("removed=b"),
        "{line}"
    );
    notify.wait_line("RELOADING=1");
    notify.wait_line("READY=1");
    // b: its session closed with the reason, its host gone at once (not "offline"), and its
    // daemon refused when it dials again.
    let closed = server.process.wait_for(&["closing the session"]);
    assert!(closed.contains("was removed from the server's config"), "{closed}");
    assert_eq!(public.get("api.b.test", "/").await.status, StatusCode::NOT_FOUND);
    b.process.wait_for(&["401"]);
    // a: a new teammate connects with the new token.
    let a = Daemon::start(&server.ws_url(), A, &[("api.a.test", &up.port())], "");
    a.wait_online("api.a.test");
    assert_eq!(public.get("api.a.test", "/").await.status, StatusCode::OK);
    // c: untouched, the same sessions, and its long request completes.
    assert_eq!(public.get("api.c.test", "/").await.status, StatusCode::OK);
    up.release_slow();
    let reply = slow.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(sessions(&c), c_sessions, "c's connections were not replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_keeps_the_old_config_and_restart_settings_are_named() {
    let up = Upstream::start().await;
    let admin = ADMIN_CONFIG;
    let text = config("", &[("c", C, "\"*.c.test\"")]);
    let server = Server::start_with(&format!("{text}\n{admin}"));
    let admin_listener = Admin::of(&server);
    let c = Daemon::start(&server.ws_url(), C, &[("api.c.test", &up.port())], "");
    c.wait_online("api.c.test");
    let public = Public::new(server.addr);

    // Line 4 holds the bad value; the client is gone in the new file, but nothing applies.
    let invalid = format!("listen = \"127.0.0.1:0\"\n\n[limits]\nmax_header_bytes = \"lots\"\n{admin}");
    let line = reload(&server, &invalid, 1);
    assert!(line.contains("config not reloaded"), "{line}");
    assert!(line.contains("server.toml:4") && line.contains("max_header_bytes"), "{line}");
    assert_eq!(public.get("api.c.test", "/").await.status, StatusCode::OK);
    let again = Daemon::start(&server.ws_url(), C, &[("again.c.test", &up.port())], "");
    again.wait_online("again.c.test");
    let metrics = admin_listener.metrics().await;
    assert!(metrics.contains("ggrok_config_reloads_total{result=\"failed\"} 1"), "{metrics}");

    // A valid file with settings bound at start: applied, those named, the old values kept.
    let text = config("threads = 3\n[limits]\nbuffer_memory = \"64 MiB\"\n", &[("c", C, "\"*.c.test\"")]);
    std::fs::write(path(&server), format!("{text}\n{admin}")).unwrap();
    server.process.signal("HUP");
    let warned = server.process.wait_for(&["take effect only after a restart"]);
    assert!(warned.contains("threads") && warned.contains("limits.buffer_memory"), "{warned}");
    assert!(!warned.contains("listen,") && !warned.contains("[admin]"), "{warned}");
    assert_eq!(public.get("api.c.test", "/").await.status, StatusCode::OK);
    let metrics = admin_listener.metrics().await;
    assert!(metrics.contains("ggrok_config_reloads_total{result=\"ok\"} 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowed_hosts_and_ports_are_released_and_a_changed_token_closes_the_session() {
    let up = Upstream::start().await;
    let local = echo().await;
    let ports = free_range(1);
    let port = *ports.start();
    let client = |hosts: &str, ports: &str| {
        config("", &[("c", C, hosts)])
            .replace(&format!("token = {C:?}\n"), &format!("token = {C:?}\nports = [{ports}]\n"))
    };
    let server = Server::start_with(&client("\"*.c.test\"", &format!("\"{port}\"")));
    let tunnels = [("x.c.test", up.port()), ("y.c.test", up.port())];
    let tunnels: Vec<(&str, &str)> = tunnels.iter().map(|(h, p)| (*h, p.as_str())).collect();
    let c = Daemon::start(&server.ws_url(), C, &tunnels, &tcp_tunnel(port, local));
    c.wait_status("three tunnels online", |s| {
        s["tunnels"].as_array().is_some_and(|t| t.len() == 3 && t.iter().all(|t| t["state"] == "online"))
    });
    let public = Public::new(server.addr);

    // Only x.c.test and no port any more: y and the port are released, the daemon told why.
    reload(&server, &client("\"x.c.test\"", ""), 1);
    let status = c.wait_status("y and the port displaced", |s| {
        let t = s["tunnels"].as_array().cloned().unwrap_or_default();
        t.iter().filter(|t| t["state"].as_str().unwrap_or("").starts_with("displaced")).count() == 2
    });
    let text = status.to_string();
    assert!(text.contains("no longer lets client") && text.contains("claim y.c.test"), "{text}");
    assert_eq!(public.get("y.c.test", "/").await.status, StatusCode::NOT_FOUND);
    assert_eq!(public.get("x.c.test", "/").await.status, StatusCode::OK);
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err(), "port {port} closed");
    assert_eq!(tunnel_state(&c, "x.c.test"), "online");

    // Widened again: the same session may claim them now (`ggrokctl reload` claims again).
    reload(&server, &client("\"*.c.test\"", &format!("\"{port}\"")), 2);
    assert!(c.ctl(&["reload"]).status.success());
    c.wait_status("all online again", |s| {
        s["tunnels"].as_array().is_some_and(|t| t.iter().all(|t| t["state"] == "online"))
    });
    assert_eq!(public.get("y.c.test", "/").await.status, StatusCode::OK);

    // A new token: the session that used the old one is closed, and the old token is refused.
    let sessions_before = sessions(&c);
    reload(&server, &client("\"*.c.test\"", "").replace(C, "a-brand-new-token-0123456789"), 3);
    let closed = server.process.wait_for(&["closing the session"]);
    assert!(closed.contains("token changed"), "{closed}");
    c.process.wait_for(&["401"]);
    assert!(sessions_before.iter().all(|s| !sessions(&c).contains(s)));
}
