//! The control socket's commands: parse the arguments, call the daemon operation
//! ([`crate::ops`]), and put its outcome into a reply. No tunnel or file logic lives here.

use super::names::{self, Named};
use crate::config::{LocalAddr, LocalHttp, Public, TunnelSpec};
use crate::daemon::Daemon;
use crate::ops::{self, AddOutcome, NewTunnel, OpError, Removed};
use ggrok_proto::access::{AccessRules, Cidr, Credential};
use ggrok_proto::ctl::{Command, ErrorCode, HostHeader, LinkState, Reply, ServerDown, StatusInfo};
use ggrok_proto::host::HostPattern;

/// Runs one command.
pub async fn execute(daemon: &Daemon, command: Command) -> Reply {
    match command {
        Command::Add {
            host,
            local,
            host_header,
            save,
            basic_auth,
            allow_ips,
            deny_ips,
            proxy_protocol,
            ca_file,
            tls_skip_verify,
        } => {
            let mut named = match names::resolve(daemon, &host) {
                Ok(n) => n,
                Err(e) => return error(ErrorCode::InvalidArgument, e),
            };
            let tcp = named.host().starts_with("tcp:");
            let access = match access(&basic_auth, &allow_ips, &deny_ips, tcp) {
                Ok(a) => a,
                Err(e) => return error(ErrorCode::InvalidArgument, e),
            };
            // A random name that another client holds is drawn again; a name the user gave is
            // never silently replaced.
            let mut tries = if matches!(named, Named::Random(_)) { names::RANDOM_TRIES } else { 1 };
            loop {
                let how = How {
                    host_header,
                    proxy_protocol,
                    save,
                    ca_file: ca_file.clone().map(std::path::PathBuf::from),
                    tls_skip_verify,
                };
                let reply = add(daemon, named.host(), &local, how, access.clone()).await;
                tries -= 1;
                let taken = matches!(&reply, Reply::Error { code: ErrorCode::Refused, message }
                    if message.contains("already served"));
                match names::resolve(daemon, "") {
                    Ok(again) if taken && tries > 0 => named = again,
                    _ => return reply,
                }
            }
        }
        Command::Remove { host, save } => remove(daemon, &host, save).await,
        Command::List => {
            let servers_down = ServerDown::of(&daemon.status());
            Reply::Tunnels { tunnels: infos(daemon), servers_down }
        }
        Command::Status => {
            let mut status = daemon.status();
            status.tunnels = infos(daemon);
            Reply::Status(status)
        }
        Command::Reload => match ops::reload(daemon).await {
            Ok(done) => Reply::Done { message: done.to_string(), tunnel: None },
            Err(message) => error(ErrorCode::Config, message),
        },
        Command::Replay { id } => {
            use crate::inspect::replay::{self, ReplayError};
            match replay::replay(daemon, id, replay::Edits::default()).await {
                Ok(detail) => Reply::Replayed(replay::info(&detail)),
                Err(e @ ReplayError::NotFound(_)) => error(ErrorCode::NotFound, e.to_string()),
                Err(e @ ReplayError::Local { .. }) => error(ErrorCode::LocalFailed, e.to_string()),
                Err(e) => error(ErrorCode::InvalidArgument, e.to_string()),
            }
        }
        // Answered by several lines: the connection serves it (super::logs).
        Command::Logs { .. } => error(ErrorCode::BadRequest, "logs is not a one-answer command"),
    }
}

fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
    Reply::Error { code, message: message.into() }
}

fn failed(e: OpError) -> Reply {
    let code = match e {
        OpError::Exists(_) => ErrorCode::Exists,
        OpError::NotFound(_) => ErrorCode::NotFound,
        OpError::Refused(_) => ErrorCode::Refused,
        OpError::Config(_) => ErrorCode::Config,
        OpError::Invalid(_) => ErrorCode::InvalidArgument,
    };
    error(code, e.to_string())
}

/// Every tunnel as `list` and `status` show it: a TCP tunnel as `tcp://SERVER_HOST:PORT` (one
/// per server, comma-separated; `PORT` is 0 until the server picked one for `tcp = 0`).
fn infos(daemon: &Daemon) -> Vec<ggrok_proto::ctl::TunnelInfo> {
    daemon.tunnels.all().iter().map(|t| info(daemon, t)).collect()
}

/// One tunnel as `list` shows it.
fn info(daemon: &Daemon, tunnel: &crate::tunnels::Tunnel) -> ggrok_proto::ctl::TunnelInfo {
    let mut info = tunnel.info();
    if let Some(port) = tunnel.spec.host.tcp_port() {
        let urls: Vec<String> = daemon
            .endpoints()
            .iter()
            .map(|e| {
                let host = &e.server.host;
                let host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
                format!("tcp://{host}:{port}")
            })
            .collect();
        info.host = urls.join(", ");
        info.url = Some(info.host.clone());
    }
    info
}

/// The tunnel a command names: a host or pattern, or `tcp:PORT` (`ggrokctl add/remove --tcp`).
fn public(host: &str) -> Result<Public, String> {
    let host = host.trim();
    if host.starts_with("tcp:") {
        return Public::parse_key(host);
    }
    HostPattern::parse(host).map(Public::Http).map_err(|e| format!("invalid host {host:?}: {e}"))
}

