//! One ggrokd per config file: a second one started with the same file (even on another control
//! socket) would share the daemon's identity, and the two would take each other's connections
//! over on the server, back and forth. It is refused with the first one's process id, the first
//! one keeps serving, and once it has stopped the file may be used again.

use ggrok_tests::bins::bin;
use ggrok_tests::cluster::{Cluster, ctl};
use ggrok_tests::process::Process;
use std::path::Path;

fn ggrokd(config: &Path, socket: &Path, state: &Path) -> Process {
    let args = ["--config", config.to_str().unwrap(), "--socket", socket.to_str().unwrap()];
    Process::spawn(&bin("ggrokd"), &args, &[("XDG_STATE_HOME", state.to_str().unwrap())])
}

#[test]
fn a_second_ggrokd_with_the_same_config_is_refused() {
    let cluster = Cluster::start(&[("a.test", "9")]);
    let dir = tempfile::tempdir().unwrap();
    let (config, state) = (dir.path().join("ggrokd.toml"), dir.path().join("state"));
    std::fs::copy(&cluster.daemon.config, &config).unwrap();
    let first_socket = dir.path().join("first.sock");
    let first = ggrokd(&config, &first_socket, &state);
    first.wait_for(&["ggrokd", "starting"]);

    // It must end at once; one that ran on is killed after a while, and the test fails.
    let second_socket = dir.path().join("second.sock");
    let mut second = std::process::Command::new(bin("ggrokd"))
        .args(["--config", config.to_str().unwrap(), "--socket", second_socket.to_str().unwrap()])
        .env_clear()
        .env("XDG_STATE_HOME", &state)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            second.kill().unwrap();
            panic!("a second ggrokd with the same config kept running");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    let says = format!("another ggrokd (pid {}) is already running with {}", first.pid(), config.display());
    assert!(err.contains(&says), "{err}");
    assert!(!dir.path().join("second.sock").exists(), "the second one bound no socket");
    // The first one is untouched.
    let list = ctl(&first_socket, &["list"]);
    assert!(list.status.success() && String::from_utf8_lossy(&list.stdout).contains("a.test"));

    // Stopped, it leaves the file free for the next one.
    assert!(first.terminate().success());
    let next = ggrokd(&config, &dir.path().join("next.sock"), &state);
    next.wait_for(&["ggrokd", "starting"]);
}
