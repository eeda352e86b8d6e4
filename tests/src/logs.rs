//! `ggrokctl logs` from tests: one-shot listings, live followers whose lines can be awaited, and
//! bounded polling until the log shows what a test expects.

use crate::bins::bin;
use crate::process::READY_TIMEOUT;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The requests `ggrokctl --socket SOCKET logs --json ARGS` prints: the `request` lines' objects.
pub fn entries(socket: &Path, args: &[&str]) -> Vec<Value> {
    let out = crate::cluster::ctl(socket, &[&["logs", "--json"], args].concat());
    assert!(out.status.success(), "ggrokctl logs failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .filter(|v| v["kind"] == "request")
        .collect()
}

/// Calls `check` until it returns `Some`, every few milliseconds, for at most [`READY_TIMEOUT`];
/// panics with `what` when it never does.
pub fn poll<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[derive(Default)]
struct Received {
    lines: Mutex<(Vec<Value>, bool)>,
    changed: Condvar,
}

/// A running `ggrokctl logs --follow --json`, its lines collected as they come. Killed when
/// dropped.
pub struct Follower {
    child: Child,
    received: Arc<Received>,
}

impl Follower {
    /// Starts `ggrokctl --socket SOCKET logs --follow --json ARGS`.
    pub fn start(socket: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(bin("ggrokctl"))
            .arg("--socket")
            .arg(socket)
            .args(["logs", "--follow", "--json"])
            .args(args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ggrokctl logs --follow");
        let stdout = child.stdout.take().expect("piped stdout");
        let received = Arc::new(Received::default());
        let sink = received.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
                sink.lines.lock().unwrap().0.push(value);
                sink.changed.notify_all();
            }
            sink.lines.lock().unwrap().1 = true;
            sink.changed.notify_all();
        });
        Self { child, received }
    }

    /// Waits until a line for which `matches` holds has arrived and returns it.
    pub fn wait_for(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut guard = self.received.lines.lock().unwrap();
        loop {
            if let Some(line) = guard.0.iter().find(|l| matches(l)) {
                return line.clone();
            }
            let now = Instant::now();
            assert!(now < deadline && !guard.1, "no line with {what} from logs -f; got {:#?}", guard.0);
            guard = self.received.changed.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<Value> {
        self.received.lines.lock().unwrap().0.clone()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