/// The access rules of `add`: hashes only (ggrokctl hashes `--basic-auth user:password`), and
/// no basic authentication on a TCP tunnel.
fn access(
    basic_auth: &[String],
    allow_ips: &[String],
    deny_ips: &[String],
    tcp: bool,
) -> Result<AccessRules, String> {
    if tcp && !basic_auth.is_empty() {
        return Err(
            "--basic-auth applies to HTTP tunnels only; use --allow-ip to limit who may connect".into()
        );
    }
    let mut rules = AccessRules::default();
    for entry in basic_auth {
        let credential = Credential::parse(entry).map_err(|e| format!("--basic-auth: {e}"))?;
        if rules.basic_auth.iter().any(|c| c.user == credential.user) {
            return Err(format!("--basic-auth: user {:?} is given twice", credential.user));
        }
        rules.basic_auth.push(credential);
    }
    for (flag, list, into) in
        [("--allow-ip", allow_ips, &mut rules.allow_ips), ("--deny-ip", deny_ips, &mut rules.deny_ips)]
    {
        for net in list {
            into.push(net.parse::<Cidr>().map_err(|e| format!("{flag}: {e}"))?);
        }
    }
    rules.validate()?;
    Ok(rules)
}

/// How a tunnel is added, beside its host and local service.
struct How {
    host_header: Option<HostHeader>,
    proxy_protocol: bool,
    save: bool,
    /// `https://` local services: the CA to verify against, or no verification.
    ca_file: Option<std::path::PathBuf>,
    tls_skip_verify: bool,
}

async fn add(daemon: &Daemon, host: &str, local: &str, how: How, access: AccessRules) -> Reply {
    let public = match public(host) {
        Ok(p) => p,
        Err(e) => return error(ErrorCode::InvalidArgument, e),
    };
    if public.tcp_port().is_some() {
        if how.host_header.is_some() {
            return error(ErrorCode::InvalidArgument, "--rewrite-host applies to HTTP tunnels only");
        }
    } else if how.proxy_protocol {
        return error(ErrorCode::InvalidArgument, "--proxy-protocol applies to TCP tunnels only");
    }
    let How { host_header, proxy_protocol, save, ca_file, tls_skip_verify } = how;
    let parsed =
        if public.tcp_port().is_some() { LocalAddr::parse_tcp(local) } else { LocalAddr::parse(local) };
    let mut local_addr = match parsed {
        Ok(l) => l,
        Err(e) => return error(ErrorCode::InvalidArgument, e),
    };
    let local_http = match LocalHttp::new(&mut local_addr, None, ca_file.as_deref(), tls_skip_verify) {
        Ok(l) => l,
        Err(e) => {
            let flag = match e.key {
                "ca_file" => "--ca-file",
                "tls_skip_verify" => "--tls-skip-verify",
                _ => "the local service",
            };
            return error(ErrorCode::InvalidArgument, format!("{flag}: {}", e.message));
        }
    };
    let spec = TunnelSpec {
        host: public,
        local: local_addr,
        local_http,
        rewrite_host: host_header == Some(HostHeader::Rewrite),
        proxy_protocol,
        access,
    };
    let added = match ops::add(daemon, NewTunnel { spec, local_as_written: local.to_owned(), save }).await {
        Ok(added) => added,
        Err(e) => return failed(e),
    };
    let shown = info(daemon, &added.tunnel);
    // The public URL the server gave, when it did.
    let key = shown.url.clone().unwrap_or_else(|| shown.host.clone());
    let to = &added.tunnel.spec.local;
    let saved = match (save, added.again) {
        (true, false) => "saved to the config",
        (true, true) => "in the config",
        (false, _) => "not saved",
    };
    let message = match added.outcome {
        // It was there, displaced or refused: claimed anew, it is back.
        AddOutcome::Online if added.again => format!("{key} is online again, forwarding to {to} ({saved})"),
        AddOutcome::Online => format!("{key} is online, forwarding to {to} ({saved})"),
        AddOutcome::Pending => pending(&key, saved, &daemon.status()),
        AddOutcome::Displaced(reason) => {
            format!("{key} added ({saved}), but another ggrokd took it over at once: {reason}")
        }
    };
    Reply::Done { message, tunnel: Some(shown) }
}

async fn remove(daemon: &Daemon, host: &str, save: bool) -> Reply {
    let public = match public(host) {
        Ok(p) => p,
        Err(e) => return error(ErrorCode::InvalidArgument, e),
    };
    match ops::remove(daemon, &public, save).await {
        Ok(removed) => Reply::Done { message: removed_message(&public.to_string(), removed), tunnel: None },
        Err(e) => failed(e),
    }
}

/// What `add` says of a tunnel added but not online yet (`saved` says where it was saved): why,
/// from the daemon's `status`. With no connection up, the last connection error (a token the
/// server refuses never clears by itself).
fn pending(key: &str, saved: &str, status: &StatusInfo) -> String {
    match &status.last_error {
        _ if status.connection == LinkState::Connected => {
            format!(
                "{key} added ({saved}); the server has not answered yet: it goes online once it accepts it"
            )
        }
        Some(e) => format!(
            "{key} added ({saved}), but ggrokd is not connected to the server: {}; it goes online once a \
             connection is up (ggrokctl status shows the retries)",
            e.message
        ),
        None => format!("{key} added ({saved}); it goes online when the connection to the server is up"),
    }
}

/// What `remove` says of the tunnel of `key`.
fn removed_message(key: &str, removed: Removed) -> String {
    match removed {
        Removed { from_file: true, .. } => format!("{key} is offline and removed from the config"),
        Removed { in_file: true, .. } => {
            format!("{key} is offline until ggrokd restarts or reloads; the config still has it (--no-save)")
        }
        Removed { in_file: false, .. } => format!("{key} is offline and removed (it was not in the config)"),
    }
}

#[cfg(test)]
mod tests;
