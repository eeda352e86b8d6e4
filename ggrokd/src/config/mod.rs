//! `ggrokd.toml`: parsed strictly (unknown keys are errors), then validated into [`DaemonConfig`].
//! Every error names the file, line and key.

use ggrok_proto::diag::ConfigError;
use ggrok_proto::seconds::Seconds;
use ggrok_proto::secret::Secret;
use ggrok_proto::size::Size;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

mod access;
mod address;
mod connections;
mod inspect;
mod local;
mod servers;
mod tunnel;
pub use address::{LocalAddr, LocalScheme, ServerUrl};
pub use connections::{Connections, MAX_AUTO_CONNECTIONS, MAX_CONNECTIONS, Transport};
pub use inspect::InspectSettings;
pub use local::{AppProtocol, LocalHttp, LocalTls};
pub use servers::MAX_SERVERS;
pub use tunnel::Public;

/// The largest `request_log`: entries are small (a few hundred bytes), so this bounds the log's
/// memory to some tens of MiB.
pub const MAX_REQUEST_LOG: usize = 100_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: Option<Spanned<servers::RawServers>>,
    token: Option<Spanned<Secret>>,
    token_file: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    log_level: Option<Spanned<String>>,
    keepalive_interval: Option<Spanned<Seconds>>,
    reconnect_initial: Option<Spanned<Seconds>>,
    reconnect_max: Option<Spanned<Seconds>>,
    shutdown_grace: Option<Spanned<Seconds>>,
    resolve_interval: Option<Spanned<Seconds>>,
    request_log: Option<Spanned<i64>>,
    /// `4` or `"auto"`: any TOML value, so that a wrong one gets our message.
    connections: Option<Spanned<toml::Value>>,
    transport: Option<Spanned<String>>,
    buffer_memory: Option<Spanned<Size>>,
    replicas: Option<Spanned<String>>,
    inspect: Option<Spanned<String>>,
    inspect_body_limit: Option<Spanned<Size>>,
    inspect_memory: Option<Spanned<Size>>,
    #[serde(default, rename = "tunnel")]
    tunnels: Vec<tunnel::RawTunnel>,
}

/// The validated daemon configuration.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Where the file was read from.
    pub path: PathBuf,
    /// The servers' tunnel endpoints (`server = "…"` or a list), in file order; ggrokd holds its
    /// connections to each.
    pub servers: Vec<ServerUrl>,
    /// The token presented to the server; none for servers that allow anonymous clients.
    pub token: Option<Secret>,
    /// CA certificates (PEM) to trust for `wss://` instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Log level or filter, used when `RUST_LOG` is unset.
    pub log_level: String,
    /// Timing of the connection to the server.
    pub timing: Timing,
    /// How many recent requests ggrokd keeps for `ggrokctl logs`.
    pub request_log: usize,
    /// How many tunnel connections to hold to the server.
    pub connections: Connections,
    /// What the tunnel's HTTP/2 runs on.
    pub transport: Transport,
    /// Bytes the request bodies on their way to local services may hold in all, over every
    /// tunnel connection: sets the stream windows (see `ggrok_proto::budget`).
    pub buffer_memory: u64,
    /// Whether to look for every replica of each server (`replicas = "all"`).
    pub replicas: Replicas,
    /// The inspector (`inspect`, `inspect_body_limit`, `inspect_memory`).
    pub inspect: InspectSettings,
    /// The tunnels, in file order.
    pub tunnels: Vec<TunnelSpec>,
}

/// How many replicas of a server to hold (`replicas = "…"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Replicas {
    /// Whichever the connections reach; replicas seen are still covered.
    #[default]
    One,
    /// Every replica: connections to every address the server's name resolves to (resolved
    /// again every `resolve_interval`), and behind one load-balanced address, one connection more
    /// keeps dialling until it finds no replica it has not seen (bounded, again when one seen is
    /// held by none).
    All,
}

/// Timing of the connection to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// HTTP/2 PING interval; a server silent for two intervals is disconnected.
    pub keepalive_interval: Duration,
    /// First delay before reconnecting; it doubles after each failure.
    pub reconnect_initial: Duration,
    /// Longest delay before reconnecting.
    pub reconnect_max: Duration,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// With `replicas = "all"`: how often each server's name is resolved again (addresses added
    /// or gone are followed) and replicas seen but held by no connection are looked for again.
    pub resolve_interval: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            keepalive_interval: Duration::from_secs(20),
            reconnect_initial: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            resolve_interval: Duration::from_secs(30),
        }
    }
}

