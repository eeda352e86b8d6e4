//! The daemon's tunnel table: which local service serves which public host, each tunnel's state
//! with the server, and its counters.

use crate::config::TunnelSpec;
use crate::stats::TunnelStats;
use ggrok_proto::ctl::{HostHeader, TimedError, TunnelInfo, TunnelStatus};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Where a tunnel stands with the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelState {
    /// Not (yet) registered on the current connection.
    Connecting,
    /// The server routes its host here.
    Online,
    /// The server refused the host.
    Refused(String),
}

/// One tunnel: its spec, state and counters. Requests in flight hold an `Arc` of it, so replacing
/// it in the table (reload) never disturbs them.
#[derive(Debug)]
pub struct Tunnel {
    /// What the configuration says.
    pub spec: TunnelSpec,
    /// Whether it is in the config file.
    pub saved: bool,
    state: watch::Sender<TunnelState>,
    /// Traffic counters, shared with its requests in flight and kept when a reload replaces it.
    pub stats: Arc<TunnelStats>,
    last_error: Mutex<Option<TimedError>>,
    /// Whether the most recent request reached the local service.
    last_ok: std::sync::atomic::AtomicBool,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Tunnel {
    fn new(spec: TunnelSpec, saved: bool, state: TunnelState, stats: Arc<TunnelStats>) -> Self {
        Self {
            spec,
            saved,
            state: watch::Sender::new(state),
            stats,
            last_error: Mutex::new(None),
            last_ok: true.into(),
        }
    }

    /// The current state.
    pub fn state(&self) -> TunnelState {
        self.state.borrow().clone()
    }

    /// Changes the state; watchers see it.
    pub fn set_state(&self, state: TunnelState) {
        self.state.send_replace(state);
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
            saved: self.saved,
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
        let tunnel = Arc::new(Tunnel::new(spec, saved, TunnelState::Connecting, Arc::default()));
        table.insert(key, tunnel.clone());
        Some(tunnel)
    }

    /// Replaces the tunnel of `spec.host` with one of the new spec. Its state carries over (the
    /// server needs no new claim), and so do its traffic counters, which requests in flight on
    /// the old spec keep updating; the health of the old local service (last error) does not.
    pub fn replace(&self, spec: TunnelSpec, saved: bool) -> Arc<Tunnel> {
        let mut table = self.by_host.write().expect("tunnels lock");
        let key = spec.host.to_string();
        let (state, stats) = table
            .get(&key)
            .map_or((TunnelState::Connecting, Arc::default()), |old| (old.state(), old.stats.clone()));
        let tunnel = Arc::new(Tunnel::new(spec, saved, state, stats));
        table.insert(key, tunnel.clone());
        tunnel
    }

    /// Removes and returns the tunnel registered under exactly `pattern`.
    pub fn remove(&self, pattern: &str) -> Option<Arc<Tunnel>> {
        self.by_host.write().expect("tunnels lock").remove(pattern)
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

    /// Marks every tunnel as connecting (the connection to the server was lost).
    pub fn reset_states(&self) {
        for t in self.all() {
            t.set_state(TunnelState::Connecting);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LocalAddr;
    use ggrok_proto::host::HostPattern;

    fn spec(host: &str, port: &str) -> TunnelSpec {
        TunnelSpec {
            host: HostPattern::parse(host).unwrap(),
            local: LocalAddr::parse(port).unwrap(),
            rewrite_host: false,
        }
    }

    #[test]
    fn exact_before_wildcard() {
        let t = Tunnels::new(&[spec("*.a.test", "1"), spec("x.a.test", "2")]);
        assert_eq!(t.lookup("x.a.test").unwrap().spec.local.authority, "localhost:2");
        assert_eq!(t.lookup("y.a.test").unwrap().spec.local.authority, "localhost:1");
        assert!(t.lookup("a.test").is_none());
        assert_eq!(t.all().len(), 2);
    }

    #[test]
    fn insert_refuses_duplicates_and_replace_keeps_state() {
        let t = Tunnels::default();
        let first = t.insert(spec("a.test", "1"), true).unwrap();
        assert!(t.insert(spec("a.test", "2"), true).is_none());
        first.set_state(TunnelState::Online);
        first.stats.started();
        let second = t.replace(spec("a.test", "2"), true);
        assert_eq!(second.state(), TunnelState::Online);
        // The counters carry over, shared with requests in flight on the old spec.
        assert!(Arc::ptr_eq(&first.stats, &second.stats));
        assert_eq!(second.info().requests, 1);
        assert_eq!(t.get("a.test").unwrap().spec.local.authority, "localhost:2");
        // The old Arc, as held by a request in flight, still says where it was going.
        assert_eq!(first.spec.local.authority, "localhost:1");
        assert!(t.remove("a.test").is_some());
        assert!(t.get("a.test").is_none());
    }

    #[test]
    fn info_reports_state_counters_and_errors() {
        let t = Tunnels::default();
        let tunnel = t.insert(spec("a.test", "1"), false).unwrap();
        assert_eq!(tunnel.info().state, TunnelStatus::Connecting);
        tunnel.set_state(TunnelState::Online);
        tunnel.stats.started();
        tunnel.record_error("connection refused".into());
        let info = tunnel.info();
        assert_eq!((info.state, info.requests, info.errors, info.saved), (TunnelStatus::Error, 1, 1, false));
        assert_eq!(info.last_error.unwrap().message, "connection refused");
        tunnel.record_ok();
        assert_eq!(tunnel.info().state, TunnelStatus::Online);
        tunnel.set_state(TunnelState::Refused("held".into()));
        assert_eq!(tunnel.info().reason.as_deref(), Some("held"));
    }
}
