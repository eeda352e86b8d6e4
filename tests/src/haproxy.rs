//! HAProxy (from apt; `.ci/setup` installs it) in TCP mode with round-robin balancing, started in
//! the foreground on probed free ports of 127.0.0.1 and killed when dropped.
//!
//! [`HaProxy::start`] balances over its targets as they are. [`HaProxy::builder`] adds what a
//! deployment has: health checks of `/healthz` on each target's admin port (short `inter`, `fall 1`,
//! `rise 1`), `retries` with `option redispatch 1` (a connection refused by one target is tried on
//! another), a second frontend for ggrokd's connections that only checks that each target accepts
//! TCP connections (a replica that says "not ready" on `/healthz` must still be reachable by the
//! daemons, or it would wait for them forever), a source address per target (so the target sees,
//! and the server puts in `X-Forwarded-For`, which replica the balancer chose), and a stats socket
//! to read each target's state and the balancer's retry counters.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The backend of the public frontend.
pub const PUBLIC: &str = "public";
/// The backend of the tunnel frontend.
pub const TUNNELS: &str = "tunnels";

/// A running HAProxy.
pub struct HaProxy {
    /// Where it listens (the public frontend).
    pub addr: SocketAddr,
    /// Where ggrokd should dial: the tunnel frontend when there is one, else [`HaProxy::addr`].
    pub tunnel_addr: SocketAddr,
    child: Child,
    stats: PathBuf,
    _dir: TempDir,
}

/// One server of the backends.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its admin listener, whose `/healthz` gates public traffic (with [`Builder::health_checks`]).
    pub admin: Option<SocketAddr>,
    /// The address HAProxy connects to it from.
    pub source: Option<IpAddr>,
}

/// How to start a [`HaProxy`].
pub struct Builder {
    targets: Vec<Target>,
    health_checks: bool,
    tunnel_frontend: bool,
}

/// A free port of 127.0.0.1 (probed: bound, then released).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
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
        Self::builder(targets.iter().map(|&addr| Target { addr, admin: None, source: None }).collect())
            .start()
    }

    /// A balancer over `targets`, configured further before [`Builder::start`].
    pub fn builder(targets: Vec<Target>) -> Builder {
        Builder { targets, health_checks: false, tunnel_frontend: false }
    }

    /// The state of server `index` of `backend` (`UP`, `DOWN`, `no check`, …), from the stats
    /// socket.
    pub fn state(&self, backend: &str, index: usize) -> String {
        self.stat(backend, index, "status")
    }

    /// A field of `show stat` (such as `wretr`, retries, or `wredis`, redispatches) for server
    /// `index` of `backend`.
    pub fn stat(&self, backend: &str, index: usize, field: &str) -> String {
        let mut socket = UnixStream::connect(&self.stats).expect("haproxy stats socket");
        socket.write_all(b"show stat\n").unwrap();
        let mut csv = String::new();
        socket.read_to_string(&mut csv).unwrap();
        let mut lines = csv.lines();
        let header: Vec<&str> =
            lines.next().unwrap_or_default().trim_start_matches("# ").split(',').collect();
        let column = header.iter().position(|h| *h == field).unwrap_or_else(|| panic!("no {field} in {csv}"));
        let server = format!("r{index}");
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|row| row.first() == Some(&backend) && row.get(1) == Some(&server.as_str()))
            .and_then(|row| row.get(column).map(|v| (*v).to_owned()))
            .unwrap_or_else(|| panic!("no {backend}/{server} in {csv}"))
    }

    /// Waits (up to `within`) until server `index` of `backend` is up (or down, with `up` false);
    /// returns whether it is.
    pub fn wait_state(&self, backend: &str, index: usize, up: bool, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let state = self.state(backend, index);
            if state.starts_with("UP") == up && !state.contains("going") {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Builder {
    /// Gates public traffic on `GET /healthz` of each target's admin port answering 200.
    pub fn health_checks(mut self) -> Self {
        self.health_checks = true;
        self
    }

    /// Adds a frontend for ggrokd ([`HaProxy::tunnel_addr`]) whose targets are only checked for
    /// accepting TCP connections.
    pub fn tunnel_frontend(mut self) -> Self {
        self.tunnel_frontend = true;
        self
    }

    fn config(&self, addr: SocketAddr, tunnel_addr: SocketAddr, stats: &std::path::Path) -> String {
        let mut config = format!(
            "global\n    maxconn 4096\n    stats socket {}\n\ndefaults\n    mode tcp\n    \
             timeout connect 2s\n    timeout client 120s\n    timeout server 120s\n    retries 3\n    \
             option redispatch 1\n    default-server inter 100ms fastinter 50ms fall 1 rise 1\n\n\
             frontend {PUBLIC}\n    bind {addr}\n    default_backend {PUBLIC}\n\nbackend {PUBLIC}\n    \
             balance roundrobin\n",
            stats.display()
        );
        if self.health_checks {
            config.push_str("    option httpchk GET /healthz\n    http-check expect status 200\n");
        }
        let server = |i: usize, t: &Target, check: &str| {
            let source = t.source.map(|s| format!(" source {s}")).unwrap_or_default();
            format!("    server r{i} {}{check}{source}\n", t.addr)
        };
        for (i, t) in self.targets.iter().enumerate() {
            let check = match (self.health_checks, t.admin) {
                (true, Some(admin)) => format!(" check addr {} port {}", admin.ip(), admin.port()),
                (true, None) => panic!("target {i} has no admin address to check"),
                (false, _) => String::new(),
            };
            config.push_str(&server(i, t, &check));
        }
        if self.tunnel_frontend {
            config.push_str(&format!(
                "\nfrontend {TUNNELS}\n    bind {tunnel_addr}\n    default_backend {TUNNELS}\n\n\
                 backend {TUNNELS}\n    balance roundrobin\n"
            ));
            for (i, t) in self.targets.iter().enumerate() {
                config.push_str(&server(i, t, " check"));
            }
        }
        config
    }

    /// Starts HAProxy and returns once its frontends accept connections (within 10 s).
    pub fn start(self) -> HaProxy {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_addr();
        let tunnel_addr = if self.tunnel_frontend { free_addr() } else { addr };
        let stats = dir.path().join("stats.sock");
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, self.config(addr, tunnel_addr, &stats)).unwrap();
        let child = Command::new(binary())
            .args(["-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start haproxy");
        let proxy = HaProxy { addr, tunnel_addr, child, stats, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        for listening in [addr, tunnel_addr] {
            while TcpStream::connect(listening).is_err() {
                assert!(Instant::now() < deadline, "haproxy did not listen on {listening} within 10 s");
                std::thread::sleep(Duration::from_millis(20));
            }
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
