//! What the whole daemon shares: its id, the tunnel table, the request log, the servers it
//! connects to (each with what its hellos said), timing, and the set of links ([`Link`]) with the
//! number of them wanted per server. Each link keeps its own state; this holds what spans them.

use crate::config::{Connections, DaemonConfig, MAX_CONNECTIONS, Replicas, ServerUrl, Timing, Transport};
use crate::link::Link;
use crate::reqlog::RequestLog;
use crate::tunnels::Tunnels;
use crate::wire::TunnelOp;
use ggrok_proto::ctl::LinkState;
use ggrok_proto::secret::Secret;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use tokio::sync::watch;

mod addresses;
mod landing;
mod status;

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
    /// The endpoints `config` names, one per server, in file order.
    pub fn all_of(config: &DaemonConfig) -> Vec<Self> {
        config
            .servers
            .iter()
            .map(|server| Self {
                server: server.clone(),
                token: config.token.clone(),
                ca_file: config.ca_file.clone(),
                transport: config.transport,
            })
            .collect()
    }
}

/// How many links to run to each server, in config order; [`crate::links`] follows it.
pub type Plan = Vec<(ServerUrl, u32)>;

/// What the server's hellos said about how many links are worth holding.
#[derive(Debug, Default, Clone, Copy)]
struct Announced {
    /// The number of workers of the latest version-2 hello.
    workers: Option<u32>,
    /// The latest hello was of version 1: the server serves a daemon over one connection.
    version_one: bool,
}

/// One server of the config, with what the daemon learned of it.
#[derive(Debug)]
struct Group {
    endpoint: Endpoint,
    announced: Announced,
    /// Every replica seen at this address, in the order seen.
    known: Vec<String>,
    /// Looking for replicas not seen yet: one link more than the known ones need.
    exploring: bool,
    /// Landings on held replicas in a row while exploring.
    misses: u32,
    /// With `replicas = "all"`: the addresses the server's name resolved to last, sorted.
    addresses: Vec<std::net::SocketAddr>,
}

