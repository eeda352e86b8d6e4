//! What the daemon does when told to add, remove or reload tunnels, whoever tells it: the control
//! socket ([`crate::ctl::commands`], which only parses and formats) and SIGHUP call these.
//!
//! `add` claims first and writes the config file only once the server accepted the tunnel (or
//! when no connection is up: then it is saved and goes online when one is), so a refused add
//! leaves the file untouched and releases nothing. `remove` and `add` change the live table and
//! the file together, or neither. `reload` applies the difference between the file and the table.

use crate::config::{DaemonConfig, Public, TunnelSpec};
use crate::daemon::{Daemon, Endpoint};
use crate::persist;
use crate::tunnels::{Tunnel, TunnelState};
use crate::wire::TunnelOp;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// How long `add` waits for the server to accept or refuse the tunnel.
pub const CLAIM_WAIT: Duration = Duration::from_secs(5);

/// Why an operation changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// `add` of a host that has a tunnel.
    #[error("{0}")]
    Exists(String),
    /// `remove` of a host without one.
    #[error("{0}")]
    NotFound(String),
    /// The server refused the tunnel.
    #[error("{0}")]
    Refused(String),
    /// The tunnel cannot be served as asked (whatever the server says).
    #[error("{0}")]
    Invalid(String),
    /// The config file could not be read, edited or written, or is invalid.
    #[error("{0}")]
    Config(String),
}

/// A tunnel to add.
#[derive(Debug, Clone)]
pub struct NewTunnel {
    /// What it is.
    pub spec: TunnelSpec,
    /// `local` as the user wrote it, for the config file.
    pub local_as_written: String,
    /// Write it to the config file.
    pub save: bool,
}

/// Where an added tunnel stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    /// The server accepted it.
    Online,
    /// No connection is up, or the server has not answered yet: it goes online when it does.
    Pending,
    /// Accepted, then taken over by another ggrokd at once.
    Displaced(String),
}

/// A tunnel added.
pub struct Added {
    /// The tunnel.
    pub tunnel: Arc<Tunnel>,
    /// Where it stands.
    pub outcome: AddOutcome,
    /// It was there already, displaced or refused, and was claimed anew.
    pub again: bool,
}

