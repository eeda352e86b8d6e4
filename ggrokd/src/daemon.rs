//! What the whole daemon shares: its id, the tunnel table, the request log, the server endpoint
//! and timing, and the set of links ([`Link`]) with the number of them wanted. Each link keeps its
//! own state; this holds what spans them.

use crate::config::{Connections, DaemonConfig, ServerUrl, Timing, Transport};
use crate::coverage;
use crate::link::Link;
use crate::reqlog::RequestLog;
use crate::tunnels::{TunnelState, Tunnels};
use crate::wire::TunnelOp;
use ggrok_proto::ctl::{LinkState, StatusInfo};
use ggrok_proto::secret::Secret;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use tokio::sync::watch;

/// Where to connect, with which token, over what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The server's tunnel endpoint.
    pub server: ServerUrl,
    /// The token, if any.
    pub token: Option<Secret>,
    /// CA certificates for `wss://` instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// What the tunnel's HTTP/2 runs on.
    pub transport: Transport,
}

impl Endpoint {
    /// The endpoint `config` names.
    pub fn of(config: &DaemonConfig) -> Self {
        Self {
            server: config.server.clone(),
            token: config.token.clone(),
            ca_file: config.ca_file.clone(),
            transport: config.transport,
        }
    }
}

/// What the server's hellos said about how many links are worth holding.
#[derive(Debug, Default, Clone, Copy)]
struct Announced {
    /// The number of workers of the latest version-2 hello.
    workers: Option<u32>,
    /// The latest hello was of version 1: the server serves a daemon over one connection.
    version_one: bool,
}

/// The daemon's shared state.
pub struct Daemon {
    /// This daemon's identity, sent in version-2 hellos ([`crate::identity`]).
    pub id: String,
    /// The config file, re-read on reload and edited by add/remove.
    pub config_path: PathBuf,
    /// The tunnels.
    pub tunnels: Tunnels,
    /// Recent requests across all tunnels, for `ggrokctl logs`.
    pub requests: Arc<RequestLog>,
    /// The buffer budget (`buffer_memory`): sets the stream window every connection grants, from
    /// the request bodies on their way to local services.
    pub budget: Arc<ggrok_proto::budget::Budget>,
    /// Serialises config edits and reloads, so concurrent `add`s cannot lose each other's lines.
    pub edits: tokio::sync::Mutex<()>,
    started: Instant,
    endpoint: RwLock<Endpoint>,
    timing: RwLock<Timing>,
    connections: RwLock<Connections>,
    announced: Mutex<Announced>,
    /// How many links to run; [`crate::links`] follows it.
    wanted: watch::Sender<u32>,
    links: RwLock<Vec<Arc<Link>>>,
    /// The endpoint for which raw upgrades were found not to pass, with `transport = "auto"`.
    raw_fallback: Mutex<Option<Endpoint>>,
    /// Makes "which worker do the other links hold" and "hold this one" one step.
    coverage: Mutex<()>,
    version_one_warned: AtomicBool,
}

impl Daemon {
    /// The state for `config`, every tunnel connecting, no link yet; `id` is the daemon's id.
    pub fn new(config: &DaemonConfig, id: String) -> Self {
        let daemon = Self {
            id,
            config_path: config.path.clone(),
            tunnels: Tunnels::new(&config.tunnels),
            requests: Arc::new(RequestLog::new(config.request_log)),
            budget: ggrok_proto::budget::Budget::new(config.buffer_memory),
            edits: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            endpoint: RwLock::new(Endpoint::of(config)),
            timing: RwLock::new(config.timing),
            connections: RwLock::new(config.connections),
            announced: Mutex::new(Announced::default()),
            wanted: watch::Sender::new(1),
            links: RwLock::new(Vec::new()),
            raw_fallback: Mutex::new(None),
            coverage: Mutex::new(()),
            version_one_warned: false.into(),
        };
        daemon.update_wanted();
        daemon
    }

