//! Reloading server.toml while serving: SIGHUP, which `systemctl reload ggrok-server` sends.
//!
//! The whole file is validated first, as `--check` does, certificates included; an invalid file
//! changes nothing and the log says why (file, line, key). A valid one replaces the configuration
//! at once: clients, tokens, hosts, ports, limits and certificates. Then what the new file no
//! longer allows goes: the sessions of a removed client (or one whose token changed) are closed,
//! hosts and TCP ports a client may no longer claim (or whose access rules no longer meet its
//! `require`) are released (their daemon is told, as when
//! another ggrokd takes a tunnel over), and every other session and request goes on untouched.
//! Settings bound at start (listen addresses, `threads`, …) keep their old values until a
//! restart, and the log names them.

use crate::State;
use crate::config::{ClientEntry, ServerConfig};
use crate::tunnel::daemons::Daemon;
use crate::tunnel::registry::Owner;
use ggrok_proto::access::AccessRules;
use ggrok_proto::control::{ServerMessage, TunnelKey};
use ggrok_proto::host::HostPattern;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

/// Where the configuration comes from, to read it again.
#[derive(Debug, Clone)]
pub struct Source {
    /// server.toml.
    pub path: PathBuf,
    /// `$PORT` at start, which overrides `listen`'s port.
    pub port_env: Option<String>,
}

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Clients new in the file.
    pub added: Vec<String>,
    /// Clients gone from the file.
    pub removed: Vec<String>,
    /// Clients whose token, hosts or ports changed.
    pub changed: Vec<String>,
    /// Sessions closed: their client is gone or its token changed.
    pub sessions_closed: usize,
    /// Hosts and ports (`tcp:N`) released because their client may no longer claim them.
    pub released: Vec<String>,
    /// Settings that changed in the file but take effect only after a restart.
    pub need_restart: Vec<&'static str>,
    /// Whether the certificates were loaded again.
    pub certificates: bool,
    /// HTTP tunnels whose daemons were told their new URL (`public_url` changed).
    pub urls_told: usize,
}

/// Reloads on every SIGHUP until shutdown, telling systemd (`RELOADING=1` … `READY=1`).
pub async fn on_sighup(state: Arc<State>, source: Source) {
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => return warn!("cannot watch SIGHUP, so the config cannot be reloaded: {e}"),
    };
    loop {
        tokio::select! {
            Some(()) = hangup.recv() => {
                let _reloading = ggrok_proto::notify::Reloading::start();
                info!("SIGHUP: reloading {}", source.path.display());
                match reload(&state, &source) {
                    Ok(outcome) => log(&outcome),
                    Err(e) => {
                        state.metrics.reloads.count(false);
                        error!("config not reloaded, the previous one stays in force: {e}");
                    }
                }
            }
            _ = state.shutdown.cancelled() => return,
        }
    }
}

fn log(o: &Outcome) {
    let list = |v: &[String]| if v.is_empty() { "none".to_owned() } else { v.join(", ") };
    info!(
        added = %list(&o.added),
        removed = %list(&o.removed),
        changed = %list(&o.changed),
        sessions_closed = o.sessions_closed,
        released = %list(&o.released),
        certificates = o.certificates,
        urls_told = o.urls_told,
        "config reloaded"
    );
    if !o.need_restart.is_empty() {
        warn!(
            "these settings changed in the file and take effect only after a restart (the old \
             values stay in force until then): {}",
            o.need_restart.join(", ")
        );
    }
}

