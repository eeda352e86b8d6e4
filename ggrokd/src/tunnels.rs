//! The daemon's tunnel table: which local service serves which public host, each tunnel's state
//! with the server, and its counters.

use crate::config::{Public, TunnelSpec};
use crate::stats::TunnelStats;
use crate::wire::TunnelOp;
use ggrok_proto::ctl::{HostHeader, TimedError, TunnelInfo, TunnelStatus};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

use crate::claims::Claims;
pub use crate::claims::TunnelState;

/// One tunnel: its spec, state and counters. Requests in flight hold an `Arc` of it, so replacing
/// it in the table (reload) never disturbs them.
#[derive(Debug)]
pub struct Tunnel {
    /// What the configuration says.
    pub spec: TunnelSpec,
    saved: AtomicBool,
    claims: Mutex<Claims>,
    state: watch::Sender<TunnelState>,
    /// Traffic counters, shared with its requests in flight and kept when a reload replaces it.
    pub stats: Arc<TunnelStats>,
    last_error: Mutex<Option<TimedError>>,
    /// Whether the most recent request reached the local service.
    last_ok: AtomicBool,
    /// `tcp = 0`: a claim for any port is under way on some connection; the others wait for its
    /// answer rather than be granted ports of their own.
    asking_any_port: AtomicBool,
    /// The public URL each connection's server gave, by connection.
    url: Mutex<std::collections::BTreeMap<u32, String>>,
    /// The public URL given last, on any connection.
    latest_url: Mutex<Option<String>>,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Tunnel {
    fn new(spec: TunnelSpec, saved: bool, claims: Claims, stats: Arc<TunnelStats>) -> Self {
        Self {
            spec,
            saved: saved.into(),
            state: watch::Sender::new(claims.state()),
            claims: Mutex::new(claims),
            stats,
            last_error: Mutex::new(None),
            last_ok: true.into(),
            url: Mutex::default(),
            latest_url: Mutex::default(),
            asking_any_port: false.into(),
        }
    }

    /// The host or pattern, as the server knows it.
    pub fn host(&self) -> String {
        self.spec.host.to_string()
    }

    /// Whether it is in the config file.
    pub fn is_saved(&self) -> bool {
        self.saved.load(Ordering::Relaxed)
    }

    /// It was written to the config file.
    pub fn mark_saved(&self) {
        self.saved.store(true, Ordering::Relaxed);
    }

    /// The current state, over all connections.
    pub fn state(&self) -> TunnelState {
        self.state.borrow().clone()
    }

    /// Changes the claims and publishes the new state; returns the state before and after.
    fn update(&self, change: impl FnOnce(&mut Claims)) -> (TunnelState, TunnelState) {
        let mut claims = self.claims.lock().expect("claims lock");
        let before = claims.state();
        change(&mut claims);
        let after = claims.state();
        if after != before {
            self.state.send_replace(after.clone());
        }
        (before, after)
    }

    /// The claim to send for this tunnel on a connection, or `None` when it must not be claimed
    /// (displaced); see [`Claims::takeover`].
    pub fn claim(&self) -> Option<TunnelOp> {
        let takeover = self.claims.lock().expect("claims lock").takeover()?;
        if self.spec.host == Public::Tcp(0) && self.asking_any_port.swap(true, Ordering::SeqCst) {
            return None;
        }
        Some(TunnelOp::Claim { host: self.host(), takeover, access: self.spec.access.clone() })
    }

    /// The tunnel this daemon was displaced from is free again: the claim that takes it back
    /// without taking it from anyone, when it was displaced.
    pub fn stand_in(&self) -> Option<TunnelOp> {
        let mut was = false;
        self.update(|c| was = c.stand_in());
        if was { self.claim() } else { None }
    }

    /// Connection `link` got the claim accepted. Returns whether the tunnel just came online.
    pub fn claimed(&self, link: u32) -> bool {
        let (before, after) = self.update(|c| c.claimed(link));
        before != TunnelState::Online && after == TunnelState::Online
    }

    /// Connection `link` got the claim refused. Returns whether the state changed (a new refusal
    /// or a new reason), so that a refusal seen on every connection is reported once.
    pub fn refused(&self, link: u32, reason: String) -> bool {
        self.asking_any_port.store(false, Ordering::SeqCst);
        let (before, after) = self.update(|c| c.refused(link, reason));
        before != after
    }

    /// Another ggrokd took the tunnel. Returns whether it was not displaced before.
    pub fn displaced(&self, reason: String) -> bool {
        let (before, _) = self.update(|c| c.displaced(reason));
        !matches!(before, TunnelState::Displaced(_))
    }

    /// Connection `link` is down. Returns whether the tunnel went offline.
    pub fn link_down(&self, link: u32) -> bool {
        self.asking_any_port.store(false, Ordering::SeqCst);
        let (before, after) = self.update(|c| c.link_down(link));
        before == TunnelState::Online && after != TunnelState::Online
    }

    /// Makes the tunnel fresh again (the user asked anew for it). Returns whether it needs
    /// claiming (it is not online).
    pub fn refresh(&self) -> bool {
        let (_, after) = self.update(Claims::refresh);
        after != TunnelState::Online
    }

    /// Follows state changes.
    pub fn watch_state(&self) -> watch::Receiver<TunnelState> {
        self.state.subscribe()
    }

    /// Records that the local service answered.
    pub fn record_ok(&self) {
        self.last_ok.store(true, Ordering::Relaxed);
    }

    /// Records a failure to reach the local service.
    pub fn record_error(&self, message: String) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        self.last_ok.store(false, Ordering::Relaxed);
        *self.last_error.lock().expect("last_error lock") = Some(TimedError { at: unix_now(), message });
    }

