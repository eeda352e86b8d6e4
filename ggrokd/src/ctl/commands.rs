//! The control socket's commands: parse the arguments, call the daemon operation
//! ([`crate::ops`]), and put its outcome into a reply. No tunnel or file logic lives here.

use crate::config::{LocalAddr, TunnelSpec};
use crate::daemon::Daemon;
use crate::ops::{self, AddOutcome, NewTunnel, OpError};
use ggrok_proto::ctl::{Command, ErrorCode, HostHeader, Reply};
use ggrok_proto::host::HostPattern;

/// Runs one command.
pub async fn execute(daemon: &Daemon, command: Command) -> Reply {
    match command {
        Command::Add { host, local, host_header, save } => {
            add(daemon, &host, &local, host_header, save).await
        }
        Command::Remove { host, save } => remove(daemon, &host, save).await,
        Command::List => Reply::Tunnels { tunnels: infos(daemon) },
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
    };
    error(code, e.to_string())
}

/// Every tunnel as `list` and `status` show it: a TCP tunnel as `tcp://SERVER_HOST:PORT` (the
/// first server's host; `PORT` is 0 until the server picked one for `tcp = 0`).
fn infos(daemon: &Daemon) -> Vec<ggrok_proto::ctl::TunnelInfo> {
    let server = daemon.endpoints().first().map(|e| e.server.host.clone()).unwrap_or_default();
    let server = if server.contains(':') { format!("[{server}]") } else { server };
    let show = |t: &crate::tunnels::Tunnel| {
        let mut info = t.info();
        if let Some(port) = t.spec.host.tcp_port() {
            info.host = format!("tcp://{server}:{port}");
        }
        info
    };
    daemon.tunnels.all().iter().map(|t| show(t)).collect()
}

fn host_pattern(host: &str) -> Result<HostPattern, String> {
    HostPattern::parse(host.trim()).map_err(|e| format!("invalid host {host:?}: {e}"))
}

async fn add(daemon: &Daemon, host: &str, local: &str, host_header: Option<HostHeader>, save: bool) -> Reply {
    let pattern = match host_pattern(host) {
        Ok(p) => p,
        Err(e) => return error(ErrorCode::InvalidArgument, e),
    };
    let local_addr = match LocalAddr::parse(local) {
        Ok(l) => l,
        Err(e) => return error(ErrorCode::InvalidArgument, e),
    };
    let spec = TunnelSpec {
        host: pattern.into(),
        local: local_addr,
        rewrite_host: host_header == Some(HostHeader::Rewrite),
    };
    let added = match ops::add(daemon, NewTunnel { spec, local_as_written: local.to_owned(), save }).await {
        Ok(added) => added,
        Err(e) => return failed(e),
    };
    let (key, to) = (added.tunnel.host(), &added.tunnel.spec.local);
    let saved = if save { "saved to the config" } else { "not saved" };
    let message = match added.outcome {
        AddOutcome::Online => format!("{key} is online, forwarding to {to} ({saved})"),
        AddOutcome::Pending => {
            format!("{key} added ({saved}); it goes online when the connection to the server is up")
        }
        AddOutcome::Displaced(reason) => {
            format!("{key} added ({saved}), but another ggrokd took it over at once: {reason}")
        }
    };
    Reply::Done { message, tunnel: Some(added.tunnel.info()) }
}

async fn remove(daemon: &Daemon, host: &str, save: bool) -> Reply {
    let pattern = match host_pattern(host) {
        Ok(p) => p,
        Err(e) => return error(ErrorCode::InvalidArgument, e),
    };
    match ops::remove(daemon, &pattern, save).await {
        Ok(removed) => {
            let how = if removed.from_file { "and from the config" } else { "(the config is unchanged)" };
            Reply::Done { message: format!("{pattern} removed {how}"), tunnel: None }
        }
        Err(e) => failed(e),
    }
}
