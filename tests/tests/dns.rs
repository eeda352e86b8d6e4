//! `replicas = "all"` over DNS: ggrokd connects to every address the server's name resolves to,
//! and follows the name as addresses are added and removed (`resolve_interval`).
//!
//! The name is resolved by the system's resolver, as in production, from a hosts file: ggrokd
//! runs in a mount namespace of its own (`unshare -m`, root) where the test's file is bind-mounted
//! over /etc/hosts, and the test rewrites that file in place to change what the name resolves to.
//! Three replicas listen on the same port of 127.0.0.1, 127.0.0.2 and 127.0.0.3.

use ggrok_tests::TEST_TOKEN;
use ggrok_tests::bins::bin;
use ggrok_tests::client::Public;
use ggrok_tests::cluster::{Daemon, Server, ctl, daemon_toml};
use ggrok_tests::process::Process;
use ggrok_tests::upstream::Upstream;
use http::StatusCode;
use serde_json::Value;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;

const NAME: &str = "replicas.ggrok.test";

/// A port free on 127.0.0.1, .2 and .3 (and .4, which stays empty) at the time of asking.
fn port_free_on_four() -> u16 {
    for _ in 0..50 {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if (2..=4).all(|n| TcpListener::bind(format!("127.0.0.{n}:{port}")).is_ok()) {
            return port;
        }
    }
    panic!("no port free on 127.0.0.1-4 after 50 tries");
}

fn replica(n: u8, port: u16) -> Server {
    Server::start_with(&format!(
        "listen = \"127.0.0.{n}:{port}\"\n[cluster]\nreplica = \"r{n}\"\n\n\
         [[client]]\nname = \"test\"\ntoken = {TEST_TOKEN:?}\nhosts = [\"a.test\"]\n"
    ))
}

/// Makes `NAME` resolve to 127.0.0.N for each N of `hosts`, rewriting the file in place (the bind
/// mount follows the inode).
fn resolve_to(file: &Path, hosts: &[u8]) {
    let lines: String = hosts.iter().map(|n| format!("127.0.0.{n} {NAME}\n")).collect();
    std::fs::write(file, format!("127.0.0.1 localhost\n{lines}")).unwrap();
}

/// ggrokd in its own mount namespace, with `hosts` as its /etc/hosts.
fn daemon(hosts: &Path, port: u16, local: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ggrokd.toml");
    let extra = "replicas = \"all\"\nconnections = 1\nresolve_interval = 1\nreconnect_initial = 0.1\nreconnect_max = 0.5";
    std::fs::write(
        &config,
        daemon_toml(&format!("ws://{NAME}:{port}"), TEST_TOKEN, &[("a.test", local)], extra),
    )
    .unwrap();
    let host_conf = dir.path().join("host.conf");
    std::fs::write(&host_conf, "multi on\n").unwrap();
    let socket = dir.path().join("run/ggrokd.sock");
    let state = dir.path().join("state");
    let script = "mount --bind \"$1\" /etc/hosts && mount --bind \"$2\" /etc/host.conf && exec \"$3\" --config \"$4\" --socket \"$5\"";
    let ggrokd = bin("ggrokd");
    let args = [
        "-m",
        "sh",
        "-c",
        script,
        "sh",
        hosts.to_str().unwrap(),
        host_conf.to_str().unwrap(),
        ggrokd.to_str().unwrap(),
        config.to_str().unwrap(),
        socket.to_str().unwrap(),
    ];
    let unshare = ["/usr/bin/unshare", "/bin/unshare"].into_iter().find(|p| Path::new(p).exists());
    let unshare = unshare.expect("unshare (util-linux) is needed");
    let process = Process::spawn(Path::new(unshare), &args, &[("XDG_STATE_HOME", state.to_str().unwrap())]);
    Daemon { dir, config, socket, process }
}