impl Group {
    fn new(endpoint: Endpoint, replicas: Replicas) -> Self {
        let exploring = replicas == Replicas::All;
        Self {
            endpoint,
            announced: Announced::default(),
            known: Vec::new(),
            exploring,
            misses: 0,
            addresses: Vec::new(),
        }
    }
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
    /// The inspector's captured requests ([`crate::inspect`]).
    pub inspector: Arc<crate::inspect::Inspector>,
    /// Serialises config edits and reloads, so concurrent `add`s cannot lose each other's lines.
    pub edits: tokio::sync::Mutex<()>,
    started: Instant,
    groups: RwLock<Vec<Group>>,
    timing: RwLock<Timing>,
    connections: RwLock<Connections>,
    replicas: RwLock<Replicas>,
    /// How many links to run to each server; [`crate::links`] follows it.
    wanted: watch::Sender<Plan>,
    links: RwLock<Vec<Arc<Link>>>,
    /// Endpoints for which raw upgrades were found not to pass, with `transport = "auto"`.
    raw_fallback: Mutex<Vec<Endpoint>>,
    /// Makes "which worker and replica do the other links hold" and "hold this one" one step.
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
            inspector: crate::inspect::Inspector::new(
                config.inspect.address.is_some(),
                config.inspect.limits,
            ),
            edits: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            groups: RwLock::new(
                Endpoint::all_of(config).into_iter().map(|e| Group::new(e, config.replicas)).collect(),
            ),
            timing: RwLock::new(config.timing),
            connections: RwLock::new(config.connections),
            replicas: RwLock::new(config.replicas),
            wanted: watch::Sender::new(Vec::new()),
            links: RwLock::new(Vec::new()),
            raw_fallback: Mutex::new(Vec::new()),
            coverage: Mutex::new(()),
            version_one_warned: false.into(),
        };
        daemon.update_wanted();
        daemon
    }

    /// Where to connect to reach `server` now; `None` once it left the config.
    pub fn endpoint(&self, server: &ServerUrl) -> Option<Endpoint> {
        let groups = self.groups.read().expect("groups lock");
        groups.iter().find(|g| g.endpoint.server == *server).map(|g| g.endpoint.clone())
    }

    /// Why the servers would each pick a different port for `tcp = 0` (several servers, or every
    /// replica of one), in the words of the config error; `None` when one server picks it.
    pub fn tcp_any_port_refused(&self) -> Option<&'static str> {
        let servers = self.groups.read().expect("groups lock").len();
        crate::config::any_port_refused(servers, *self.replicas.read().expect("replicas lock"))
    }

    /// The client's domain, as the first connected server that names one said.
    pub fn domain(&self) -> Option<String> {
        self.links.read().expect("links lock").iter().find_map(|l| l.domain())
    }

    /// Every server's endpoint, in config order.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.groups.read().expect("groups lock").iter().map(|g| g.endpoint.clone()).collect()
    }

    /// Changes the servers: links to a server no longer listed stop, a new server gets links of
    /// its own, and the links to a server whose settings (token, CA, transport) changed drop their
    /// connections and dial again at once. Returns whether anything changed.
    pub fn set_endpoints(&self, endpoints: Vec<Endpoint>) -> bool {
        let mut groups = self.groups.write().expect("groups lock");
        if groups.iter().map(|g| &g.endpoint).eq(endpoints.iter()) {
            return false;
        }
        let mut old = std::mem::take(&mut *groups);
        let mut changed = Vec::new();
        for endpoint in endpoints {
            match old.iter().position(|g| g.endpoint.server == endpoint.server) {
                Some(at) => {
                    let mut group = old.swap_remove(at);
                    if group.endpoint != endpoint {
                        changed.push(endpoint.server.clone());
                        group.endpoint = endpoint;
                    }
                    groups.push(group);
                }
                None => groups.push(Group::new(endpoint, *self.replicas.read().expect("replicas lock"))),
            }
        }
        drop(groups);
        self.raw_fallback
            .lock()
            .expect("fallback lock")
            .retain(|e| self.endpoint(&e.server).as_ref() == Some(e));
        for link in self.links().iter().filter(|l| changed.contains(&l.server)) {
            link.request_reconnect();
        }
        self.update_wanted();
        true
    }

    /// Whether raw upgrades were found not to pass to `endpoint` (so `auto` dials the WebSocket).
    pub fn raw_fell_back(&self, endpoint: &Endpoint) -> bool {
        self.raw_fallback.lock().expect("fallback lock").contains(endpoint)
    }

    /// Remembers that raw upgrades do not pass to `endpoint`; returns whether this is news (to
    /// log it once, whichever link found out first).
    pub fn remember_raw_fallback(&self, endpoint: &Endpoint) -> bool {
        let mut known = self.raw_fallback.lock().expect("fallback lock");
        if known.contains(endpoint) {
            return false;
        }
        known.push(endpoint.clone());
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

    /// Changes `replicas`: `"all"` starts looking for replicas of every server, `"one"` stops.
    pub fn set_replicas(&self, replicas: Replicas) {
        *self.replicas.write().expect("replicas lock") = replicas;
        for group in self.groups.write().expect("groups lock").iter_mut() {
            (group.exploring, group.misses) = (replicas == Replicas::All, 0);
            if replicas == Replicas::One {
                group.addresses.clear();
            }
        }
        self.update_wanted();
    }

    /// A link to `server` agreed on `protocol` and the hello announced `workers` (version 2).
    pub fn server_greeted(&self, server: &ServerUrl, protocol: u32, workers: Option<u32>) {
        if let Some(group) =
            self.groups.write().expect("groups lock").iter_mut().find(|g| g.endpoint.server == *server)
        {
            group.announced =
                Announced { workers: workers.filter(|_| protocol >= 2), version_one: protocol < 2 };
        }
        self.update_wanted();
    }

    /// Links wanted on each replica of `group` (each server, when it does not name replicas).
    fn per_replica(&self, group: &Group) -> u32 {
        let setting = *self.connections.read().expect("connections lock");
        match setting {
            Connections::Fixed(n) if n > 1 && group.announced.version_one => {
                if !self.version_one_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        server = %group.endpoint.server.authority,
                        "the server speaks protocol version 1, which serves a daemon over one connection; \
                         holding 1 instead of connections = {n}"
                    );
                }
                1
            }
            _ => setting.wanted(group.announced.workers),
        }
    }

    fn update_wanted(&self) {
        let plan: Plan = self
            .groups
            .read()
            .expect("groups lock")
            .iter()
            .map(|g| {
                let replicas = g.known.len().max(g.addresses.len()).max(1) as u32;
                let held = (self.per_replica(g) * replicas).min(MAX_CONNECTIONS);
                let scout = g.exploring && !g.known.is_empty() && !g.announced.version_one;
                (g.endpoint.server.clone(), held + u32::from(scout))
            })
            .collect();
        self.wanted.send_if_modified(|w| {
            if *w == plan {
                false
            } else {
                *w = plan;
                true
            }
        });
    }

    /// Follows how many links to run to each server.
    pub fn wanted_links(&self) -> watch::Receiver<Plan> {
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

    /// Whether `link` is the first (lowest-numbered) link to its server.
    pub fn first_to_its_server(&self, link: &Link) -> bool {
        self.links().iter().filter(|l| l.server == link.server).all(|l| l.index >= link.index)
    }

    /// Sends `op` on every link whose control stream is up; returns on how many.
    pub fn send_everywhere(&self, op: &TunnelOp) -> usize {
        self.links().iter().filter(|l| l.send(op.clone())).count()
    }
}

#[cfg(test)]
mod tests;