    /// The tunnel as `ggrokctl list` and `status` show it.
    pub fn info(&self) -> TunnelInfo {
        let stats = &self.stats;
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        let latency = stats.latency.percentiles();
        let ms = |micros: u32| f64::from(micros) / 1e3;
        let (state, reason) = match self.state() {
            TunnelState::Connecting => (TunnelStatus::Connecting, None),
            TunnelState::Online if !self.last_ok.load(Ordering::Relaxed) => (TunnelStatus::Error, None),
            TunnelState::Online => (TunnelStatus::Online, None),
            TunnelState::Refused(reason) => (TunnelStatus::Refused, Some(reason)),
            TunnelState::Displaced(reason) => (TunnelStatus::Displaced, Some(reason)),
        };
        TunnelInfo {
            host: self.spec.host.to_string(),
            local: self.spec.local.to_string(),
            host_header: if self.spec.rewrite_host { HostHeader::Rewrite } else { HostHeader::Keep },
            state,
            reason,
            requests: load(&stats.requests),
            errors: load(&stats.errors),
            status_4xx: load(&stats.status_4xx),
            status_5xx: load(&stats.status_5xx),
            bytes_in: load(&stats.bytes_in),
            bytes_out: load(&stats.bytes_out),
            active: load(&stats.active),
            p50_ms: latency.map(|p| ms(p.p50)),
            p99_ms: latency.map(|p| ms(p.p99)),
            last_error: self.last_error.lock().expect("last_error lock").clone(),
            saved: self.is_saved(),
            access: ggrok_proto::ctl::AccessInfo::of(&self.spec.access),
            url: self.url(),
        }
    }

    /// The public URL the servers gave: the one given on the lowest-numbered connection that has
    /// the tunnel now (servers of one daemon serve the same host; a stable pick when they name it
    /// differently), else the one given last.
    pub fn url(&self) -> Option<String> {
        // One lock at a time.
        let urls = self.url.lock().expect("url lock").clone();
        let claims = self.claims.lock().expect("claims lock").clone();
        let online = urls.into_iter().find(|(link, _)| claims.online_on(*link)).map(|(_, url)| url);
        online.or_else(|| self.latest_url.lock().expect("url lock").clone())
    }

    /// Keeps the public URL a server gave on connection `link` when it accepted the claim, or
    /// later when it changed (the server's `public_url` was reloaded).
    pub fn set_url(&self, link: u32, url: Option<String>) {
        if let Some(url) = url {
            *self.latest_url.lock().expect("url lock") = Some(url.clone());
            self.url.lock().expect("url lock").insert(link, url);
        }
    }
}

/// Tunnels by host pattern, exact hosts looked up before wildcards.
#[derive(Default)]
pub struct Tunnels {
    by_host: RwLock<HashMap<String, Arc<Tunnel>>>,
}

impl Tunnels {
    /// A table holding `specs` (from the config file), all connecting.
    pub fn new(specs: &[TunnelSpec]) -> Self {
        let table = Self::default();
        for spec in specs {
            table.insert(spec.clone(), true);
        }
        table
    }