    /// Where to connect now.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint.read().expect("endpoint lock").clone()
    }

    /// Changes the endpoint; if it differs, every link drops its connection and dials again at
    /// once, and a raw-upgrade fallback learned for the old endpoint is forgotten. Returns whether
    /// it changed.
    pub fn set_endpoint(&self, endpoint: Endpoint) -> bool {
        let mut current = self.endpoint.write().expect("endpoint lock");
        if *current == endpoint {
            return false;
        }
        *current = endpoint;
        drop(current);
        *self.raw_fallback.lock().expect("fallback lock") = None;
        for link in self.links() {
            link.request_reconnect();
        }
        true
    }

    /// Whether raw upgrades were found not to pass to `endpoint` (so `auto` dials the WebSocket).
    pub fn raw_fell_back(&self, endpoint: &Endpoint) -> bool {
        self.raw_fallback.lock().expect("fallback lock").as_ref() == Some(endpoint)
    }

    /// Remembers that raw upgrades do not pass to `endpoint`; returns whether this is news (to
    /// log it once, whichever link found out first).
    pub fn remember_raw_fallback(&self, endpoint: &Endpoint) -> bool {
        let mut known = self.raw_fallback.lock().expect("fallback lock");
        if known.as_ref() == Some(endpoint) {
            return false;
        }
        *known = Some(endpoint.clone());
        true
    }

    /// Keepalive, reconnect and shutdown timing.
    pub fn timing(&self) -> Timing {
        *self.timing.read().expect("timing lock")
    }

    /// Changes the timing; it applies from the next connection on.
    pub fn set_timing(&self, timing: Timing) {
        *self.timing.write().expect("timing lock") = timing;
    }

    /// Changes `connections`; links are started or stopped to match.
    pub fn set_connections(&self, connections: Connections) {
        *self.connections.write().expect("connections lock") = connections;
        self.update_wanted();
    }

    /// A link agreed on `protocol` and the server's hello announced `workers` (version 2).
    pub fn server_greeted(&self, protocol: u32, workers: Option<u32>) {
        *self.announced.lock().expect("announced lock") =
            Announced { workers: workers.filter(|_| protocol >= 2), version_one: protocol < 2 };
        self.update_wanted();
    }

    fn update_wanted(&self) {
        let setting = *self.connections.read().expect("connections lock");
        let announced = *self.announced.lock().expect("announced lock");
        let wanted = match setting {
            Connections::Fixed(n) if n > 1 && announced.version_one => {
                if !self.version_one_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "the server speaks protocol version 1, which serves a daemon over one connection; \
                         holding 1 instead of connections = {n}"
                    );
                }
                1
            }
            _ => setting.wanted(announced.workers),
        };
        self.wanted.send_if_modified(|w| std::mem::replace(w, wanted) != wanted);
    }

    /// Follows how many links to run.
    pub fn wanted_links(&self) -> watch::Receiver<u32> {
        self.wanted.subscribe()
    }

    /// Links, by index.
    pub fn links(&self) -> Vec<Arc<Link>> {
        self.links.read().expect("links lock").clone()
    }

    /// A link was started.
    pub fn add_link(&self, link: Arc<Link>) {
        let mut links = self.links.write().expect("links lock");
        links.retain(|l| l.index != link.index);
        links.push(link);
        links.sort_by_key(|l| l.index);
    }

    /// Link `index` was stopped.
    pub fn remove_link(&self, index: u32) {
        self.links.write().expect("links lock").retain(|l| l.index != index);
    }

    /// Whether any link is connected.
    pub fn any_connected(&self) -> bool {
        self.links().iter().any(|l| l.state() == LinkState::Connected)
    }

    /// Sends `op` on every link whose control stream is up; returns on how many.
    pub fn send_everywhere(&self, op: &TunnelOp) -> usize {
        self.links().iter().filter(|l| l.send(op.clone())).count()
    }

    /// Link `link` landed on `worker` of `workers`: whether it keeps it (and now holds it) or
    /// should dial again to land on a worker no other link holds ([`coverage`]).
    pub fn keep_worker(&self, link: &Link, worker: u32, workers: u32) -> bool {
        let _step = self.coverage.lock().expect("coverage lock");
        let others: Vec<u32> =
            self.links().iter().filter(|l| l.index != link.index).filter_map(|l| l.worker()).collect();
        if coverage::should_redial(worker, workers, &others, link.redials()) {
            return false;
        }
        link.hold_worker(worker);
        true
    }

    /// The daemon as `ggrokctl status` shows it, with its connections but without its tunnels'
    /// counters (the caller adds them when wanted: computing percentiles is not free).
    pub fn status(&self) -> StatusInfo {
        let server = self.endpoint().server.url;
        let connections: Vec<_> = self.links().iter().map(|l| l.info(&server)).collect();
        // The summary: connected when any link is (since the first connected one), else the
        // first link's state; the most recent error of any.
        let summary = connections.iter().find(|c| c.state == LinkState::Connected).or(connections.first());
        let last_error =
            connections.iter().filter_map(|c| c.last_error.as_ref()).max_by_key(|e| e.at).cloned();
        let tunnels = self.tunnels.all();
        StatusInfo {
            daemon_version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            config: self.config_path.display().to_string(),
            server,
            connection: summary.map_or(LinkState::Connecting, |c| c.state),
            since: summary.map_or_else(crate::tunnels::unix_now, |c| c.since),
            attempt: summary.map_or(0, |c| c.attempt),
            last_error,
            next_retry: summary.and_then(|c| c.next_retry),
            tunnels_online: tunnels.iter().filter(|t| t.state() == TunnelState::Online).count(),
            tunnels_total: tunnels.len(),
            tunnels: Vec::new(),
            connections,
            buffers: Some(ggrok_proto::ctl::BufferInfo {
                limit: self.budget.limit(),
                stream_window: self.budget.window(),
                bodies_in_flight: self.budget.open(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use tokio_util::sync::CancellationToken;

    fn daemon(extra: &str) -> Daemon {
        let text = format!("server = \"ws://t\"\n{extra}");
        Daemon::new(&DaemonConfig::parse(Path::new("g.toml"), &text).unwrap(), "d".into())
    }

    #[test]
    fn auto_starts_one_then_follows_the_hello() {
        let d = daemon("");
        assert_eq!(*d.wanted_links().borrow(), 1, "connection 0 first");
        d.server_greeted(2, Some(3));
        assert_eq!(*d.wanted_links().borrow(), 3);
        d.server_greeted(2, Some(12));
        assert_eq!(*d.wanted_links().borrow(), 4, "at most 4");
        d.server_greeted(1, None);
        assert_eq!(*d.wanted_links().borrow(), 1, "a version-1 server");
    }

    #[test]
    fn a_fixed_number_starts_at_once_but_not_against_version_one() {
        let d = daemon("connections = 3\n");
        assert_eq!(*d.wanted_links().borrow(), 3);
        d.server_greeted(2, Some(1));
        assert_eq!(*d.wanted_links().borrow(), 3, "fixed: whatever the workers");
        d.server_greeted(1, None);
        assert_eq!(*d.wanted_links().borrow(), 1);
        d.server_greeted(2, Some(1));
        assert_eq!(*d.wanted_links().borrow(), 3, "the server was upgraded");
        d.set_connections(Connections::Fixed(2));
        assert_eq!(*d.wanted_links().borrow(), 2, "a reload");
    }

    #[test]
    fn a_link_on_a_held_worker_redials_while_another_is_free() {
        let d = daemon("");
        let links: Vec<_> = (0..3).map(|i| Arc::new(Link::new(i, CancellationToken::new()))).collect();
        for l in &links {
            d.add_link(l.clone());
            l.connected("websocket", 2);
        }
        assert!(d.keep_worker(&links[0], 1, 3));
        assert!(!d.keep_worker(&links[1], 1, 3), "worker 1 is link 0's; 0 and 2 are free");
        assert!(d.keep_worker(&links[1], 0, 3));
        for _ in 0..coverage::MAX_REDIALS {
            links[2].count_redial();
        }
        assert!(d.keep_worker(&links[2], 1, 3), "out of redials: keep what it got");
        assert_eq!(links[2].worker(), Some(1));
    }

    #[test]
    fn the_summary_is_connected_when_any_link_is() {
        let d = daemon("");
        assert_eq!(d.status().connection, LinkState::Connecting, "no link yet");
        let links: Vec<_> = (0..2).map(|i| Arc::new(Link::new(i, CancellationToken::new()))).collect();
        for l in &links {
            d.add_link(l.clone());
        }
        links[0].down("refused".into(), 3, std::time::SystemTime::now());
        let status = d.status();
        assert_eq!((status.connection, status.attempt), (LinkState::Disconnected, 3));
        assert_eq!(status.connections.len(), 2);
        links[1].connected("raw", 2);
        let status = d.status();
        assert_eq!(status.connection, LinkState::Connected);
        assert_eq!(status.last_error.unwrap().message, "refused");
        d.remove_link(1);
        assert_eq!(d.status().connections.len(), 1);
    }

    #[test]
    fn the_raw_fallback_is_kept_per_endpoint() {
        let d = daemon("");
        let endpoint = d.endpoint();
        assert!(!d.raw_fell_back(&endpoint));
        assert!(d.remember_raw_fallback(&endpoint));
        assert!(!d.remember_raw_fallback(&endpoint), "news only once");
        assert!(d.raw_fell_back(&endpoint));
        let mut other = endpoint.clone();
        other.server = ServerUrl::parse("ws://elsewhere").unwrap();
        assert!(d.set_endpoint(other.clone()));
        assert!(!d.raw_fell_back(&other), "a new endpoint is tried raw again");
        assert!(!d.raw_fell_back(&endpoint), "forgotten on change");
    }
}