/// `buffer_memory` when the file does not set it.
pub const DEFAULT_BUFFER_MEMORY: u64 = 128 << 20;

/// One tunnel: public host (or pattern), or public TCP port → local service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSpec {
    /// Public host or `*.` pattern, or TCP port (named `host` from the days of HTTP only; its
    /// `Display` is the tunnel's key: the host, or `tcp:PORT`).
    pub host: Public,
    /// The local service.
    pub local: LocalAddr,
    /// How it is spoken to: HTTP version, TLS (`app_protocol`, `ca_file`, `tls_skip_verify`).
    pub local_http: LocalHttp,
    /// Send the local address as `Host` instead of the public host (for dev servers that check it).
    pub rewrite_host: bool,
    /// TCP tunnels: send a PROXY protocol v2 header with the public client's address first.
    pub proxy_protocol: bool,
    /// Who may use the tunnel (`basic_auth`, `allow_ips`, `deny_ips`), enforced by the server.
    pub access: ggrok_proto::access::AccessRules,
}

/// Why `tcp = 0` (any port the server picks) cannot be served by `servers` servers with
/// `replicas`: each would pick a port of its own, so the port must be given. `None` when one
/// server picks it.
pub fn any_port_refused(servers: usize, replicas: Replicas) -> Option<&'static str> {
    if servers > 1 {
        Some("with several servers in `server`")
    } else if replicas == Replicas::All {
        Some("with replicas = \"all\" (every replica of the server)")
    } else {
        None
    }
}

/// `$XDG_CONFIG_HOME/ggrok/ggrokd.toml`, else `~/.config/ggrok/ggrokd.toml`.
pub fn default_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("ggrok").join("ggrokd.toml")
}

