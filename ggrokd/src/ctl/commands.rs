//! What each control command does. `add` and `remove` change the live tunnel table and the config
//! file together, or neither; `reload` applies the difference between the file and the table.

use crate::config::{DaemonConfig, LocalAddr, TunnelSpec};
use crate::daemon::{Daemon, Endpoint, LinkState};
use crate::persist;
use crate::tunnels::TunnelState;
use ggrok_proto::control::ClientMessage;
use ggrok_proto::ctl::{Command, ErrorCode, HostHeader, Reply};
use ggrok_proto::host::HostPattern;
use std::collections::HashSet;
use std::time::Duration;
use tracing::{info, warn};

/// How long `add` waits for the server to accept or refuse the host.
const REGISTER_WAIT: Duration = Duration::from_secs(5);

/// Runs one command.
pub async fn execute(daemon: &Daemon, command: Command) -> Reply {
    match command {
        Command::Add { host, local, host_header, save } => {
            add(daemon, &host, &local, host_header, save).await
        }
        Command::Remove { host, save } => remove(daemon, &host, save).await,
        Command::List => Reply::Tunnels { tunnels: daemon.tunnels.all().iter().map(|t| t.info()).collect() },
        Command::Status => {
            let mut status = daemon.status();
            status.tunnels = daemon.tunnels.all().iter().map(|t| t.info()).collect();
            Reply::Status(status)
        }
        Command::Reload => match reload(daemon).await {
            Ok(message) => Reply::Done { message, tunnel: None },
            Err(message) => error(ErrorCode::Config, message),
        },
        // Answered by several lines: the connection serves it (super::logs).
        Command::Logs { .. } => error(ErrorCode::BadRequest, "logs is not a one-answer command"),
    }
}

fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
    Reply::Error { code, message: message.into() }
}

async fn add(daemon: &Daemon, host: &str, local: &str, host_header: Option<HostHeader>, save: bool) -> Reply {
    let pattern = match HostPattern::parse(host.trim()) {
        Ok(p) => p,
        Err(e) => return error(ErrorCode::InvalidArgument, format!("invalid host {host:?}: {e}")),
    };
    let local_addr = match LocalAddr::parse(local) {
        Ok(l) => l,
        Err(e) => return error(ErrorCode::InvalidArgument, e),
    };
    let rewrite_host = host_header == Some(HostHeader::Rewrite);
    let spec = TunnelSpec { host: pattern.clone(), local: local_addr, rewrite_host };
    let key = pattern.to_string();
    let tunnel = {
        let _edit = daemon.edits.lock().await;
        if let Some(existing) = daemon.tunnels.get(&key) {
            return error(
                ErrorCode::Exists,
                format!("{key} already has a tunnel (to {}); remove it first", existing.spec.local),
            );
        }
        if save && let Err(e) = persist::add_tunnel(&daemon.config_path, &key, local.trim(), rewrite_host) {
            return error(ErrorCode::Config, e);
        }
        let Some(tunnel) = daemon.tunnels.insert(spec, save) else {
            return error(ErrorCode::Exists, format!("{key} already has a tunnel"));
        };
        tunnel
    };
    info!(host = %key, local = %tunnel.spec.local, saved = save, "tunnel added");
    let mut states = tunnel.watch_state();
    if daemon.send_control(ClientMessage::Register { host: key.clone() }) {
        let _ = tokio::time::timeout(REGISTER_WAIT, states.wait_for(|s| *s != TunnelState::Connecting)).await;
    }
    let saved = if save { "saved to the config" } else { "not saved" };
    match tunnel.state() {
        TunnelState::Online => Reply::Done {
            message: format!("{key} is online, forwarding to {} ({saved})", tunnel.spec.local),
            tunnel: Some(tunnel.info()),
        },
        TunnelState::Refused(reason) => {
            // A refused host is undone, so a failed add changes nothing.
            let _ = remove(daemon, &key, save).await;
            error(ErrorCode::Refused, format!("the server refused {key}: {reason}"))
        }
        TunnelState::Connecting => Reply::Done {
            message: format!("{key} added ({saved}); it goes online when the connection to the server is up"),
            tunnel: Some(tunnel.info()),
        },
    }
}

