//! A child process whose stderr is collected line by line, so tests can wait for a log line.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The address in a server's `listening on ADDR (…)` log line.
pub fn listening_address(line: &str) -> Option<std::net::SocketAddr> {
    line.split("listening on ").nth(1)?.split_whitespace().next()?.parse().ok()
}

/// Asserts that the memory `peak` (bytes) of `what` is within `allowed`, both told in MiB.
pub fn assert_within(what: &str, peak: u64, allowed: u64) {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    assert!(peak <= allowed, "{what} peak {:.0} MiB > {:.0} MiB", mib(peak), mib(allowed));
}

/// The peak resident memory (bytes) of a server and a daemon, each given with its idle RSS
/// (bytes), printed with `what` they were doing; (server, daemon).
pub fn peaks(what: &str, server: (&Process, u64), daemon: (&Process, u64)) -> (u64, u64) {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let (server_peak, daemon_peak) = (server.0.peak_rss_kib() << 10, daemon.0.peak_rss_kib() << 10);
    println!(
        "{what}: ggrok-server peak {:.0} MiB (idle {:.0}), ggrokd peak {:.0} MiB (idle {:.0})",
        mib(server_peak),
        mib(server.1),
        mib(daemon_peak),
        mib(daemon.1)
    );
    (server_peak, daemon_peak)
}

/// How long a test waits for a log line before failing.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Lines {
    lines: Mutex<(Vec<String>, bool)>,
    changed: Condvar,
}

/// A running binary. Killed when dropped.
pub struct Process {
    name: String,
    child: Child,
    log: Arc<Lines>,
}

impl Process {
    /// Starts `program` with `args`, a clean environment (but `PATH`, `HOME` and `RUST_LOG`), and
    /// stderr captured.
    pub fn spawn(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_echo(program, args, env, std::env::var_os("GGROK_TEST_ECHO").is_some())
    }

    /// Like [`Process::spawn`]; with `echo`, every line is also copied to our stderr, tagged with
    /// the program's name.
    pub fn spawn_echo(program: &Path, args: &[&str], env: &[(&str, &str)], echo: bool) -> Self {
        let mut cmd = Command::new(program);
        cmd.args(args).env_clear().stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        for key in ["PATH", "HOME"] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        cmd.env("RUST_LOG", std::env::var("GGROK_TEST_LOG").unwrap_or_else(|_| "info".into()));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        let name = program.file_name().unwrap().to_string_lossy().into_owned();
        let log = Arc::new(Lines::default());
        let stderr = child.stderr.take().expect("piped stderr");
        let (sink, tag) = (log.clone(), name.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if echo {
                    eprintln!("[{tag}] {line}");
                }
                sink.lines.lock().unwrap_or_else(|e| e.into_inner()).0.push(line);
                sink.changed.notify_all();
            }
            sink.lines.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
            sink.changed.notify_all();
        });
        Self { name, child, log }
    }

    /// Waits until a line containing every one of `parts` has been logged (counting lines logged
    /// before the call) and returns it. Panics with the whole log after [`READY_TIMEOUT`].
    pub fn wait_for(&self, parts: &[&str]) -> String {
        self.wait_for_nth(parts, 1)
    }

    /// Like [`Process::wait_for`], for the `n`th such line.
    pub fn wait_for_nth(&self, parts: &[&str], n: usize) -> String {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut guard = self.log.lines.lock().unwrap();
        loop {
            let mut found = guard.0.iter().filter(|l| parts.iter().all(|p| l.contains(p)));
            if let Some(line) = found.nth(n - 1) {
                return line.clone();
            }
            let now = Instant::now();
            if now >= deadline || guard.1 {
                let why = if guard.1 { "exited" } else { "timed out" };
                panic!("{} {why} before logging {parts:?}; its log:\n{}", self.name, guard.0.join("\n"));
            }
            guard = self.log.changed.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// How many lines so far contain every one of `parts`.
    pub fn count(&self, parts: &[&str]) -> usize {
        self.log.lines.lock().unwrap().0.iter().filter(|l| parts.iter().all(|p| l.contains(p))).count()
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lines.lock().unwrap().0.join("\n")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_field("VmHWM:")
    }

    /// Current resident memory (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_field("VmRSS:")
    }

    /// Starts a new peak: VmHWM drops to the current VmRSS (`/proc/PID/clear_refs`, Linux 4.0+).
    pub fn reset_peak_rss(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").expect("/proc clear_refs");
    }

    fn status_field(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal (`HUP`, `STOP`, `CONT`, …) by name.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.pid().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name} failed");
    }

    /// Waits (bounded) for the process to exit on its own, and returns its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit after SIGTERM", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
