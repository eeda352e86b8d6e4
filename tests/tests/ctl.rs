//! ggrokctl against a real ggrokd and server: live changes, saved changes, list, status, reload,
//! and a control socket that survives bad input.

use ggrok_tests::TEST_TOKEN;
use ggrok_tests::client::Public;
use ggrok_tests::cluster::{Cluster, Daemon, ctl};
use ggrok_tests::upstream::Upstream;
use http::StatusCode;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Output;

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "ggrokctl failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &Output, code: i32) -> String {
    assert_eq!(out.status.code(), Some(code), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).expect("one JSON document")
}

fn config_text(daemon: &Daemon) -> String {
    std::fs::read_to_string(&daemon.config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_goes_live_and_is_saved_remove_undoes_both() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("first.test", &up.port())]);
    let public = Public::new(cluster.addr());
    let daemon = &cluster.daemon;
    let before = config_text(daemon);

    let text = ok(&daemon.ctl(&["add", "new.test", &up.port()]));
    // The public URL the server gave: its scheme and port (not the default 80 here).
    let url = format!("http://new.test:{}", cluster.addr().port());
    assert!(text.contains(&format!("{url} is online")), "{text}");
    // Live at once: the add returned only after the server accepted the host.
    assert_eq!(public.get("new.test", "/x").await.status, StatusCode::OK);
    let after = config_text(daemon);
    assert!(after.starts_with(&before), "the existing config text changed:\n{after}");
    assert!(after.contains(&format!("host = \"new.test\"\nlocal = \"{}\"", up.port())), "{after}");

    let text = ok(&daemon.ctl(&["remove", "new.test"]));
    assert!(text.contains("removed"), "{text}");
    assert_eq!(public.get("new.test", "/x").await.status, StatusCode::NOT_FOUND);
    assert_eq!(config_text(daemon), before);
    assert_eq!(public.get("first.test", "/").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_add_missing_remove_and_bad_arguments_change_nothing() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("first.test", &up.port())]);
    let daemon = &cluster.daemon;
    let before = config_text(daemon);

    let err = failed(&daemon.ctl(&["add", "First.test", "9999"]), 1);
    assert!(err.contains("first.test already has a tunnel"), "{err}");
    let err = failed(&daemon.ctl(&["remove", "ghost.test"]), 1);
    assert!(err.contains("ghost.test has no tunnel"), "{err}");
    let err = failed(&daemon.ctl(&["add", "bad host", "8080"]), 1);
    assert!(err.contains("invalid host"), "{err}");
    // A wrong LOCAL is a wrong command line (ggrokctl checks it).
    let err = failed(&daemon.ctl(&["add", "ok.test", "http://x/path"]), 2);
    assert!(err.contains("path"), "{err}");
    // A host the server does not allow: refused, and undone.
    let err = failed(&daemon.ctl(&["add", "forbidden.example", &up.port()]), 1);
    assert!(err.contains("refused"), "{err}");
    assert_eq!(config_text(daemon), before);
    let list = json(&daemon.ctl(&["list", "--json"]));
    assert_eq!(list["tunnels"].as_array().unwrap().len(), 1);

    let out = daemon.ctl(&["add", "first.test", "1", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((reply["kind"].as_str(), reply["code"].as_str()), (Some("error"), Some("exists")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_save_lasts_until_restart() {
    let up = Upstream::start().await;
    let mut cluster = Cluster::start(&[("first.test", &up.port())]);
    let public = Public::new(cluster.addr());
    let before = config_text(&cluster.daemon);
    ok(&cluster.daemon.ctl(&["add", "temp.test", &up.port(), "--no-save"]));
    assert_eq!(public.get("temp.test", "/").await.status, StatusCode::OK);
    assert_eq!(config_text(&cluster.daemon), before);
    let list = json(&cluster.daemon.ctl(&["list", "--json"]));
    let temp = list["tunnels"].as_array().unwrap().iter().find(|t| t["host"] == "temp.test").unwrap();
    assert_eq!(temp["saved"], false);

    cluster.daemon.restart();
    cluster.daemon.wait_online("first.test");
    // Not served any more: "offline" for a few seconds after the restart, then unknown.
    assert_ne!(public.get("temp.test", "/").await.status, StatusCode::OK);
    let list = json(&cluster.daemon.ctl(&["list", "--json"]));
    assert!(list["tunnels"].as_array().unwrap().iter().all(|t| t["host"] != "temp.test"), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_adds_all_land_in_the_file_and_go_live() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("first.test", &up.port())]);
    let socket = cluster.daemon.socket.clone();
    let port = up.port();
    let adds: Vec<_> = (0..50)
        .map(|i| {
            let (socket, port) = (socket.clone(), port.clone());
            std::thread::spawn(move || ctl(&socket, &["add", &format!("t{i}.test"), &port]))
        })
        .collect();
    for add in adds {
        ok(&add.join().unwrap());
    }
    let text = config_text(&cluster.daemon);
    for i in 0..50 {
        assert!(text.contains(&format!("host = \"t{i}.test\"")), "t{i}.test missing from the file");
    }
    let check = std::process::Command::new(ggrok_tests::bins::bin("ggrokd"))
        .args(["--check", "--config", cluster.daemon.config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&check.stdout).contains("51 tunnels"), "{check:?}");
    let public = Public::new(cluster.addr());
    for i in 0..50 {
        assert_eq!(public.get(&format!("t{i}.test"), "/").await.status, StatusCode::OK, "t{i}.test");
    }
    let status = json(&cluster.daemon.ctl(&["status", "--json"]));
    assert_eq!((status["tunnels_online"].as_u64(), status["tunnels_total"].as_u64()), (Some(51), Some(51)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_status_in_text_and_json() {
    let up = Upstream::start().await;
    let (_held, down) = ggrok_tests::upstream::closed_port();
    let cluster = Cluster::start(&[("api.test", &up.port()), ("down.test", &down)]);
    let public = Public::new(cluster.addr());
    for _ in 0..3 {
        public.get("api.test", "/").await;
    }
    assert_eq!(public.get("down.test", "/").await.status, StatusCode::BAD_GATEWAY);
    let daemon = &cluster.daemon;

    let list = json(&daemon.ctl(&["list", "--json"]));
    let tunnels = list["tunnels"].as_array().unwrap();
    let api = tunnels.iter().find(|t| t["host"] == "api.test").unwrap();
    assert_eq!((api["state"].as_str(), api["requests"].as_u64()), (Some("online"), Some(3)));
    assert_eq!(api["local"], format!("localhost:{}", up.port()));
    let bad = tunnels.iter().find(|t| t["host"] == "down.test").unwrap();
    assert_eq!((bad["state"].as_str(), bad["errors"].as_u64()), (Some("error"), Some(1)));
    assert!(bad["last_error"]["message"].as_str().unwrap().contains(&down));

    let text = ok(&daemon.ctl(&["list"]));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("HOST") && lines[0].contains("STATE") && lines[0].contains("LAST ERROR"));
    // Each tunnel by the public URL the server gave.
    let url = |host: &str| format!("http://{host}:{} ", cluster.addr().port());
    assert!(lines.iter().any(|l| l.starts_with(&url("api.test")) && l.contains("online")), "{text}");
    assert!(lines.iter().any(|l| l.starts_with(&url("down.test")) && l.contains("error")), "{text}");

    let status = json(&daemon.ctl(&["status", "--json"]));
    assert_eq!(status["connection"], "connected");
    assert_eq!(status["daemon_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["config"], daemon.config.to_str().unwrap());
    assert_eq!(status["server"], format!("ws://{}/$$ggrok", cluster.addr()));
    assert_eq!((status["tunnels_online"].as_u64(), status["tunnels_total"].as_u64()), (Some(2), Some(2)));
    let text = ok(&daemon.ctl(&["status"]));
    assert!(text.contains("connection:  connected") && text.contains("2 of 2 online"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_retries_while_the_server_is_unreachable() {
    let (_held, port) = ggrok_tests::upstream::closed_port();
    let daemon = Daemon::start(&format!("ws://127.0.0.1:{port}"), TEST_TOKEN, &[("a.test", "1")], "");
    daemon.process.wait_for(&["cannot connect to the server"]);
    let status = json(&daemon.ctl(&["status", "--json"]));
    assert_ne!(status["connection"], "connected");
    assert!(status["attempt"].as_u64().unwrap() >= 1, "{status}");
    assert!(status["last_error"]["message"].as_str().unwrap().contains("cannot connect"), "{status}");
    let text = ok(&daemon.ctl(&["list"]));
    assert!(text.contains("connecting"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_only_the_difference_and_keeps_requests_in_flight() {
    let (slow, other) = (Upstream::start().await, Upstream::start().await);
    let cluster = Cluster::start(&[("slow.test", &slow.port()), ("gone.test", &other.port())]);
    let public = Public::new(cluster.addr());
    let daemon = &cluster.daemon;
    let in_flight = {
        let public = public.clone();
        tokio::spawn(async move { public.get("slow.test", "/slow").await })
    };
    // The slow request has reached the local service before the reload.
    while slow.served.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let text = config_text(daemon)
        .replace("host = \"gone.test\"", "host = \"new.test\"")
        .replace("[[tunnel]]\nhost = \"slow.test\"", "# kept as it was\n[[tunnel]]\nhost = \"slow.test\"");
    std::fs::write(&daemon.config, text).unwrap();
    let out = ok(&daemon.ctl(&["reload"]));
    assert!(out.contains("1 added, 1 removed, 0 changed, 1 unchanged"), "{out}");
    daemon.wait_online("new.test");
    assert_eq!(public.get("new.test", "/").await.status, StatusCode::OK);
    assert_eq!(public.get("gone.test", "/").await.status, StatusCode::NOT_FOUND);
    assert!(!in_flight.is_finished());
    slow.release_slow();
    let reply = in_flight.await.unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "slow done"));

    // SIGHUP does the same; an invalid file changes nothing.
    std::fs::write(&daemon.config, config_text(daemon).replace("host = \"new.test\"", "host = \"hup.test\""))
        .unwrap();
    daemon.process.signal("HUP");
    daemon.wait_online("hup.test");
    assert_eq!(public.get("new.test", "/").await.status, StatusCode::NOT_FOUND);
    std::fs::write(&daemon.config, "server = 42\n").unwrap();
    let err = failed(&daemon.ctl(&["reload"]), 1);
    assert!(err.contains("nothing changed") && err.contains("ggrokd.toml:1"), "{err}");
    assert_eq!(public.get("hup.test", "/").await.status, StatusCode::OK);
}

fn raw_call(stream: &mut BufReader<UnixStream>, line: &[u8]) -> Value {
    stream.get_mut().write_all(line).unwrap();
    stream.get_mut().write_all(b"\n").unwrap();
    let mut answer = String::new();
    stream.read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_socket_answers_bad_input_with_errors_and_keeps_serving() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("api.test", &up.port())]);
    let mut conn = BufReader::new(UnixStream::connect(&cluster.daemon.socket).unwrap());
    let cases: [(&[u8], &str); 5] = [
        (b"this is not json", "bad_request"),
        (br#"{"version":1,"cmd":"explode"}"#, "unknown_command"),
        (br#"{"version":99,"cmd":"list"}"#, "version"),
        (br#"{"version":1,"cmd":"add","host":"x.test"}"#, "bad_request"),
        (br#"[1,2,3]"#, "bad_request"),
    ];
    for (line, code) in cases {
        let reply = raw_call(&mut conn, line);
        assert_eq!((reply["kind"].as_str(), reply["code"].as_str()), (Some("error"), Some(code)), "{reply}");
    }
    let huge = vec![b'x'; 100 * 1024];
    let reply = raw_call(&mut conn, &huge);
    assert_eq!(reply["code"], "too_large");
    // The same connection, and the daemon, still work.
    let reply = raw_call(&mut conn, br#"{"version":1,"cmd":"list"}"#);
    assert_eq!(reply["kind"], "tunnels");
    assert_eq!(Public::new(cluster.addr()).get("api.test", "/").await.status, StatusCode::OK);
}

#[test]
fn socket_permissions_stale_socket_and_second_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ctl/ggrokd.sock");
    // A stale socket file, as a crashed daemon leaves it.
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let daemon = start_on(dir.path(), &socket);
    daemon.wait_for(&["ggrokd", "starting"]);
    let sock_mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(sock_mode, 0o600);
    assert!(ok(&ctl(&socket, &["list"])).contains("a.test"));

    let second = std::process::Command::new(ggrok_tests::bins::bin("ggrokd"))
        .args(["--config", config_for(dir.path()).to_str().unwrap(), "--socket", socket.to_str().unwrap()])
        .env_clear()
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another ggrokd is already running") && err.contains(socket.to_str().unwrap()),
        "{err}"
    );
    // The first one is unharmed.
    assert!(ok(&ctl(&socket, &["list"])).contains("a.test"));

    // A fresh directory is created 0700.
    let fresh = dir.path().join("new/deeper/ggrokd.sock");
    // (With a config file of its own: one file is one running ggrokd, tests/tests/identity.rs.)
    let other_dir = dir.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let other = start_on(&other_dir, &fresh);
    other.wait_for(&["ggrokd", "starting"]);
    let mode = std::fs::metadata(fresh.parent().unwrap()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

fn config_for(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("ggrokd.toml");
    std::fs::write(
        &path,
        "server = \"ws://127.0.0.1:9\"\ntoken = \"t\"\n[[tunnel]]\nhost = \"a.test\"\nlocal = \"1\"\n",
    )
    .unwrap();
    path
}

fn start_on(dir: &std::path::Path, socket: &std::path::Path) -> ggrok_tests::process::Process {
    ggrok_tests::process::Process::spawn(
        &ggrok_tests::bins::bin("ggrokd"),
        &["--config", config_for(dir).to_str().unwrap(), "--socket", socket.to_str().unwrap()],
        &[],
    )
}

#[test]
fn a_daemon_that_is_not_running_gets_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody.sock");
    for command in [&["list"][..], &["status"], &["add", "a.test", "1"], &["remove", "a.test"], &["reload"]] {
        let out = ctl(&socket, command);
        let err = failed(&out, 3);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(socket.to_str().unwrap()) && err.contains("systemctl --user start ggrokd"),
            "{err}"
        );
    }
}

#[test]
fn completions_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("x.sock");
    let bash = ok(&ctl(&socket, &["completions", "bash"]));
    assert!(bash.contains("ggrokctl") && bash.contains("remove"));
    let help = ok(&ctl(&socket, &["--help"]));
    assert!(help.contains("Exit codes") && help.contains("ggrokctl add api.example.com 8080"), "{help}");
    let add = ok(&ctl(&socket, &["add", "--help"]));
    assert!(add.contains("--no-save") && add.contains("Example"), "{add}");
}

#[test]
fn socket_path_follows_ggrok_socket_then_xdg_runtime_dir() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    let config = config_for(dir.path());
    let run_ctl = |env: &[(&str, &std::path::Path)]| {
        let mut cmd = std::process::Command::new(ggrok_tests::bins::bin("ggrokctl"));
        cmd.arg("list").env_clear();
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };

    let xdg = ggrok_tests::process::Process::spawn(
        &ggrok_tests::bins::bin("ggrokd"),
        &["--config", config.to_str().unwrap()],
        &[("XDG_RUNTIME_DIR", runtime.to_str().unwrap())],
    );
    xdg.wait_for(&["ggrokd", "starting"]);
    let expected = runtime.join("ggrok/ggrokd.sock");
    assert!(expected.exists(), "no socket at {}", expected.display());
    assert!(ok(&run_ctl(&[("XDG_RUNTIME_DIR", &runtime)])).contains("a.test"));

    let explicit = dir.path().join("explicit.sock");
    // Beside the first: with a config file of its own (one file is one running ggrokd).
    let second = dir.path().join("second");
    std::fs::create_dir(&second).unwrap();
    let env = ggrok_tests::process::Process::spawn(
        &ggrok_tests::bins::bin("ggrokd"),
        &["--config", config_for(&second).to_str().unwrap()],
        &[("GGROK_SOCKET", explicit.to_str().unwrap()), ("XDG_RUNTIME_DIR", runtime.to_str().unwrap())],
    );
    env.wait_for(&["ggrokd", "starting"]);
    assert!(explicit.exists());
    assert!(ok(&run_ctl(&[("GGROK_SOCKET", &explicit), ("XDG_RUNTIME_DIR", &runtime)])).contains("a.test"));
}
