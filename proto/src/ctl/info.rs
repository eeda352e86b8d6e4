//! What the control socket's replies carry: tunnels, the daemon's status, its connections and
//! servers, request log entries and replays.

use serde::{Deserialize, Serialize};

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
    /// The inspector's URL (`http://127.0.0.1:4040`) while it listens; absent when `inspect` is
    /// off or its port was busy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspector: Option<String>,
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
    /// Local connections reading answers with 256 KiB buffers: at most `buffer_memory / 2 MiB`,
    /// the others read 64 KiB (absent from older daemons).
    #[serde(default)]
    pub large_read_buffers: usize,
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

impl ServerInfo {
    /// The latest error of its connections that are not up, of the daemon's `connections`: why
    /// it is not held in full.
    pub fn last_error<'a>(&self, connections: &'a [ConnectionInfo]) -> Option<&'a TimedError> {
        connections
            .iter()
            .filter(|c| c.server == self.server && c.state != LinkState::Connected)
            .filter_map(|c| c.last_error.as_ref())
            .max_by_key(|e| e.at)
    }
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

impl ConnectionInfo {
    /// Connection `index` to `server` in `state`, with nothing else known (no session, requests,
    /// attempts or error yet); the rest is filled in as it becomes known.
    pub fn new(index: u32, server: impl Into<String>, state: LinkState) -> Self {
        Self {
            index,
            server: server.into(),
            replica: None,
            address: None,
            worker: None,
            transport: None,
            protocol: None,
            session: None,
            state,
            since: 0,
            requests: 0,
            attempt: 0,
            last_error: None,
            next_retry: None,
        }
    }
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