fn server_status(status: &Value) -> &Value {
    &status["servers"][0]
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map_or_else(Vec::new, |a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
}

fn addresses(port: u16, hosts: &[u8]) -> Vec<String> {
    hosts.iter().map(|n| format!("127.0.0.{n}:{port}")).collect()
}

/// The connected connections' addresses, sorted.
fn held(status: &Value) -> Vec<String> {
    let connections = status["connections"].as_array().map_or(&[][..], Vec::as_slice);
    let mut held: Vec<String> = connections
        .iter()
        .filter(|c| c["state"] == "connected")
        .filter_map(|c| c["address"].as_str().map(str::to_owned))
        .collect();
    held.sort();
    held
}

/// Whether the daemon holds exactly the replicas r-N and addresses 127.0.0.N of `hosts`.
fn holds_exactly(status: &Value, port: u16, hosts: &[u8]) -> bool {
    let server = server_status(status);
    let replicas: Vec<String> = hosts.iter().map(|n| format!("r{n}")).collect();
    strings(&server["addresses"]) == addresses(port, hosts)
        && strings(&server["replicas"]) == replicas
        && held(status) == addresses(port, hosts)
        && server["ready"] == true
}

async fn answers_ok(port: u16, n: u8) {
    let public = Public::new(SocketAddr::from(([127, 0, 0, n], port)));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let reply = public.get("a.test", "/").await;
        if reply.status == StatusCode::OK {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "127.0.0.{n}: {} {}", reply.status, reply.text());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_address_of_the_name_is_held_and_followed_as_it_changes() {
    let up = Upstream::start().await;
    let port = port_free_on_four();
    let hosts_dir = tempfile::tempdir().unwrap();
    let hosts = hosts_dir.path().join("hosts");
    resolve_to(&hosts, &[1, 2]);
    let replicas: Vec<Server> = (1..=3).map(|n| replica(n, port)).collect();
    let daemon = daemon(&hosts, port, &up.port());

    // Two addresses: one connection to each, each replica serving from its own.
    let status = daemon.wait_status("127.0.0.1 and .2 held", |s| holds_exactly(s, port, &[1, 2]));
    assert_eq!(status["tunnels_online"], 1, "{status:#}");
    for n in [1, 2] {
        answers_ok(port, n).await;
    }
    let ready = daemon.ctl(&["ready"]);
    assert!(ready.status.success(), "{}", String::from_utf8_lossy(&ready.stdout));

    // An address added is dialled within the interval.
    resolve_to(&hosts, &[1, 2, 3]);
    daemon.wait_status("127.0.0.3 held too", |s| holds_exactly(s, port, &[1, 2, 3]));
    answers_ok(port, 3).await;

    // An address with nothing behind it: not ready, and `ready` says which.
    resolve_to(&hosts, &[1, 2, 3, 4]);
    daemon.wait_status("127.0.0.4 known", |s| strings(&server_status(s)["addresses"]).len() == 4);
    let out = daemon.ctl(&["ready"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("addresses not held: 127.0.0.4:{port}")), "{text}");
    let status = daemon.status();
    assert_eq!(server_status(&status)["ready"], false, "{status:#}");
    assert!(held(&status).len() >= 3, "the others stay held: {status:#}");

    // Addresses gone: their connections move away, and the replica only they held is forgotten.
    resolve_to(&hosts, &[2, 3]);
    let status = daemon.wait_status("only .2 and .3 held", |s| {
        holds_exactly(s, port, &[2, 3]) && strings(&server_status(s)["known_replicas"]) == ["r2", "r3"]
    });
    assert_eq!(status["tunnels_online"], 1, "{status:#}");
    for n in [2, 3] {
        answers_ok(port, n).await;
    }
    let ready = daemon.ctl(&["ready", "--wait", "10"]);
    assert!(ready.status.success(), "{}", String::from_utf8_lossy(&ready.stdout));
    let text = String::from_utf8(daemon.ctl(&["status"]).stdout).unwrap();
    assert!(text.contains("replicas r2, r3 (of r2, r3), addresses 2/2 held"), "{text}");
    drop(replicas);
}

#[test]
fn ready_waits_and_fails_without_a_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let out = ctl(&dir.path().join("none.sock"), &["ready", "--wait", "0.2"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let out = ctl(&dir.path().join("none.sock"), &["ready", "--wait", "soon"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}
