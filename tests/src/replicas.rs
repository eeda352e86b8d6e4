//! Server replicas as a deployment runs them: N ggrok-servers on fixed loopback ports (so one
//! restarted comes back where the balancer expects it), each with an admin listener and
//! `[cluster] wait_for_sessions`, behind a health-checked [`HaProxy`] with a tunnel frontend of its
//! own, and one ggrokd that holds every replica through it (`replicas = "all"`), serving
//! [`HOST`] from an [`Upstream`].
//!
//! HAProxy reaches replica `i` from the address `127.0.1.{i+1}`, which the replica puts in
//! `X-Forwarded-For` and the upstream's `/pattern/…` sends back: each answer tells which replica
//! served it ([`Replicas::replica_of`]).

use crate::TEST_TOKEN;
use crate::cluster::{Daemon, Server};
use crate::haproxy::{self, HaProxy, Target};
use crate::upstream::Upstream;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// The tunnel host the daemon serves.
pub const HOST: &str = "a.test";
/// How long a replica that restarts says "not ready" at most, when no daemon comes back to it.
pub const WAIT_FOR_SESSIONS: u64 = 20;
/// How long a stopping replica lets its requests in flight finish.
pub const SHUTDOWN_GRACE: u64 = 5;

/// The replicas, the balancer in front of them, and the daemon behind.
pub struct Replicas {
    /// The replicas, named `r0`, `r1`, …
    pub servers: Vec<Server>,
    /// The balancer.
    pub haproxy: HaProxy,
    /// The daemon, holding every replica.
    pub daemon: Daemon,
    /// The local service behind [`HOST`].
    pub upstream: Upstream,
    targets: Vec<Target>,
}

/// The configuration of replica `index` at `target`.
fn server_toml(index: usize, target: &Target) -> String {
    let admin = target.admin.expect("an admin address");
    format!(
        "listen = \"{}\"\nshutdown_grace = {SHUTDOWN_GRACE}\n\n[cluster]\nreplica = \"r{index}\"\n\
         wait_for_sessions = {WAIT_FOR_SESSIONS}\n\n[admin]\nlisten = \"{admin}\"\n\n[[client]]\n\
         name = \"test\"\ntoken = {TEST_TOKEN:?}\nhosts = [\"{HOST}\"]\n",
        target.addr
    )
}

impl Replicas {
    /// Starts `n` replicas, the balancer and the daemon, and waits until the daemon holds every
    /// replica and the balancer sends public traffic to each.
    pub async fn start(n: usize) -> Self {
        let upstream = Upstream::start().await;
        let targets: Vec<Target> = (0..n)
            .map(|i| Target {
                addr: haproxy::free_addr(),
                admin: Some(haproxy::free_addr()),
                source: Some(IpAddr::V4(Ipv4Addr::new(127, 0, 1, i as u8 + 1))),
            })
            .collect();
        let servers =
            targets.iter().enumerate().map(|(i, t)| Server::start_with(&server_toml(i, t))).collect();
        let haproxy = HaProxy::builder(targets.clone()).health_checks().tunnel_frontend().start();
        let daemon = Daemon::start(
            &format!("ws://{}", haproxy.tunnel_addr),
            TEST_TOKEN,
            &[(HOST, &upstream.port())],
            "replicas = \"all\"\nreconnect_initial = 0.1\nreconnect_max = 0.5",
        );
        let replicas = Self { servers, haproxy, daemon, upstream, targets };
        let held = replicas.wait_held();
        println!("the daemon held all {n} replicas {:.2} s after its start", held.as_secs_f64());
        for i in 0..n {
            replicas.wait_balanced(i, true);
        }
        replicas
    }

    /// The replica whose requests come from `source` (as [`crate::load::Record::replica`] tells).
    pub fn replica_of(&self, source: Option<IpAddr>) -> Option<usize> {
        self.targets.iter().position(|t| t.source.is_some() && t.source == source)
    }

    /// The address replica `index`'s requests come from.
    pub fn source(&self, index: usize) -> IpAddr {
        self.targets[index].source.expect("a source address")
    }

    /// Waits (up to a minute) until the daemon holds one connection up to every replica and its
    /// tunnel is online; returns how long that took.
    pub fn wait_held(&self) -> Duration {
        let started = Instant::now();
        let names: Vec<String> = (0..self.servers.len()).map(|i| format!("r{i}")).collect();
        let key = self.haproxy.tunnel_addr.to_string();
        self.daemon.wait_status("every replica held", |s| {
            let servers = s["servers"].as_array().map_or(&[][..], Vec::as_slice);
            let entry = servers.iter().find(|e| e["server"].as_str().is_some_and(|u| u.contains(&key)));
            s["tunnels_online"] == 1
                && entry.is_some_and(|e| e["replicas"] == serde_json::json!(names) && e["up"] == names.len())
        });
        started.elapsed()
    }

    /// Waits (up to `WAIT_FOR_SESSIONS` + 10 s) until the balancer's public backend has replica
    /// `index` up (or down).
    pub fn wait_balanced(&self, index: usize, up: bool) {
        let within = Duration::from_secs(WAIT_FOR_SESSIONS + 10);
        let state = if up { "up" } else { "down" };
        assert!(
            self.haproxy.wait_state(haproxy::PUBLIC, index, up, within),
            "the balancer did not mark r{index} {state}: {}",
            self.haproxy.state(haproxy::PUBLIC, index)
        );
    }

    /// Kills replica `index` (SIGKILL).
    pub fn kill(&mut self, index: usize) {
        self.servers[index].process.stop();
    }

    /// Stops replica `index` with SIGTERM (it drains) and waits for it to exit.
    pub fn terminate(&mut self, index: usize) {
        let status = self.servers[index].terminate();
        assert!(status.success(), "r{index} exited with {status}: {}", self.servers[index].process.log());
    }

    /// Starts replica `index` again on its address.
    pub fn respawn(&mut self, index: usize) {
        self.servers[index].respawn();
    }
}
