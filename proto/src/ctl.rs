//! The control-socket protocol between ggrokctl and ggrokd: newline-delimited JSON over a Unix
//! socket, one [`CtlRequest`] line answered by one [`CtlResponse`] line. Both sides use these
//! types, so they cannot drift apart.

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
        /// Public host or `*.` pattern.
        host: String,
        /// Local service: port, host:port or http://host:port.
        local: String,
        /// `keep` (default) or `rewrite`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host_header: Option<String>,
        /// Write to the config file (default true).
        #[serde(default = "yes")]
        save: bool,
    },
    /// Stop a tunnel and (unless `save` is false) remove it from the config file.
    Remove {
        /// Public host or pattern, as added.
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
}

fn yes() -> bool {
    true
}

/// The names of the commands, for telling "unknown command" from "malformed command".
pub const COMMANDS: [&str; 5] = ["add", "remove", "list", "status", "reload"];

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
    },
    /// The answer to `status`.
    Status(StatusInfo),
    /// The command failed and changed nothing.
    Error {
        /// Machine-readable cause.
        code: ErrorCode,
        /// What failed and what to do.
        message: String,
    },
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
}

/// A tunnel as `list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelInfo {
    /// Public host or pattern.
    pub host: String,
    /// Local service `host:port`.
    pub local: String,
    /// `keep` or `rewrite`.
    pub host_header: String,
    /// `online`, `connecting`, `refused` or `error` (online, but its local service is failing).
    pub state: String,
    /// Why it was refused, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Requests forwarded since the daemon started.
    pub requests: u64,
    /// Requests its local service failed (502) since the daemon started.
    pub errors: u64,
    /// The last failure, with its time (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<TimedError>,
    /// Whether it is in the config file (false after `add --no-save`).
    pub saved: bool,
}

/// An error and when it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimedError {
    /// Unix time, seconds.
    pub at: u64,
    /// What failed.
    pub message: String,
}

/// The daemon as `status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// ggrokd's version.
    pub daemon_version: String,
    /// Process id.
    pub pid: u32,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// The config file.
    pub config: String,
    /// The server's tunnel endpoint.
    pub server: String,
    /// `connected`, `connecting` or `disconnected`.
    pub connection: String,
    /// Unix time (seconds) the connection entered that state.
    pub since: u64,
    /// Failed attempts since the last healthy connection.
    pub attempt: u32,
    /// The last connection error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<TimedError>,
    /// Unix time (seconds, fractional) of the next connection attempt, when disconnected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry: Option<f64>,
    /// Tunnels online.
    pub tunnels_online: usize,
    /// Tunnels in all.
    pub tunnels_total: usize,
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
mod tests {
    use super::*;

    #[test]
    fn requests_have_a_stable_json_form() {
        let add = CtlRequest {
            version: 1,
            command: Command::Add {
                host: "a.test".into(),
                local: "8080".into(),
                host_header: None,
                save: true,
            },
        };
        assert_eq!(
            serde_json::to_string(&add).unwrap(),
            r#"{"version":1,"cmd":"add","host":"a.test","local":"8080","save":true}"#
        );
        let parsed: CtlRequest =
            serde_json::from_str(r#"{"version":1,"cmd":"remove","host":"a.test"}"#).unwrap();
        assert_eq!(parsed.command, Command::Remove { host: "a.test".into(), save: true });
        let list: CtlRequest = serde_json::from_str(r#"{"version":1,"cmd":"list"}"#).unwrap();
        assert_eq!(list.command, Command::List);
    }

    #[test]
    fn unknown_and_malformed_commands_do_not_parse() {
        for bad in [
            r#"{"version":1,"cmd":"explode"}"#,
            r#"{"version":1,"cmd":"add","host":"a.test"}"#,
            r#"{"cmd":"list"}"#,
            r#"[1,2]"#,
        ] {
            assert!(serde_json::from_str::<CtlRequest>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_round_trip() {
        let r = CtlResponse::error(ErrorCode::Exists, "a.test already has a tunnel");
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"version":1,"kind":"error","code":"exists","message":"a.test already has a tunnel"}"#
        );
        assert_eq!(serde_json::from_str::<CtlResponse>(&text).unwrap(), r);
    }

    #[test]
    fn explicit_socket_path_wins() {
        assert_eq!(socket_path(Some("/x/y.sock".into())), PathBuf::from("/x/y.sock"));
    }
}