/// Adds a tunnel: into the table, claimed on every connection that is up; then, once the server
/// accepted it (or no connection is up), into the config file when `save`.
pub async fn add(daemon: &Daemon, new: NewTunnel) -> Result<Added, OpError> {
    let key = new.spec.host.to_string();
    if let Some(why) = daemon.tcp_any_port_refused().filter(|_| new.spec.host == Public::Tcp(0)) {
        return Err(OpError::Invalid(format!(
            "a TCP tunnel without a port lets the server pick one, and {why} each would pick its own: give \
             the port (ggrokctl add --tcp PORT LOCAL, one of the server's [[client]] ports)"
        )));
    }
    let (tunnel, again) = {
        let _edit = daemon.edits.lock().await;
        match daemon.tunnels.get(&key) {
            // The same tunnel again (same local service), displaced by another ggrokd or
            // refused: asked anew, it is claimed fresh as it is (as a reload would), which takes
            // it back. Its options stay those it has (the file's).
            Some(existing)
                if existing.spec.local == new.spec.local
                    && matches!(existing.state(), TunnelState::Displaced(_) | TunnelState::Refused(_)) =>
            {
                existing.refresh();
                info!(host = %key, "tunnel claimed again: added anew");
                (existing, true)
            }
            Some(existing) => {
                let local = &existing.spec.local;
                return Err(OpError::Exists(match existing.state() {
                    TunnelState::Displaced(_) | TunnelState::Refused(_) => format!(
                        "{key} already has a tunnel (to {local}), displaced or refused: `ggrokctl add {key} \
                         {local}` or `ggrokctl reload` claims it again; to change its target, remove it first"
                    ),
                    _ => format!("{key} already has a tunnel (to {local}); remove it first"),
                }));
            }
            None => {
                let tunnel = daemon
                    .tunnels
                    .insert(new.spec, false)
                    .ok_or_else(|| OpError::Exists(format!("{key} already has a tunnel")))?;
                (tunnel, false)
            }
        }
    };
    let mut states = tunnel.watch_state();
    let sent = tunnel.claim().map_or(0, |claim| daemon.send_everywhere(&claim));
    if sent > 0 {
        let _ = tokio::time::timeout(CLAIM_WAIT, states.wait_for(|s| *s != TunnelState::Connecting)).await;
    }
    let outcome = match tunnel.state() {
        TunnelState::Refused(reason) if again => {
            // Asked anew and refused again: it stays as it was, refused.
            return Err(OpError::Refused(format!("the server refused {key}: {reason}")));
        }
        TunnelState::Refused(reason) => {
            // Never accepted: nothing to release, and the file was not touched.
            daemon.tunnels.remove_exactly(&tunnel);
            info!(host = %key, "tunnel not added: the server refused it");
            return Err(OpError::Refused(format!("the server refused {key}: {reason}")));
        }
        TunnelState::Online => AddOutcome::Online,
        TunnelState::Connecting => AddOutcome::Pending,
        TunnelState::Displaced(reason) => AddOutcome::Displaced(reason),
    };
    // `tcp = 0`: once the server picked a port, the tunnel is known by it.
    let tunnel = successor(daemon, &tunnel).unwrap_or(tunnel);
    let key = tunnel.host();
    if new.save && !tunnel.is_saved() {
        let _edit = daemon.edits.lock().await;
        let tunnel = successor(daemon, &tunnel)
            .ok_or_else(|| OpError::NotFound(format!("{key} was removed while it was being added")))?;
        let tls = tunnel.spec.local_http.tls.as_ref();
        let keys = persist::Keys {
            rewrite_host: tunnel.spec.rewrite_host,
            proxy_protocol: tunnel.spec.proxy_protocol,
            ca_file: tls.and_then(|t| t.ca_file.clone()),
            tls_skip_verify: tls.is_some_and(|t| t.skip_verify),
            access: tunnel.spec.access.clone(),
        };
        if let Err(e) =
            persist::add_tunnel(&daemon.config_path, &tunnel.spec.host, new.local_as_written.trim(), &keys)
        {
            daemon.tunnels.remove_exactly(&tunnel);
            if tunnel.state() == TunnelState::Online {
                daemon.send_everywhere(&TunnelOp::Release { host: tunnel.host() });
            }
            return Err(OpError::Config(e));
        }
        tunnel.mark_saved();
        // Saved as `tcp = 0` while the server was picking a port that arrived meanwhile.
        if let Some(now) = successor(daemon, &tunnel).filter(|now| !Arc::ptr_eq(now, &tunnel)) {
            now.mark_saved();
            if let Some(port) = now.spec.host.tcp_port() {
                persist::set_tcp_port(&daemon.config_path, port).map_err(OpError::Config)?;
            }
        }
    }
    let tunnel = successor(daemon, &tunnel).unwrap_or(tunnel);
    info!(host = %key, local = %tunnel.spec.local, saved = new.save, "tunnel added");
    Ok(Added { tunnel, outcome, again })
}

/// The tunnel in the table that `tunnel` is now: itself, or for `tcp = 0` the tunnel of the port
/// the server picked (it shares the counters); `None` once removed.
fn successor(daemon: &Daemon, tunnel: &Arc<Tunnel>) -> Option<Arc<Tunnel>> {
    if daemon.tunnels.holds(tunnel) {
        return Some(tunnel.clone());
    }
    if tunnel.spec.host != Public::Tcp(0) {
        return None;
    }
    daemon.tunnels.all().into_iter().find(|t| Arc::ptr_eq(&t.stats, &tunnel.stats))
}

/// A tunnel removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// It was taken out of the config file too.
    pub from_file: bool,
    /// It was in the config file (taken out or not).
    pub in_file: bool,
}

/// Removes the tunnel of `public` (a host or pattern, or a TCP port) from the table and, when
/// `save` and it is there, from the config file; releases it on the server where it is online.
pub async fn remove(daemon: &Daemon, public: &Public, save: bool) -> Result<Removed, OpError> {
    let key = public.to_string();
    let _edit = daemon.edits.lock().await;
    let Some(tunnel) = daemon.tunnels.get(&key) else {
        return Err(OpError::NotFound(format!("{key} has no tunnel; `ggrokctl list` shows the tunnels")));
    };
    let in_file = tunnel.is_saved();
    let from_file = save && in_file;
    if from_file {
        persist::remove_tunnel(&daemon.config_path, public).map_err(OpError::Config)?;
    }
    daemon.tunnels.remove(&key);
    release(daemon, &tunnel);
    info!(host = %key, "tunnel removed");
    Ok(Removed { from_file, in_file })
}