impl DaemonConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::file(path, format!("cannot read: {e}")))?;
        Self::parse(path, &text)
    }

    /// Validates the text of a configuration file; `path` names it in errors and anchors `token_file`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::from_toml(path, text, &e))?;
        let at = |span: std::ops::Range<usize>, key: &str, msg: String| {
            ConfigError::at(path, text, span, key, msg)
        };

        let server = raw.server.as_ref().ok_or_else(|| {
            ConfigError::file(
                path,
                "missing key `server`: the tunnel server, e.g. server = \"ws://tunnel.example.com\"",
            )
        })?;
        let servers = servers::parse(path, text, server)?;

        let token = match (&raw.token, &raw.token_file) {
            (Some(t), None) => {
                if t.get_ref().expose().trim().is_empty() {
                    return Err(at(t.span(), "token", "must not be empty".into()));
                }
                Some(t.get_ref().clone())
            }
            (None, Some(f)) => {
                let file = path.parent().unwrap_or(Path::new(".")).join(f.get_ref());
                let value = std::fs::read_to_string(&file).map_err(|e| {
                    at(f.span(), "token_file", format!("cannot read {}: {e}", file.display()))
                })?;
                let value = value.trim();
                if value.is_empty() {
                    return Err(at(f.span(), "token_file", format!("{} is empty", file.display())));
                }
                Some(Secret::new(value))
            }
            (Some(t), Some(_)) => {
                return Err(at(t.span(), "token", "give either token or token_file, not both".into()));
            }
            // Only servers that allow anonymous clients accept a daemon without a token.
            (None, None) => None,
        };

        let ca_file = match &raw.ca_file {
            Some(f) => {
                let file = path.parent().unwrap_or(Path::new(".")).join(f.get_ref());
                crate::tls::load_ca_file(&file).map_err(|e| at(f.span(), "ca_file", e))?;
                Some(file)
            }
            None => None,
        };

        let log_level = match &raw.log_level {
            Some(l) => {
                ggrok_proto::logging::check_filter(l.get_ref()).map_err(|e| at(l.span(), "log_level", e))?;
                l.get_ref().clone()
            }
            None => "info".to_owned(),
        };

        let mut timing = Timing::default();
        let seconds = |value: &Option<Spanned<Seconds>>, key: &str, min: f64, max: f64, default: Duration| {
            let Some(v) = value else { return Ok(default) };
            let d = v.get_ref().0;
            if d.as_secs_f64() < min || d.as_secs_f64() > max {
                return Err(at(v.span(), key, format!("must be between {min} and {max} seconds")));
            }
            Ok(d)
        };
        timing.keepalive_interval =
            seconds(&raw.keepalive_interval, "keepalive_interval", 0.1, 3600.0, timing.keepalive_interval)?;
        timing.reconnect_initial =
            seconds(&raw.reconnect_initial, "reconnect_initial", 0.01, 3600.0, timing.reconnect_initial)?;
        timing.reconnect_max =
            seconds(&raw.reconnect_max, "reconnect_max", 0.01, 86400.0, timing.reconnect_max)?;
        timing.shutdown_grace =
            seconds(&raw.shutdown_grace, "shutdown_grace", 0.0, 3600.0, timing.shutdown_grace)?;
        timing.resolve_interval =
            seconds(&raw.resolve_interval, "resolve_interval", 1.0, 3600.0, timing.resolve_interval)?;
        if timing.reconnect_initial > timing.reconnect_max {
            let span = raw
                .reconnect_initial
                .as_ref()
                .or(raw.reconnect_max.as_ref())
                .map(|s| s.span())
                .unwrap_or(0..0);
            return Err(at(span, "reconnect_initial", "must not exceed reconnect_max".into()));
        }

        let request_log = match &raw.request_log {
            Some(n) => {
                usize::try_from(*n.get_ref()).ok().filter(|n| *n <= MAX_REQUEST_LOG).ok_or_else(|| {
                    let why =
                        format!("must be between 0 and {MAX_REQUEST_LOG} (requests kept for ggrokctl logs)");
                    at(n.span(), "request_log", why)
                })?
            }
            None => crate::reqlog::DEFAULT_CAPACITY,
        };

        let connections = match &raw.connections {
            None => Connections::Auto,
            Some(c) => {
                let why = || {
                    format!(
                        "must be \"auto\" or a number from 1 to {MAX_CONNECTIONS} (tunnel connections to the server)"
                    )
                };
                match c.get_ref() {
                    toml::Value::String(w) if w == "auto" => Connections::Auto,
                    toml::Value::Integer(n) => u32::try_from(*n)
                        .ok()
                        .filter(|n| (1..=MAX_CONNECTIONS).contains(n))
                        .map(Connections::Fixed)
                        .ok_or_else(|| at(c.span(), "connections", why()))?,
                    _ => return Err(at(c.span(), "connections", why())),
                }
            }
        };

        let transport = match raw.transport.as_ref().map(|t| (t, t.get_ref().as_str())) {
            None | Some((_, "auto")) => Transport::Auto,
            Some((_, "websocket")) => Transport::WebSocket,
            Some((_, "raw")) => Transport::Raw,
            Some((t, other)) => {
                return Err(at(
                    t.span(),
                    "transport",
                    format!("{other:?}: expected \"auto\", \"websocket\" or \"raw\""),
                ));
            }
        };

        let buffer_memory = match &raw.buffer_memory {
            None => DEFAULT_BUFFER_MEMORY,
            Some(v) if ggrok_proto::budget::LIMITS.contains(&v.get_ref().0) => v.get_ref().0,
            Some(v) => {
                return Err(at(v.span(), "buffer_memory", ggrok_proto::budget::LIMITS_MESSAGE.into()));
            }
        };

        let replicas = match raw.replicas.as_ref().map(|r| (r, r.get_ref().as_str())) {
            None | Some((_, "one")) => Replicas::One,
            Some((_, "all")) => Replicas::All,
            Some((r, other)) => {
                return Err(at(r.span(), "replicas", format!("{other:?}: expected \"one\" or \"all\"")));
            }
        };

        let mut inspect = inspect::parse(
            path,
            text,
            raw.inspect.as_ref(),
            raw.inspect_body_limit.as_ref(),
            raw.inspect_memory.as_ref(),
        )?;
        // The inspector keeps as many requests as `ggrokctl logs` does.
        inspect.limits.count = request_log;

        let several = any_port_refused(servers.len(), replicas);
        let tunnels = tunnel::parse(path, text, &raw.tunnels, several)?;
        Ok(Self {
            path: path.to_owned(),
            servers,
            token,
            ca_file,
            log_level,
            timing,
            request_log,
            connections,
            transport,
            buffer_memory,
            replicas,
            inspect,
            tunnels,
        })
    }
}

#[cfg(test)]
mod tests;
