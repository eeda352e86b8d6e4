//! The control-socket protocol between ggrokctl and ggrokd: newline-delimited JSON over a Unix
//! socket, one [`CtlRequest`] line answered by one [`CtlResponse`] line. Both sides use these
//! types, so they cannot drift apart.
//!
//! `logs` is the one command answered by several lines: one [`Reply::Request`] per request, then
//! [`Reply::End`]; with `follow`, no end but more requests as they complete, and
//! [`Reply::Missed`] when the reader fell behind.

mod info;

pub use info::*;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Version of the control protocol; sent in every request and response.
pub const CTL_VERSION: u32 = 1;

/// Largest request or response line, in bytes. Longer lines are refused with an error response.
pub const MAX_CTL_LINE: usize = 64 * 1024;

/// Environment variable that overrides the socket path.
pub const SOCKET_ENV: &str = "GGROK_SOCKET";

/// One request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtlRequest {
    /// [`CTL_VERSION`] of the sender.
    pub version: u32,
    /// What to do.
    #[serde(flatten)]
    pub command: Command,
}

/// The commands, tagged by `cmd`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Start a tunnel now and (unless `save` is false) write it to the config file.
    Add {
        /// Public host or `*.` pattern, or `tcp:PORT` for a TCP tunnel (`tcp:0`: any port).
        host: String,
        /// Local service: port, host:port or http://host:port (TCP: no scheme).
        local: String,
        /// `keep` (default) or `rewrite`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host_header: Option<HostHeader>,
        /// Write to the config file (default true).
        #[serde(default = "yes")]
        save: bool,
        /// `user:HASH` entries (bcrypt or argon2; ggrokctl hashes `--basic-auth user:password`
        /// itself, so no password crosses the socket). HTTP tunnels only.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        basic_auth: Vec<String>,
        /// Addresses or CIDR networks allowed in (all others refused).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        allow_ips: Vec<String>,
        /// Addresses or CIDR networks refused.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        deny_ips: Vec<String>,
        /// TCP tunnels: send the local service a PROXY protocol v2 header first.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        proxy_protocol: bool,
        /// `https://` local services: verify the certificate against this CA file (an absolute
        /// path) instead of the system's roots.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_file: Option<String>,
        /// `https://` local services: accept any certificate (a self-signed development one).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        tls_skip_verify: bool,
    },
    /// Stop a tunnel and (unless `save` is false) remove it from the config file.
    Remove {
        /// Public host or pattern, as added, or `tcp:PORT`.
        host: String,
        /// Remove from the config file too (default true).
        #[serde(default = "yes")]
        save: bool,
    },
    /// The tunnels and their state.
    List,
    /// The daemon and its connection.
    Status,
    /// Re-read the config file and apply the difference.
    Reload,
    /// Recent requests across all tunnels, oldest first; with `follow`, then every request as it
    /// completes, until the client closes the connection.
    Logs {
        /// Keep the connection open and send requests as they complete.
        #[serde(default)]
        follow: bool,
        /// Only requests whose host is this host or matches this `*.` pattern.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        /// How many of the most recent requests to send first; all that are kept when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last: Option<u64>,
    },
    /// Replay a request the inspector captured to its tunnel's local service, as it was.
    Replay {
        /// The request's id (as the inspector shows it).
        id: u64,
    },
}

fn yes() -> bool {
    true
}

/// The names of the commands, for telling "unknown command" from "malformed command".
pub const COMMANDS: [&str; 7] = ["add", "remove", "list", "status", "reload", "logs", "replay"];

/// One response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CtlResponse {
    /// [`CTL_VERSION`] of the daemon.
    pub version: u32,
    /// The outcome.
    #[serde(flatten)]
    pub reply: Reply,
}

/// What a command produced, tagged by `kind`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    /// Done; `message` says what happened, `tunnel` is the tunnel concerned (add).
    Done {
        /// One sentence for people.
        message: String,
        /// The tunnel added, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tunnel: Option<TunnelInfo>,
    },
    /// The answer to `list`.
    Tunnels {
        /// Sorted by host.
        tunnels: Vec<TunnelInfo>,
        /// The servers ggrokd has no connection up to, each with its latest connection error
        /// (such as a token it refuses): why tunnels stay `connecting`. Absent while every
        /// server has a connection up.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        servers_down: Vec<ServerDown>,
    },
    /// The answer to `status`.
    Status(StatusInfo),
    /// One request of `logs`.
    Request(LogEntry),
    /// `logs --follow` fell behind: this many requests were skipped (across all hosts).
    Missed {
        /// How many.
        count: u64,
    },
    /// The answer to `replay`: what the local service answered.
    Replayed(ReplayInfo),
    /// The end of the answer to `logs` without `follow`.
    End {
        /// How many requests were sent.
        count: u64,
    },
    /// The command failed and changed nothing.
    Error {
        /// Machine-readable cause.
        code: ErrorCode,
        /// What failed and what to do.
        message: String,
    },
}

/// A server without a connection up, as `list` points at it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerDown {
    /// Its tunnel endpoint.
    pub server: String,
    /// The latest error of its connections, once one failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<TimedError>,
}

impl ServerDown {
    /// The servers of `status` without a connection up, with their latest errors.
    pub fn of(status: &StatusInfo) -> Vec<Self> {
        let down = status.servers.iter().filter(|s| s.state != LinkState::Connected);
        down.map(|s| ServerDown {
            server: s.server.clone(),
            last_error: s.last_error(&status.connections).cloned(),
        })
        .collect()
    }
}

/// Why a command failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or not a request.
    BadRequest,
    /// `cmd` names no command.
    UnknownCommand,
    /// The request exceeds [`MAX_CTL_LINE`].
    TooLarge,
    /// The request's version is not [`CTL_VERSION`].
    Version,
    /// An argument is invalid (host, local address).
    InvalidArgument,
    /// `add` of a host that has a tunnel.
    Exists,
    /// `remove` of a host without a tunnel.
    NotFound,
    /// The server refused the host.
    Refused,
    /// The config file could not be read, edited or written, or is invalid.
    Config,
    /// The daemon is too busy (too many control clients).
    Busy,
    /// `replay`: the local service could not be reached or failed.
    LocalFailed,
}

impl CtlResponse {
    /// A response with the current version.
    pub fn new(reply: Reply) -> Self {
        Self { version: CTL_VERSION, reply }
    }

    /// An error response.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(Reply::Error { code, message: message.into() })
    }
}

/// Where the control socket is: `explicit` (`--socket`), else `$GGROK_SOCKET`, else
/// `$XDG_RUNTIME_DIR/ggrok/ggrokd.sock`, else `/tmp/ggrok-$UID/ggrokd.sock`.
pub fn socket_path(explicit: Option<PathBuf>) -> PathBuf {
    let env = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    explicit.or_else(|| env(SOCKET_ENV)).unwrap_or_else(|| match env("XDG_RUNTIME_DIR") {
        Some(runtime) => runtime.join("ggrok").join("ggrokd.sock"),
        None => PathBuf::from(format!("/tmp/ggrok-{}", nix::unistd::getuid())).join("ggrokd.sock"),
    })
}

#[cfg(test)]
mod tests;
