//! A stand-in for systemd's notification socket: a Unix datagram socket whose path a test passes
//! to a daemon as `NOTIFY_SOCKET`, collecting what it sends (`READY=1`, `STATUS=…`, `WATCHDOG=1`).

use crate::process::READY_TIMEOUT;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tempfile::TempDir;

/// The socket and every line received so far, with a cursor: each wait looks only at lines after
/// the one the previous wait matched, so consecutive waits check the order of messages.
pub struct NotifySocket {
    _dir: TempDir,
    path: PathBuf,
    socket: UnixDatagram,
    lines: Vec<String>,
    cursor: usize,
}

impl NotifySocket {
    /// Binds a fresh socket in a temporary directory.
    pub fn bind() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        Self { _dir: dir, path, socket, lines: Vec::new(), cursor: 0 }
    }

    /// The path to pass as `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path as a string, for environment lists.
    pub fn env(&self) -> &str {
        self.path.to_str().expect("UTF-8 temporary path")
    }

    /// Waits for a line (after the last matched one) for which `matches` holds, and returns it.
    /// Panics with every line received after [`READY_TIMEOUT`].
    pub fn wait_for(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(offset) = self.lines[self.cursor..].iter().position(|l| matches(l)) {
                self.cursor += offset + 1;
                return self.lines[self.cursor - 1].clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {what} on NOTIFY_SOCKET; received:\n{}", self.lines.join("\n"));
            self.socket.set_read_timeout(Some(left)).expect("read timeout");
            let mut buf = vec![0u8; 4096];
            if let Ok(n) = self.socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.lines.extend(text.lines().map(str::to_owned));
            }
        }
    }

    /// Waits for exactly `line` (such as `READY=1`).
    pub fn wait_line(&mut self, line: &str) -> String {
        self.wait_for(line, |l| l == line)
    }

    /// Waits for a `STATUS=` line containing every one of `parts`, and returns the status text.
    pub fn wait_status(&mut self, parts: &[&str]) -> String {
        let line = self.wait_for(&format!("STATUS= with {parts:?}"), |l| {
            l.strip_prefix("STATUS=").is_some_and(|s| parts.iter().all(|p| s.contains(p)))
        });
        line["STATUS=".len()..].to_owned()
    }

    /// Every line received so far.
    pub fn received(&self) -> &[String] {
        &self.lines
    }
}
