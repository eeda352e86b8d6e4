//! HAProxy (from apt; `.ci/setup` installs it) in TCP mode with round-robin balancing, started in
//! the foreground on a probed free port of 127.0.0.1 and killed when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// A running HAProxy.
pub struct HaProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    _dir: TempDir,
}

/// The haproxy binary, or a message saying how to install it.
fn binary() -> PathBuf {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("haproxy is not installed: run `bash .ci/setup` as root (apt-get install haproxy)")
        })
}

impl HaProxy {
    /// Balances TCP connections over `targets`, round robin, on a free port of 127.0.0.1; returns
    /// once it accepts connections (within 10 s).
    pub fn start(targets: &[SocketAddr]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut config = format!(
            "global\n    maxconn 4096\n\ndefaults\n    mode tcp\n    timeout connect 2s\n    \
             timeout client 120s\n    timeout server 120s\n\nfrontend ggrok\n    bind {addr}\n    \
             default_backend replicas\n\nbackend replicas\n    balance roundrobin\n"
        );
        for (i, target) in targets.iter().enumerate() {
            config.push_str(&format!("    server r{i} {target}\n"));
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(binary())
            .args(["-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start haproxy");
        let proxy = Self { addr, child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not listen on {addr} within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
