//! ggrok-server: the public side of ggrok.
//!
//! - [`public`]: the public listeners: connections, limits on waiting ones, routing by `Host` and
//!   forwarding through a tunnel;
//! - [`tunnel`]: the tunnel endpoint: ggrokd's handshake, its sessions (one per connection), the
//!   daemons they belong to and the registry of which daemon serves which host;
//! - [`access`]: tunnels' access rules (allowed and denied addresses, basic authentication);
//! - [`ops`]: what operators see: metrics, the admin listener, systemd notifications;
//! - [`workers`]: the worker threads, each a current-thread runtime with its own listeners;
//! - [`config`], [`tls`], [`cli`]: the configuration, certificates and command line;
//! - [`acme`]: certificates from an ACME CA (`[acme]`), ordered and renewed in the background.
//!
//! One listener serves public HTTP and, on the tunnel path, ggrokd's connections; with `[tls]`, a
//! second one does the same over HTTPS. With `[admin]`, a third serves `/metrics` and `/healthz`.
//! [`run`] binds them from the configuration (port 0 works) and serves until a shutdown token is
//! cancelled.

#![forbid(unsafe_code)]

pub mod access;
pub mod acme;
pub mod cli;
pub mod config;
pub mod ops;
pub mod public;
pub mod reload;
pub mod tls;
pub mod tunnel;
pub mod workers;

use config::ServerConfig;
use ops::metrics::{HostMeter, Metrics};
use public::pending::{LogLimiter, Pending};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use tunnel::daemons::Daemons;
use tunnel::registry::Registry;

/// How long closing tunnel sessions may take at the end of shutdown.
const SESSION_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often hosts long offline are forgotten.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Everything the request handlers share, across workers.
pub struct State {
    /// The validated configuration, replaced whole by a reload ([`reload`]); read it with
    /// [`State::config`].
    config: arc_swap::ArcSwap<ServerConfig>,
    /// The certificates the HTTPS listener presents, replaced by a reload.
    pub certificates: Option<Arc<tls::Certificates>>,
    /// ACME's challenges and names, with `[acme]`.
    pub acme: Option<Arc<acme::Acme>>,
    /// Host → the daemon serving it, and the host's metrics.
    pub registry: Registry<tunnel::daemons::Daemon, Arc<HostMeter>>,
    /// Public TCP port → the daemon serving it, and the ports' sockets.
    pub ports: tunnel::ports::Ports<tunnel::daemons::Daemon>,
    /// The connected daemons and their sessions.
    pub daemons: Daemons,
    /// The memory answers on their way may hold; sets every tunnel connection's stream window.
    pub budget: Arc<ggrok_proto::budget::Budget>,
    /// What flows through the server.
    pub metrics: Arc<Metrics>,
    /// Whether `/healthz` may say ok yet (`[cluster] wait_for_sessions`).
    pub readiness: ops::ready::Readiness,
    /// Cancelled on shutdown: stop accepting, finish public requests in flight.
    pub shutdown: CancellationToken,
    /// Cancelled once public requests are done (or the grace period is over): close sessions.
    pub close_sessions: CancellationToken,
    /// Public connections and upgraded streams, awaited on shutdown.
    pub public: TaskTracker,
    /// Tunnel sessions.
    pub sessions: TaskTracker,
    /// The port the HTTPS listener is bound to, for redirects.
    pub https_port: Option<u16>,
    /// The port the plain listener is bound to, for public URLs.
    pub http_port: u16,
    /// How many workers serve (the `threads` setting, resolved).
    pub workers: u32,
    /// Connections that have not yet sent a request head.
    pub pending: Arc<Pending>,
    /// Keeps limit-hit log lines to one a second.
    pub limit_log: LogLimiter,
    /// Access rules' server-wide state: failed logins by address, the hash checker.
    pub access: access::Gate,
    /// Daemons standing by for hosts taken from them.
    pub standby: tunnel::standby::Standby,
    /// Every version this build speaks, read once at start; `GGROK_PROTOCOL_MAX` lowers the
    /// newest, so tests can play an older server.
    protocols: std::ops::RangeInclusive<u32>,
    next_session: AtomicU64,
    next_anonymous: AtomicU64,
}

impl State {
    /// The configuration in force now. Hold it only briefly (a reload replaces it); clone the
    /// `Arc` ([`State::config_now`]) to keep it across an await.
    pub fn config(&self) -> arc_swap::Guard<Arc<ServerConfig>> {
        self.config.load()
    }

    /// The configuration in force now, to keep.
    pub fn config_now(&self) -> Arc<ServerConfig> {
        self.config.load_full()
    }

    fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn next_anonymous_id(&self) -> u64 {
        self.next_anonymous.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The public URL of `host` (a host or `*.` pattern): as `public_url` says when set; else
    /// `https://` with `[tls]`, else `http://`, with the listener's port unless it is the
    /// scheme's default.
    pub fn public_url(&self, host: &str) -> String {
        if let Some(public) = self.config().public_url {
            return public.url(host);
        }
        match self.https_port {
            Some(443) => format!("https://{host}"),
            Some(port) => format!("https://{host}:{port}"),
            None if self.http_port == 80 => format!("http://{host}"),
            None => format!("http://{host}:{}", self.http_port),
        }
    }

    /// The tunnel protocol versions this server accepts.
    pub fn protocol_versions(&self) -> std::ops::RangeInclusive<u32> {
        self.protocols.clone()
    }
}

/// Binds the listeners of `config` and serves them on its worker threads (this task's runtime is
/// worker 0) until `shutdown` is cancelled. Then it stops accepting, lets requests in flight
/// finish for up to the configured grace period, and closes the tunnel sessions (HTTP/2 GOAWAY),
/// so daemons reconnect on their own to the next server.
///
/// With a `source`, SIGHUP reloads the configuration from it ([`reload`]).
pub async fn run(
    config: ServerConfig,
    source: Option<reload::Source>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let certificates = match &config.tls {
        Some(tls) => Some(Arc::new(tls::Certificates::load(&tls.certificates, config.acme.is_some())?)),
        None => None,
    };
    let acme = match (&config.acme, &certificates) {
        (Some(settings), Some(certificates)) => Some(Arc::new(acme::Acme::start(settings, certificates)?)),
        _ => None,
    };
    let listeners = workers::Listeners::bind(&config, certificates.as_ref()).await?;
    let limits = &config.limits;
    let pending = Pending::new(limits.max_pending_connections, limits.max_pending_per_ip);
    let metrics = Metrics::new();
    let meters = metrics.clone();
    let workers = workers::count(config.threads);
    let budget = ggrok_proto::budget::Budget::new(config.limits.buffer_memory);
    let readiness = ops::ready::Readiness::new(config.cluster.wait_for_sessions);
    // TCP tunnel ports listen where the public port does.
    let ports = tunnel::ports::Ports::new(config.listen.ip(), tunnel::registry::OFFLINE_GRACE);
    let state = Arc::new(State {
        config: arc_swap::ArcSwap::from_pointee(config),
        certificates,
        acme,
        registry: Registry::with_meters(tunnel::registry::OFFLINE_GRACE, move |host| meters.meter(host)),
        ports,
        daemons: Daemons::default(),
        budget,
        metrics,
        readiness,
        shutdown: shutdown.clone(),
        close_sessions: CancellationToken::new(),
        public: TaskTracker::new(),
        sessions: TaskTracker::new(),
        https_port: listeners.https.as_ref().and_then(|(l, _)| l.local_addr().ok()).map(|a| a.port()),
        http_port: listeners.plain.local_addr()?.port(),
        workers,
        pending,
        limit_log: LogLimiter::default(),
        access: access::Gate::default(),
        standby: tunnel::standby::Standby::default(),
        protocols: *ggrok_proto::version::SUPPORTED.start()..=ggrok_proto::version::newest_from_env(),
        next_session: AtomicU64::new(0),
        next_anonymous: AtomicU64::new(0),
    });
    tokio::spawn(purge_offline_hosts(state.clone()));
    if state.certificates.is_some() {
        tokio::spawn(tls::expiry::watch(state.clone()));
    }
    if state.acme.is_some() {
        tokio::spawn(acme::supervise(state.clone()));
    }
    if let Some(source) = source {
        tokio::spawn(reload::on_sighup(state.clone(), source));
    }
    // Every worker listens before the server says it does. Worker threads keep their runtimes
    // (and the tasks on them) until everything is closed.
    let finished = CancellationToken::new();
    let mut others = workers::spawn(&state, &listeners.plain, listeners.https.as_ref(), finished.clone())?;
    let path = state.config().tunnel_path.clone();
    let plain_addr = listeners.plain.local_addr()?;
    info!("listening on {plain_addr} (http, tunnel endpoint {path})");
    if let Some((https, _)) = &listeners.https {
        info!("listening on {} (https, tunnel endpoint {path})", https.local_addr()?);
    }
    // Logged after the public addresses, which tools read from the first "listening on" line.
    let admin_done = CancellationToken::new();
    if let Some(admin) = listeners.admin {
        info!("admin listening on {} (/metrics, /healthz, /certificates)", admin.local_addr()?);
        tokio::spawn(ops::admin::serve(state.clone(), admin, admin_done.clone()));
    }
    let _stop_admin = admin_done.drop_guard();
    if workers > 1 {
        info!(workers, "serving on {workers} worker threads");
    }
    ops::notify::ready(state.clone(), plain_addr);
    let https = listeners.https.map(|(listener, tls)| (listener, Some(tls)));
    workers::serve(state.clone(), listeners.plain, https).await;
    others.accepting_done().await;
    state.public.close();
    let grace = state.config().shutdown_grace;
    if !state.public.is_empty() {
        info!("waiting up to {:.1}s for requests in flight", grace.as_secs_f64());
    }
    if tokio::time::timeout(grace, state.public.wait()).await.is_err() {
        warn!("shutdown grace period over; cutting the remaining requests");
    }
    state.close_sessions.cancel();
    state.sessions.close();
    let _ = tokio::time::timeout(SESSION_CLOSE_TIMEOUT, state.sessions.wait()).await;
    finished.cancel();
    others.join();
    info!("stopped");
    Ok(())
}

async fn purge_offline_hosts(state: Arc<State>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PURGE_INTERVAL) => {
                state.registry.purge_offline();
                state.ports.purge_offline();
                state.access.failures.purge(std::time::Instant::now());
            }
            _ = state.shutdown.cancelled() => return,
        }
    }
}