    /// Adds a tunnel; `None` if its host already has one.
    pub fn insert(&self, spec: TunnelSpec, saved: bool) -> Option<Arc<Tunnel>> {
        let mut table = self.by_host.write().expect("tunnels lock");
        let key = spec.host.to_string();
        if table.contains_key(&key) {
            return None;
        }
        let tunnel = Arc::new(Tunnel::new(spec, saved, Claims::default(), Arc::default()));
        table.insert(key, tunnel.clone());
        Some(tunnel)
    }

    /// Replaces the tunnel of `spec.host` with one of the new spec. Where it is online the claims
    /// carry over (the server needs no new claim); otherwise it is fresh, as a new tunnel. Its
    /// traffic counters carry over too, which requests in flight on the old spec keep updating;
    /// the health of the old local service (last error) does not.
    pub fn replace(&self, spec: TunnelSpec, saved: bool) -> Arc<Tunnel> {
        let mut table = self.by_host.write().expect("tunnels lock");
        let key = spec.host.to_string();
        let (claims, stats) = table.get(&key).map_or((Claims::default(), Arc::default()), |old| {
            (old.claims.lock().expect("claims lock").clone(), old.stats.clone())
        });
        let tunnel = Arc::new(Tunnel::new(spec, saved, claims, stats));
        tunnel.refresh();
        table.insert(key, tunnel.clone());
        tunnel
    }

    /// Replaces `tunnel` by one of `spec`, under the key of `spec` (a `tcp = 0` tunnel that got its
    /// port), keeping its claims and counters; `None` if `tunnel` is no longer in the table or the
    /// new key is taken.
    pub fn rekey(&self, tunnel: &Arc<Tunnel>, spec: TunnelSpec) -> Option<Arc<Tunnel>> {
        let mut table = self.by_host.write().expect("tunnels lock");
        let (old, new) = (tunnel.host(), spec.host.to_string());
        if !table.get(&old).is_some_and(|t| Arc::ptr_eq(t, tunnel)) || table.contains_key(&new) {
            return None;
        }
        let claims = tunnel.claims.lock().expect("claims lock").clone();
        let now = Arc::new(Tunnel::new(spec, tunnel.is_saved(), claims, tunnel.stats.clone()));
        table.remove(&old);
        table.insert(new, now.clone());
        Some(now)
    }

    /// Removes and returns the tunnel registered under exactly `pattern`.
    pub fn remove(&self, pattern: &str) -> Option<Arc<Tunnel>> {
        self.by_host.write().expect("tunnels lock").remove(pattern)
    }

    /// Removes `tunnel` if it is still the one in the table under its host (a concurrent remove
    /// or reload may have replaced it); returns whether it was.
    pub fn remove_exactly(&self, tunnel: &Arc<Tunnel>) -> bool {
        let mut table = self.by_host.write().expect("tunnels lock");
        let key = tunnel.host();
        if table.get(&key).is_some_and(|t| Arc::ptr_eq(t, tunnel)) {
            table.remove(&key);
            return true;
        }
        false
    }

    /// Whether `tunnel` is still the one in the table under its host.
    pub fn holds(&self, tunnel: &Arc<Tunnel>) -> bool {
        self.by_host.read().expect("tunnels lock").get(&tunnel.host()).is_some_and(|t| Arc::ptr_eq(t, tunnel))
    }

    /// The tunnel serving the normalised `host`.
    pub fn lookup(&self, host: &str) -> Option<Arc<Tunnel>> {
        let table = self.by_host.read().expect("tunnels lock");
        if let Some(t) = table.get(host) {
            return Some(t.clone());
        }
        ggrok_proto::host::wildcard_for(host).and_then(|w| table.get(&w).cloned())
    }

    /// The tunnel registered under exactly `pattern`.
    pub fn get(&self, pattern: &str) -> Option<Arc<Tunnel>> {
        self.by_host.read().expect("tunnels lock").get(pattern).cloned()
    }

    /// All tunnels, sorted by host.
    pub fn all(&self) -> Vec<Arc<Tunnel>> {
        let mut all: Vec<_> = self.by_host.read().expect("tunnels lock").values().cloned().collect();
        all.sort_by_key(|t| t.spec.host.to_string());
        all
    }

    /// Connection `link` is down: every tunnel loses what it had there. Tunnels that other
    /// connections still carry stay online.
    pub fn link_down(&self, link: u32) {
        for t in self.all() {
            t.link_down(link);
        }
    }
}

#[cfg(test)]
mod tests;