/// Reads and validates the file again and applies it; the reason when it is refused (nothing
/// changed then).
pub fn reload(state: &Arc<State>, source: &Source) -> Result<Outcome, String> {
    let mut new = ServerConfig::load(&source.path, source.port_env.as_deref()).map_err(|e| e.to_string())?;
    let old = state.config_now();
    let mut outcome = Outcome { need_restart: keep_bound_settings(&old, &mut new), ..Outcome::default() };
    // Certificates are loaded before anything changes: a bad one refuses the whole reload.
    let certificates = match (&new.tls, &state.certificates) {
        (Some(tls), Some(current)) => Some((
            current,
            current
                .prepare(&tls.certificates)
                .map_err(|e| format!("{}: [tls]: {e:#}", source.path.display()))?,
        )),
        _ => None,
    };
    diff_clients(&old.clients, &new.clients, &mut outcome);
    state.config.store(Arc::new(new));
    if let Some((current, loaded)) = certificates {
        current.install(loaded);
        outcome.certificates = true;
    }
    // `[acme]` names added are ordered, names removed no longer renewed unless claimed.
    if let Some(acme) = &state.acme {
        acme.reconfigured();
    }
    let config = state.config_now();
    close_sessions_no_longer_admitted(state, &config, &mut outcome);
    release_what_is_no_longer_allowed(state, &config, &mut outcome);
    if config.public_url != old.public_url {
        outcome.urls_told = tell_new_urls(state);
    }
    state.metrics.reloads.count(true);
    Ok(outcome)
}

/// Puts back into `new` the settings that were bound at start (sockets, threads, budgets), and
/// names those that differ.
fn keep_bound_settings(old: &ServerConfig, new: &mut ServerConfig) -> Vec<&'static str> {
    let mut differ = Vec::new();
    macro_rules! keep {
        ($($field:ident).+, $name:literal) => {
            if new.$($field).+ != old.$($field).+ {
                differ.push($name);
                new.$($field).+ = old.$($field).+.clone();
            }
        };
    }
    keep!(listen, "listen");
    keep!(threads, "threads");
    keep!(log_level, "log_level");
    keep!(admin, "[admin]");
    keep!(cluster, "[cluster]");
    keep!(limits.max_pending_connections, "limits.max_pending_connections");
    keep!(limits.max_pending_per_ip, "limits.max_pending_per_ip");
    keep!(limits.buffer_memory, "limits.buffer_memory");
    keep!(limits.send_buffer, "limits.send_buffer");
    match (&old.acme, &mut new.acme) {
        (Some(old), Some(new)) if old.account != new.account => {
            differ.push("acme.directory, acme.email, acme.cache_dir, acme.ca_file");
            new.account = old.account.clone();
        }
        (Some(_), Some(_)) | (None, None) => {}
        (None, Some(_)) | (Some(_), None) => {
            differ.push("[acme] (added or removed)");
            new.acme = old.acme.clone();
        }
    }
    match (&old.tls, &mut new.tls) {
        (Some(old), Some(new)) if old.listen != new.listen => {
            differ.push("tls.listen");
            new.listen = old.listen;
        }
        (Some(_), Some(_)) | (None, None) => {}
        (None, Some(_)) | (Some(_), None) => {
            differ.push("[tls] (added or removed)");
            new.tls = old.tls.clone();
        }
    }
    differ
}

fn diff_clients(old: &[ClientEntry], new: &[ClientEntry], outcome: &mut Outcome) {
    let find = |list: &[ClientEntry], name: &str| list.iter().find(|c| c.name == name).cloned();
    for c in new {
        match find(old, &c.name) {
            None => outcome.added.push(c.name.clone()),
            Some(before) if before != *c => outcome.changed.push(c.name.clone()),
            Some(_) => {}
        }
    }
    outcome.removed = old.iter().filter(|c| find(new, &c.name).is_none()).map(|c| c.name.clone()).collect();
}