/// Releases a tunnel taken out of the table, where the server has it. A claim still under way
/// is released when its acceptance arrives ([`crate::control::on_event`]).
fn release(daemon: &Daemon, tunnel: &Tunnel) {
    if tunnel.state() == TunnelState::Online {
        daemon.send_everywhere(&TunnelOp::Release { host: tunnel.host() });
    }
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Tunnels new in the file.
    pub added: usize,
    /// Tunnels gone from the file.
    pub removed: usize,
    /// Tunnels whose settings changed.
    pub changed: usize,
    /// Tunnels as they were.
    pub unchanged: usize,
    /// Unchanged tunnels claimed again (displaced or refused before).
    pub reclaimed: usize,
    /// The server settings changed: every connection dials again.
    pub reconnect: bool,
    /// New tunnels wait for a connection.
    pub pending: bool,
}

impl fmt::Display for Reloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { added, removed, changed, unchanged, .. } = self;
        write!(f, "reloaded: {added} added, {removed} removed, {changed} changed, {unchanged} unchanged")?;
        if self.reclaimed > 0 {
            write!(f, " ({} claimed again)", self.reclaimed)?;
        }
        if self.reconnect {
            f.write_str("; reconnecting with the new server settings")?;
        } else if self.pending {
            f.write_str("; new tunnels go online when the connection to the server is up")?;
        }
        Ok(())
    }
}

/// Re-reads the config file and applies the difference: new tunnels are added and claimed,
/// removed ones released, changed ones replaced in place (requests in flight finish on the old
/// spec), unchanged ones untouched — except that displaced or refused ones are claimed again
/// (a reload makes them fresh). Tunnels added with `--no-save` stay. New server settings
/// reconnect; a new `connections` starts or stops links. An invalid file changes nothing.
pub async fn reload(daemon: &Daemon) -> Result<Reloaded, String> {
    let _edit = daemon.edits.lock().await;
    let _reloading = ggrok_proto::notify::Reloading::start();
    let config = DaemonConfig::load(&daemon.config_path).map_err(|e| {
        warn!("reload refused: {e}");
        format!("reload refused, nothing changed: {e}")
    })?;
    let mut done = Reloaded::default();
    let wanted: HashSet<String> = config.tunnels.iter().map(|t| t.host.to_string()).collect();
    for tunnel in daemon.tunnels.all() {
        let key = tunnel.host();
        if tunnel.is_saved() && !wanted.contains(&key) {
            daemon.tunnels.remove(&key);
            release(daemon, &tunnel);
            info!(host = %key, "tunnel removed by reload");
            done.removed += 1;
        }
    }
    let claim = |tunnel: &Tunnel| {
        if let Some(claim) = tunnel.claim() {
            daemon.send_everywhere(&claim);
        }
    };
    for spec in &config.tunnels {
        let key = spec.host.to_string();
        match daemon.tunnels.get(&key) {
            Some(existing) if existing.spec == *spec => {
                done.unchanged += 1;
                if matches!(existing.state(), TunnelState::Displaced(_) | TunnelState::Refused(_)) {
                    existing.refresh();
                    claim(&existing);
                    info!(host = %key, "tunnel claimed again by reload");
                    done.reclaimed += 1;
                }
            }
            Some(existing) => {
                info!(host = %key, local = %spec.local, "tunnel changed by reload");
                let tunnel = daemon.tunnels.replace(spec.clone(), true);
                // New access rules reach the server only with a new claim.
                if tunnel.state() != TunnelState::Online || existing.spec.access != spec.access {
                    claim(&tunnel);
                }
                done.changed += 1;
            }
            None => {
                info!(host = %key, local = %spec.local, "tunnel added by reload");
                if let Some(tunnel) = daemon.tunnels.insert(spec.clone(), true) {
                    claim(&tunnel);
                }
                done.added += 1;
            }
        }
    }
    daemon.set_timing(config.timing);
    daemon.requests.set_capacity(config.request_log);
    daemon.budget.set_limit(config.buffer_memory);
    daemon.set_connections(config.connections);
    daemon.set_replicas(config.replicas);
    daemon.inspector.store.set_limits(config.inspect.limits);
    daemon.inspector.set_enabled(config.inspect.address.is_some());
    daemon.inspector.listener.follow(config.inspect.address).await;
    done.reconnect = daemon.set_endpoints(Endpoint::all_of(&config));
    if done.reconnect {
        info!("server settings changed: reconnecting");
    }
    done.pending = done.added > 0 && !daemon.any_connected();
    info!("{done}");
    Ok(done)
}

#[cfg(test)]
mod tests;
