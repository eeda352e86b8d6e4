//! The control-socket protocol between ggrokctl and ggrokd: newline-delimited JSON over a Unix
//! socket, one [`CtlRequest`] line answered by one [`CtlResponse`] line. Both sides use these
//! types, so they cannot drift apart.
//!
//! `logs` is the one command answered by several lines: one [`Reply::Request`] per request, then
//! [`Reply::End`]; with `follow`, no end but more requests as they complete, and
//! [`Reply::Missed`] when the reader fell behind.

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

/// A replayed request and the local service's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplayInfo {
    /// The replay's id in the inspector.
    pub id: u64,
    /// The id of the request replayed.
    pub replay_of: u64,
    /// Method and path sent.
    pub method: String,
    /// Path and query sent.
    pub path: String,
    /// The answer's status.
    pub status: u16,
    /// From sending to the end of the answer, in milliseconds.
    pub duration_ms: f64,
    /// The answer's headers, in order.
    pub headers: Vec<(String, String)>,
    /// The answer's body as far as the inspector keeps it (`inspect_body_limit`): text, or
    /// base64 when `body_base64`.
    pub body: String,
    /// Whether `body` is base64.
    pub body_base64: bool,
    /// The body's whole size.
    pub size: u64,
    /// Whether `body` was cut at the limit.
    pub truncated: bool,
}

/// A tunnel as `list` and `status` show it. Counters run from daemon start; a tunnel changed by a
/// reload keeps them. Fields added after the first release default when absent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TunnelInfo {
    /// Public host or pattern.
    pub host: String,
    /// Local service `host:port`.
    pub local: String,
    /// `keep` or `rewrite`.
    pub host_header: HostHeader,
    /// Where the tunnel stands.
    pub state: TunnelStatus,
    /// Why it was refused or displaced, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Requests forwarded since the daemon started (upgraded connections included).
    pub requests: u64,
    /// Requests ggrokd could not deliver to the local service (it answered 502 itself); these
    /// count in `status_5xx` too.
    pub errors: u64,
    /// Responses with a 4xx status.
    #[serde(default)]
    pub status_4xx: u64,
    /// Responses with a 5xx status, ggrokd's own 502s included.
    #[serde(default)]
    pub status_5xx: u64,
    /// Body bytes received from the public clients (request bodies; upgraded connections: bytes
    /// from the public side).
    #[serde(default)]
    pub bytes_in: u64,
    /// Body bytes sent to the public clients (response bodies; upgraded connections: bytes from
    /// the local side).
    #[serde(default)]
    pub bytes_out: u64,
    /// Requests in flight now, open upgraded connections included.
    #[serde(default)]
    pub active: u64,
    /// Median duration (ms, to the end of the response body) over the latest [`LATENCY_WINDOW`]
    /// completed requests (upgraded connections excluded); absent before the first one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    /// 99th percentile duration (ms), over the same window as `p50_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// The last failure, with its time (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<TimedError>,
    /// Whether it is in the config file (false after `add --no-save`).
    pub saved: bool,
    /// Who may use it, when the tunnel has access rules (no hashes: user names and networks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessInfo>,
    /// Where the public reaches it, as the server said (`https://myapp.example.com`); for a TCP
    /// tunnel `tcp://SERVER:PORT`. Absent until a server accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A tunnel's access rules as `list` shows them: no secrets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessInfo {
    /// The users of `basic_auth`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub basic_auth: Vec<String>,
    /// `allow_ips`, as networks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_ips: Vec<String>,
    /// `deny_ips`, as networks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_ips: Vec<String>,
}

impl AccessInfo {
    /// What `list` shows of the rules, if there are any.
    pub fn of(rules: &crate::access::AccessRules) -> Option<Self> {
        (!rules.is_empty()).then(|| {
            let nets = |v: &[crate::access::Cidr]| v.iter().map(ToString::to_string).collect();
            AccessInfo {
                basic_auth: rules.basic_auth.iter().map(|c| c.user.clone()).collect(),
                allow_ips: nets(&rules.allow_ips),
                deny_ips: nets(&rules.deny_ips),
            }
        })
    }

    /// A few words for a table: `basic auth`, `ip rules`, or both.
    pub fn brief(&self) -> String {
        let auth = (!self.basic_auth.is_empty()).then_some("basic auth");
        let ips = (!self.allow_ips.is_empty() || !self.deny_ips.is_empty()).then_some("ip rules");
        [auth, ips].into_iter().flatten().collect::<Vec<_>>().join(", ")
    }
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
    /// The daemon's link to the server as a whole: `connected` when any connection is up, else
    /// the state of the first connection.
    pub connection: LinkState,
    /// Unix time (seconds) the first connection entered its state.
    pub since: u64,
    /// Failed attempts of the first connection since it was last healthy.
    pub attempt: u32,
    /// The last connection error of any connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<TimedError>,
    /// Unix time (seconds, fractional) of the first connection's next attempt, when disconnected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry: Option<f64>,
    /// Every tunnel connection, by index.
    #[serde(default)]
    pub connections: Vec<ConnectionInfo>,
    /// Every server of the config (`server = [...]`), in file order, with its connections.
    #[serde(default)]
    pub servers: Vec<ServerInfo>,
    /// Tunnels online.
    pub tunnels_online: usize,
    /// Tunnels in all.
    pub tunnels_total: usize,
    /// Every tunnel with its counters, as `list` shows them.
    #[serde(default)]
    pub tunnels: Vec<TunnelInfo>,
    /// The buffer budget; absent from daemons that have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffers: Option<BufferInfo>,
}