/// Closes every session whose client the file no longer admits with the token it used.
fn close_sessions_no_longer_admitted(state: &State, config: &ServerConfig, outcome: &mut Outcome) {
    for daemon in state.daemons.all() {
        for session in daemon.sessions().iter() {
            if crate::tunnel::auth::current(config, &session.client, &session.token_sha256).is_some() {
                continue;
            }
            let why = match config.clients.iter().any(|c| c.name == session.client) {
                true => format!("client {:?}'s token changed in the server's config", session.client),
                false if session.client.starts_with(crate::tunnel::auth::ANONYMOUS) => {
                    "anonymous clients are no longer allowed by the server's config".to_owned()
                }
                false => format!("client {:?} was removed from the server's config", session.client),
            };
            info!(session = session.id, client = %session.client, "closing the session: {why}");
            session.close_because(why);
            outcome.sessions_closed += 1;
        }
    }
}

/// Releases the hosts and ports each client may no longer claim, online or offline, and tells
/// the daemons that served them.
fn release_what_is_no_longer_allowed(state: &State, config: &ServerConfig, outcome: &mut Outcome) {
    let entry = |client: &str| -> Option<ClientEntry> {
        match config.clients.iter().find(|c| c.name == client) {
            Some(c) => Some(c.clone()),
            None => crate::tunnel::auth::current(config, client, &[0; 32]),
        }
    };
    // An online tunnel must also still carry the rules its client's `require` asks for.
    let required = |e: &ClientEntry, rules: Option<&AccessRules>, tcp: bool| {
        rules.is_none_or(|rules| e.require.refusal(&e.name, rules, tcp).is_none())
    };
    let hosts = state.registry.retain_allowed(|client, host, rules| {
        let pattern = HostPattern::parse(host);
        entry(client).is_some_and(|e| {
            pattern.is_ok_and(|p| e.hosts.iter().any(|a| a.allows(&p))) && required(&e, rules, false)
        })
    });
    for (host, holder) in hosts {
        info!(host, "host released: its client may no longer claim it");
        if let Some(daemon) = holder {
            let reason = format!(
                "the server's config no longer lets client {:?} claim {host} as it is (reloaded: \
                 its hosts or required access rules changed)",
                daemon.client()
            );
            displace(&daemon, TunnelKey::Http { host: host.clone() }, 2, reason);
        }
        outcome.released.push(host);
    }
    let ports = state.ports.retain_allowed(|client, port, rules| {
        entry(client).is_some_and(|e| e.ports.allows(port) && required(&e, rules, true))
    });
    for (port, holder) in ports {
        info!(port, "TCP port closed: its client may no longer claim it");
        if let Some(daemon) = holder {
            let reason = format!(
                "the server's config no longer lets client {:?} claim TCP port {port} as it is \
                 (reloaded: its ports or required access rules changed)",
                daemon.client()
            );
            displace(&daemon, TunnelKey::Tcp { port }, 3, reason);
        }
        outcome.released.push(format!("tcp:{port}"));
    }
}

/// Tells the daemons of every HTTP tunnel online the URL it now has (`public_url` changed), as a
/// claim's answer again, which ggrokd takes as the tunnel's new URL (older ones ignore the URL);
/// the number of tunnels told (on sessions of protocol 2 or later).
fn tell_new_urls(state: &State) -> usize {
    let mut told = 0;
    for (host, daemon) in state.registry.online_hosts() {
        let url = state.public_url(&host);
        let mut any = false;
        for session in daemon.sessions().iter().filter(|s| s.protocol >= 2) {
            let tunnel = TunnelKey::Http { host: host.clone() };
            any |= session.tell(ServerMessage::Claimed { tunnel, port: None, url: Some(url.clone()) });
        }
        told += usize::from(any);
    }
    told
}

/// Tells `daemon` it lost `tunnel`; its sessions too old to be told (below `since`) are closed,
/// so that the daemon claims again and hears the refusal.
fn displace(daemon: &Arc<Daemon>, tunnel: TunnelKey, since: u32, reason: String) {
    for session in daemon.sessions().iter() {
        if session.protocol >= since {
            session.tell(ServerMessage::Displaced { tunnel: tunnel.clone(), reason: reason.clone() });
        } else {
            session.close_because(reason.clone());
        }
    }
}