async fn remove(daemon: &Daemon, host: &str, save: bool) -> Reply {
    let pattern = match HostPattern::parse(host.trim()) {
        Ok(p) => p,
        Err(e) => return error(ErrorCode::InvalidArgument, format!("invalid host {host:?}: {e}")),
    };
    let key = pattern.to_string();
    let _edit = daemon.edits.lock().await;
    let Some(tunnel) = daemon.tunnels.get(&key) else {
        return error(ErrorCode::NotFound, format!("{key} has no tunnel; `ggrokctl list` shows the tunnels"));
    };
    if save
        && tunnel.saved
        && let Err(e) = persist::remove_tunnel(&daemon.config_path, &pattern)
    {
        return error(ErrorCode::Config, e);
    }
    daemon.tunnels.remove(&key);
    daemon.send_control(ClientMessage::Unregister { host: key.clone() });
    info!(host = %key, "tunnel removed");
    let how = if save && tunnel.saved { "and from the config" } else { "(the config is unchanged)" };
    Reply::Done { message: format!("{key} removed {how}"), tunnel: None }
}

/// Re-reads the config file and applies the difference: new tunnels are added and claimed,
/// removed ones released, changed ones replaced in place (requests in flight finish on the old
/// spec), unchanged ones untouched. Tunnels added with `--no-save` stay. A new server or token
/// reconnects. An invalid file changes nothing.
pub async fn reload(daemon: &Daemon) -> Result<String, String> {
    let _edit = daemon.edits.lock().await;
    let _reloading = crate::notify::Reloading::start();
    let config = DaemonConfig::load(&daemon.config_path).map_err(|e| {
        warn!("reload refused: {e}");
        format!("reload refused, nothing changed: {e}")
    })?;
    let (mut added, mut removed, mut changed, mut unchanged) = (0, 0, 0, 0);
    let wanted: HashSet<String> = config.tunnels.iter().map(|t| t.host.to_string()).collect();
    for tunnel in daemon.tunnels.all() {
        let key = tunnel.spec.host.to_string();
        if tunnel.saved && !wanted.contains(&key) {
            daemon.tunnels.remove(&key);
            daemon.send_control(ClientMessage::Unregister { host: key.clone() });
            info!(host = %key, "tunnel removed by reload");
            removed += 1;
        }
    }
    for spec in config.tunnels {
        let key = spec.host.to_string();
        match daemon.tunnels.get(&key) {
            Some(existing) if existing.spec == spec => unchanged += 1,
            Some(_) => {
                info!(host = %key, local = %spec.local, "tunnel changed by reload");
                daemon.tunnels.replace(spec, true);
                changed += 1;
            }
            None => {
                info!(host = %key, local = %spec.local, "tunnel added by reload");
                daemon.tunnels.insert(spec, true);
                daemon.send_control(ClientMessage::Register { host: key });
                added += 1;
            }
        }
    }
    daemon.set_timing(config.timing);
    daemon.requests.set_capacity(config.request_log);
    let reconnect =
        daemon.set_endpoint(Endpoint { server: config.server, token: config.token, ca_file: config.ca_file });
    if reconnect {
        info!("server or token changed: reconnecting");
    }
    let mut message =
        format!("reloaded: {added} added, {removed} removed, {changed} changed, {unchanged} unchanged");
    if reconnect {
        message.push_str("; reconnecting with the new server settings");
    } else if daemon.link_state() != LinkState::Connected && added > 0 {
        message.push_str("; new tunnels go online when the connection to the server is up");
    }
    info!("{message}");
    Ok(message)
}