/// ggrokd's buffer budget (`buffer_memory`), which bounds the request bodies on their way to local
/// services by the stream window its tunnel connections grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferInfo {
    /// `buffer_memory`, in bytes.
    pub limit: u64,
    /// The stream window granted now, in bytes.
    pub stream_window: u32,
    /// Request bodies on their way to local services.
    pub bodies_in_flight: usize,
}

/// Where a tunnel stands, as `list` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TunnelStatus {
    /// The server routes its traffic to this daemon.
    Online,
    /// Not yet accepted by the server (no connection, or the claim is under way).
    Connecting,
    /// The server refused it (`reason` says why).
    Refused,
    /// Online, but its local service is failing.
    Error,
    /// Another ggrokd of the same client took it over; this one no longer claims it until it is
    /// added again, the config reloaded or the daemon restarted.
    Displaced,
    /// A state this build does not know (from a newer daemon).
    #[serde(other)]
    Unknown,
}

impl TunnelStatus {
    /// The word `list` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelStatus::Online => "online",
            TunnelStatus::Connecting => "connecting",
            TunnelStatus::Refused => "refused",
            TunnelStatus::Error => "error",
            TunnelStatus::Displaced => "displaced",
            TunnelStatus::Unknown => "unknown",
        }
    }
}

/// Which `Host` header a tunnel sends to its local service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostHeader {
    /// The public host, as the client sent it.
    #[default]
    Keep,
    /// The local service's address (for dev servers that refuse unknown hosts).
    Rewrite,
}

/// The state of a connection to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Dialling or handshaking.
    Connecting,
    /// Up.
    Connected,
    /// Down, waiting to retry.
    Disconnected,
    /// A state this build does not know (from a newer daemon).
    #[serde(other)]
    Unknown,
}

impl LinkState {
    /// The word `status` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::Disconnected => "disconnected",
            LinkState::Unknown => "unknown",
        }
    }
}

/// One server of the daemon's config, as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Its tunnel endpoint.
    pub server: String,
    /// `connected` when any of its connections is, else the state of its first connection.
    pub state: LinkState,
    /// Its connections now.
    pub connections: u32,
    /// Those connected.
    pub up: u32,
    /// The replicas (`[cluster] replica`) its connected connections reached, sorted.
    #[serde(default)]
    pub replicas: Vec<String>,
    /// Every replica seen behind this address since ggrokd started, sorted; ggrokd keeps dialling
    /// until it holds each.
    #[serde(default)]
    pub known_replicas: Vec<String>,
    /// With `replicas = "all"`: the addresses its name resolved to last, sorted; ggrokd holds a
    /// connection to each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Whether ggrokd holds a connection to every replica seen there and to every address: what
    /// `ggrokctl ready` waits for.
    #[serde(default)]
    pub ready: bool,
}

/// One tunnel connection of the daemon, as `status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// Its index, from 0.
    pub index: u32,
    /// The server's tunnel endpoint.
    pub server: String,
    /// The server replica it reached (`[cluster] replica`), when the server names itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// The server's address it dials or reached (`ip:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The server worker it landed on, when the server says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<u32>,
    /// `websocket` or `raw` (HTTP/2 straight on the upgraded connection), once connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// The protocol version agreed on, once connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u32>,
    /// The server's session id, once connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<u64>,
    /// Its state.
    pub state: LinkState,
    /// Unix time (seconds) it entered that state.
    pub since: u64,
    /// Requests (and upgraded connections) it has carried since the daemon started.
    pub requests: u64,
    /// Failed attempts since it was last healthy.
    pub attempt: u32,
    /// Its last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<TimedError>,
    /// Unix time (seconds, fractional) of its next attempt, when disconnected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry: Option<f64>,
}

/// How many of a tunnel's latest requests `p50_ms` and `p99_ms` are computed over.
pub const LATENCY_WINDOW: usize = 1000;

/// One completed request (or upgraded connection), as `logs` sends it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// When ggrokd received the request: Unix time, seconds, with milliseconds.
    pub time: f64,
    /// The public host it was for (lowercase, without port).
    pub host: String,
    /// The request method.
    pub method: String,
    /// Path and query, as requested (cut after [`MAX_LOGGED_PATH`] bytes, ending in `…`).
    pub path: String,
    /// The status the public client got: 101 for an upgraded connection, 0 when there was none
    /// because the client went away first.
    pub status: u16,
    /// From the request's arrival to the end of the response body, or of the upgraded
    /// connection: milliseconds, with microseconds.
    pub duration_ms: f64,
    /// Request body bytes from the public client (upgraded: bytes from the public side).
    pub bytes_in: u64,
    /// Response body bytes to the public client (upgraded: bytes from the local side).
    pub bytes_out: u64,
    /// The public client's address: the last entry of `X-Forwarded-For`, which the server adds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The protocol of an upgraded connection (`websocket`), or `tcp` for a connection of a TCP
    /// tunnel (then `method` is `TCP`, `host` is `tcp:PORT`, `path` is empty and `status` is 200,
    /// or 502 when the local service could not be reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<String>,
}

/// Longest path (with query) a log entry keeps, in bytes, so the log's memory stays bounded.
pub const MAX_LOGGED_PATH: usize = 2048;

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
