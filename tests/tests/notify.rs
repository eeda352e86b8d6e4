//! ggrokd and ggrok-server under systemd: the notification protocol (`READY=1` without waiting for
//! the server, `STATUS=` kept current, `WATCHDOG=1`, `RELOADING=1` … `READY=1`, `STOPPING=1`),
//! checked on a Unix datagram socket that stands in for systemd's; and logging when
//! `JOURNAL_STREAM` says stderr is the journal.

use ggrok_tests::TEST_TOKEN;
use ggrok_tests::bins::bin;
use ggrok_tests::cluster::{ctl, daemon_toml};
use ggrok_tests::notify::NotifySocket;
use ggrok_tests::process::Process;
use ggrok_tests::upstream::closed_port;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// systemd's `WatchdogSec=` as the daemons see it: 0.4 s, so pings come every 0.2 s.
const WATCHDOG_USEC: &str = "400000";

fn spawn_daemon(config: &Path, socket: &Path, notify: &NotifySocket) -> Process {
    Process::spawn(
        &bin("ggrokd"),
        &["--config", config.to_str().unwrap(), "--socket", socket.to_str().unwrap()],
        &[("NOTIFY_SOCKET", notify.env()), ("WATCHDOG_USEC", WATCHDOG_USEC)],
    )
}

#[test]
fn daemon_is_ready_while_its_server_is_down() {
    let (_held, port) = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ggrokd.toml");
    let tunnels = [("a.test", "8080"), ("b.test", "8081")];
    std::fs::write(&config, daemon_toml(&format!("ws://127.0.0.1:{port}"), TEST_TOKEN, &tunnels, ""))
        .unwrap();
    let socket = dir.path().join("run/ggrokd.sock");
    let mut notify = NotifySocket::bind();
    let daemon = spawn_daemon(&config, &socket, &notify);

    notify.wait_line("READY=1");
    // Ready means usable: the control socket answers although the server cannot be reached.
    let status = ctl(&socket, &["status"]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let text = notify.wait_status(&[&format!("127.0.0.1:{port}"), "0/2 tunnels online"]);
    assert!(!text.starts_with("connected"), "{text}");
    // Reconnect attempts show up in the status, with the reason.
    notify.wait_status(&["reconnecting to", "failed attempts", "0/2 tunnels online"]);
    notify.wait_line("WATCHDOG=1");
    notify.wait_line("WATCHDOG=1");

    assert!(daemon.terminate().success());
    notify.wait_line("STOPPING=1");
}

#[test]
fn server_and_daemon_report_status_and_the_daemon_reloads() {
    let server_dir = tempfile::tempdir().unwrap();
    let server_config = server_dir.path().join("server.toml");
    std::fs::write(
        &server_config,
        format!(
            "listen = \"127.0.0.1:0\"\n[[client]]\nname = \"test\"\ntoken = {TEST_TOKEN:?}\nhosts = [\"*.test\"]\n"
        ),
    )
    .unwrap();
    let mut server_notify = NotifySocket::bind();
    let server = Process::spawn(
        &bin("ggrok-server"),
        &["--config", server_config.to_str().unwrap()],
        &[("NOTIFY_SOCKET", server_notify.env()), ("WATCHDOG_USEC", WATCHDOG_USEC)],
    );
    server_notify.wait_line("READY=1");
    let listening =
        server_notify.wait_status(&["listening on 127.0.0.1:", "0 tunnel clients", "0 hosts online"]);
    let addr = listening["listening on ".len()..].split(',').next().unwrap().to_owned();
    server_notify.wait_line("WATCHDOG=1");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ggrokd.toml");
    std::fs::write(&config, daemon_toml(&format!("ws://{addr}"), TEST_TOKEN, &[("a.test", "8080")], ""))
        .unwrap();
    let socket = dir.path().join("run/ggrokd.sock");
    let mut notify = NotifySocket::bind();
    let daemon = spawn_daemon(&config, &socket, &notify);
    notify.wait_line("READY=1");
    notify.wait_status(&[&format!("connected to {addr}"), "1/1 tunnels online"]);
    server_notify.wait_status(&["1 tunnel clients", "1 hosts online"]);

    // ggrokctl reload, then SIGHUP with a new tunnel in the file: each is RELOADING=1 then READY=1.
    let reload = ctl(&socket, &["reload"]);
    assert!(reload.status.success(), "{}", String::from_utf8_lossy(&reload.stderr));
    notify.wait_line("RELOADING=1");
    notify.wait_for("MONOTONIC_USEC=", |l| l.starts_with("MONOTONIC_USEC="));
    notify.wait_line("READY=1");

    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[[tunnel]]\nhost = \"b.test\"\nlocal = \"8081\"\n");
    std::fs::write(&config, text).unwrap();
    daemon.signal("HUP");
    notify.wait_line("RELOADING=1");
    notify.wait_line("READY=1");
    notify.wait_status(&["2/2 tunnels online"]);
    server_notify.wait_status(&["1 tunnel clients", "2 hosts online"]);
    notify.wait_line("WATCHDOG=1");

    assert!(daemon.terminate().success());
    notify.wait_line("STOPPING=1");
    assert!(server.terminate().success());
    server_notify.wait_line("STOPPING=1");
}

/// With `JOURNAL_STREAM` naming its stderr, the daemon logs to journald when the journal socket
/// is there, and otherwise says so once and logs to stderr: it never fails to start for want of a
/// journal.
#[test]
fn journal_stream_selects_journald_or_falls_back_to_stderr() {
    let (_held, port) = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ggrokd.toml");
    std::fs::write(&config, daemon_toml(&format!("ws://127.0.0.1:{port}"), TEST_TOKEN, &[], "")).unwrap();
    let (mut reader, writer) = std::io::pipe().unwrap();
    let meta =
        std::fs::File::from(std::os::fd::OwnedFd::from(writer.try_clone().unwrap())).metadata().unwrap();
    let mut notify = NotifySocket::bind();
    let mut child = Command::new(bin("ggrokd"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--socket",
            dir.path().join("ggrokd.sock").to_str().unwrap(),
        ])
        .env_clear()
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", notify.path())
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(writer)
        .spawn()
        .unwrap();
    notify.wait_line("READY=1");
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    reader.read_to_string(&mut stderr).unwrap();

    if Path::new("/run/systemd/journal/socket").exists() {
        assert!(!stderr.contains("starting"), "logged to stderr although journald is there:\n{stderr}");
    } else {
        assert!(stderr.contains("cannot log to journald"), "{stderr}");
        assert!(stderr.contains("ggrokd") && stderr.contains("starting"), "{stderr}");
    }
}
