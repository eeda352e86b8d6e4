//! A command run on a pseudo-terminal through `script` (util-linux): what a person at a shell sees,
//! and what they type, Ctrl-C included.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;
use std::time::Duration;

/// A shell command running on its own pseudo-terminal.
pub struct Terminal {
    child: Child,
    keys: ChildStdin,
    seen: Receiver<String>,
    transcript: JoinHandle<String>,
}

impl Terminal {
    /// Starts `command` (a `sh -c` line) on a new pseudo-terminal.
    pub fn run(command: &str) -> Self {
        let mut child = Command::new("script")
            .args(["-qec", command, "/dev/null"])
            .env_clear()
            .env("TERM", "dumb")
            .env("SHELL", "/bin/sh")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("script (util-linux)");
        let keys = child.stdin.take().unwrap();
        let mut screen = child.stdout.take().unwrap();
        let (shown, seen) = std::sync::mpsc::channel();
        let transcript = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = [0u8; 256];
            while let Ok(n) = screen.read(&mut buf) {
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&buf[..n]);
                let _ = shown.send(String::from_utf8_lossy(&all).into_owned());
            }
            String::from_utf8_lossy(&all).into_owned()
        });
        Self { child, keys, seen, transcript }
    }

    /// Waits until the screen shows `text` (30 s at most, else panics); what it shows then.
    pub fn wait_for(&self, text: &str) -> String {
        loop {
            let so_far = self
                .seen
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("{text:?} never shown"));
            if so_far.contains(text) {
                return so_far;
            }
        }
    }

    /// Types `keys` (`"\x03"` is Ctrl-C).
    pub fn type_keys(&mut self, keys: &str) {
        self.keys.write_all(keys.as_bytes()).unwrap();
        self.keys.flush().unwrap();
    }

    /// Waits for the command to end (30 s at most, else kills it and panics): its status and all
    /// the screen showed.
    pub fn finish(mut self) -> (ExitStatus, String) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the command on the terminal did not end");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, self.transcript.join().unwrap())
    }
}
