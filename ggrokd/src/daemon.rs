//! What the whole daemon shares: the tunnel table, the server endpoint, the state of the link to
//! the server, and the way to send control messages on the current connection.

use crate::config::{DaemonConfig, ServerUrl, Timing};
use crate::local::LocalClient;
use crate::reqlog::RequestLog;
use crate::tunnels::{TunnelState, Tunnels, unix_now};
use ggrok_proto::control::ClientMessage;
use ggrok_proto::ctl::{StatusInfo, TimedError};
use ggrok_proto::secret::Secret;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, mpsc};

/// Where to connect and with which token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The server's tunnel endpoint.
    pub server: ServerUrl,
    /// The token, if any.
    pub token: Option<Secret>,
    /// CA certificates for `wss://` instead of the system roots.
    pub ca_file: Option<PathBuf>,
}

pub use ggrok_proto::ctl::LinkState;

#[derive(Debug)]
struct Link {
    state: LinkState,
    since: u64,
    attempt: u32,
    last_error: Option<TimedError>,
    next_retry: Option<f64>,
}

/// The daemon's shared state.
pub struct Daemon {
    /// The config file, re-read on reload and edited by add/remove.
    pub config_path: PathBuf,
    /// The tunnels.
    pub tunnels: Tunnels,
    /// The pooled client toward local services.
    pub local: LocalClient,
    /// Recent requests across all tunnels, for `ggrokctl logs`.
    pub requests: Arc<RequestLog>,
    /// Serialises config edits and reloads, so concurrent `add`s cannot lose each other's lines.
    pub edits: tokio::sync::Mutex<()>,
    started: Instant,
    endpoint: RwLock<Endpoint>,
    timing: RwLock<Timing>,
    link: Mutex<Link>,
    /// The current control stream's sender, with the generation that attached it.
    control: Mutex<Option<(u64, mpsc::UnboundedSender<ClientMessage>)>>,
    control_generation: std::sync::atomic::AtomicU64,
    reconnect: Notify,
}

impl Daemon {
    /// The state for `config`, every tunnel connecting.
    pub fn new(config: &DaemonConfig) -> Self {
        Self {
            config_path: config.path.clone(),
            tunnels: Tunnels::new(&config.tunnels),
            local: LocalClient::default(),
            requests: Arc::new(RequestLog::new(config.request_log)),
            edits: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            endpoint: RwLock::new(Endpoint {
                server: config.server.clone(),
                token: config.token.clone(),
                ca_file: config.ca_file.clone(),
            }),
            timing: RwLock::new(config.timing),
            link: Mutex::new(Link {
                state: LinkState::Connecting,
                since: unix_now(),
                attempt: 0,
                last_error: None,
                next_retry: None,
            }),
            control: Mutex::new(None),
            control_generation: 0.into(),
            reconnect: Notify::new(),
        }
    }

    /// Where to connect now.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint.read().expect("endpoint lock").clone()
    }

    /// Changes the endpoint; if it differs, the current connection is dropped and a new one made
    /// at once. Returns whether it changed.
    pub fn set_endpoint(&self, endpoint: Endpoint) -> bool {
        let mut current = self.endpoint.write().expect("endpoint lock");
        if *current == endpoint {
            return false;
        }
        *current = endpoint;
        drop(current);
        self.reconnect.notify_one();
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

    /// Resolves when a reconnect was asked for (the endpoint changed).
    pub async fn reconnect_requested(&self) {
        self.reconnect.notified().await
    }

    fn update_link(&self, f: impl FnOnce(&mut Link)) {
        let mut link = self.link.lock().expect("link lock");
        let before = link.state;
        f(&mut link);
        if link.state != before {
            link.since = unix_now();
        }
    }

    /// A connection attempt starts; `attempt` counts failures since the last healthy connection.
    pub fn link_connecting(&self, attempt: u32) {
        self.update_link(|l| {
            l.state = LinkState::Connecting;
            l.attempt = attempt;
            l.next_retry = None;
        });
    }

    /// The connection is up.
    pub fn link_connected(&self) {
        self.update_link(|l| {
            l.state = LinkState::Connected;
            l.next_retry = None;
        });
    }

    /// The connection failed or was lost; the next attempt is due at `next_retry`.
    pub fn link_down(&self, error: String, attempt: u32, next_retry: SystemTime) {
        self.update_link(|l| {
            l.state = LinkState::Disconnected;
            l.attempt = attempt;
            l.last_error = Some(TimedError { at: unix_now(), message: error });
            l.next_retry = next_retry.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs_f64());
        });
    }

    /// The state of the link.
    pub fn link_state(&self) -> LinkState {
        self.link.lock().expect("link lock").state
    }

    /// The daemon as `ggrokctl status` shows it, without its tunnels' counters (the caller adds
    /// them when wanted: computing percentiles is not free).
    pub fn status(&self) -> StatusInfo {
        let link = self.link.lock().expect("link lock");
        let tunnels = self.tunnels.all();
        StatusInfo {
            daemon_version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            config: self.config_path.display().to_string(),
            server: self.endpoint().server.url,
            connection: link.state,
            since: link.since,
            attempt: link.attempt,
            last_error: link.last_error.clone(),
            next_retry: link.next_retry,
            tunnels_online: tunnels.iter().filter(|t| t.state() == TunnelState::Online).count(),
            tunnels_total: tunnels.len(),
            tunnels: Vec::new(),
            connections: Vec::new(),
        }
    }

    /// The control stream of the current connection is up: messages sent from now on go there.
    /// Returns the generation to pass to [`Daemon::detach_control`].
    pub fn attach_control(&self, sender: mpsc::UnboundedSender<ClientMessage>) -> u64 {
        let generation = self.control_generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        *self.control.lock().expect("control lock") = Some((generation, sender));
        generation
    }

    /// A control stream ended: forget its sender, unless a newer stream has attached since.
    /// `None` detaches whatever is attached (shutdown), which ends the current control stream.
    pub fn detach_control(&self, generation: Option<u64>) {
        let mut control = self.control.lock().expect("control lock");
        if generation.is_none() || control.as_ref().map(|(g, _)| *g) == generation {
            *control = None;
        }
    }

    /// Sends a control message on the current connection; false when there is none.
    pub fn send_control(&self, message: ClientMessage) -> bool {
        match self.control.lock().expect("control lock").as_ref() {
            Some((_, sender)) => sender.send(message).is_ok(),
            None => false,
        }
    }
}
