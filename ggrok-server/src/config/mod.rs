//! `server.toml`: parsed strictly (unknown keys are errors), then validated into [`ServerConfig`],
//! the only form runtime code sees. Every error names the file, line and key.

mod access;
mod acme;
mod admin;
mod clients;
mod cluster;
mod limits;
mod ports;
mod public_url;
mod tls;

pub use access::Requirements;
pub use acme::{AcmeAccount, AcmeSettings, ChallengeKind, LETS_ENCRYPT, LETS_ENCRYPT_STAGING};
pub use admin::AdminSettings;
pub use clients::ClientEntry;
pub use cluster::ClusterSettings;
pub use limits::Limits;
pub use ports::PortRanges;
pub use public_url::PublicUrl;
pub use tls::TlsSettings;

use ggrok_proto::diag::ConfigError;
use ggrok_proto::host::HostPattern;
use ggrok_proto::seconds::Seconds;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// Default configuration file.
pub const DEFAULT_PATH: &str = "/etc/ggrok/server.toml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    tunnel_path: Option<Spanned<String>>,
    public_url: Option<Spanned<String>>,
    keepalive_interval: Option<Spanned<Seconds>>,
    shutdown_grace: Option<Spanned<Seconds>>,
    log_level: Option<Spanned<String>>,
    threads: Option<Spanned<u64>>,
    allow_anonymous: Option<Spanned<bool>>,
    anonymous_hosts: Option<Spanned<Vec<Spanned<String>>>>,
    proxy_protocol_from: Option<Vec<Spanned<String>>>,
    tls: Option<tls::RawTls>,
    acme: Option<acme::RawAcme>,
    admin: Option<admin::RawAdmin>,
    #[serde(default)]
    cluster: cluster::RawCluster,
    #[serde(default)]
    limits: limits::RawLimits,
    #[serde(default, rename = "client")]
    clients: Vec<clients::RawClient>,
}

/// The validated server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Public address: HTTP and the tunnel endpoint.
    pub listen: SocketAddr,
    /// Path of the tunnel endpoint, `/$$ggrok` by default.
    pub tunnel_path: String,
    /// Where users reach the tunnels, when not at the server's own listener (`public_url`).
    pub public_url: Option<PublicUrl>,
    /// Interval of HTTP/2 PINGs to each ggrokd; one silent for two intervals is disconnected.
    pub keepalive_interval: Duration,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// Log level or filter, used when `RUST_LOG` is unset.
    pub log_level: String,
    /// Workers, each a thread with a current-thread runtime and its own `SO_REUSEPORT`
    /// listeners; `None` (`threads = 0` in the file) means one per CPU core.
    pub threads: Option<usize>,
    /// HTTPS, when configured.
    pub tls: Option<TlsSettings>,
    /// Certificates from an ACME CA for the HTTPS listener, when configured.
    pub acme: Option<AcmeSettings>,
    /// The admin listener (`/metrics`, `/healthz`), when configured.
    pub admin: Option<AdminSettings>,
    /// What clients and connections may use.
    pub limits: Limits,
    /// How this replica names itself to ggrokd (`[cluster]`).
    pub cluster: ClusterSettings,
    /// Who may connect.
    pub clients: Vec<ClientEntry>,
    /// Hosts that clients without a token may claim, when `allow_anonymous = true`.
    pub anonymous_hosts: Option<Vec<HostPattern>>,
    /// Load balancers whose connections to the public listeners open with a PROXY protocol
    /// header (v1 or v2) naming the client: that address is the client's for access rules,
    /// `X-Forwarded-For`, limits and logs. Their connections without one are closed.
    pub proxy_protocol_from: Vec<ggrok_proto::access::Cidr>,
}

/// Default [`ServerConfig::keepalive_interval`].
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(20);
/// Default [`ServerConfig::shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

impl ServerConfig {
    /// Reads and validates `path`. `port_env` is `$PORT` (PaaS), which overrides `listen`'s port
    /// unless empty.
    pub fn load(path: &Path, port_env: Option<&str>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::file(path, format!("cannot read: {e}")))?;
        Self::parse(path, &text, port_env)
    }

    /// Validates the text of a configuration file; `path` is only for messages.
    pub fn parse(path: &Path, text: &str, port_env: Option<&str>) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::from_toml(path, text, &e))?;
        let at = |span: std::ops::Range<usize>, key: &str, msg: String| {
            ConfigError::at(path, text, span, key, msg)
        };

        let mut listen: SocketAddr = match &raw.listen {
            Some(l) => l.get_ref().parse().map_err(|_| {
                at(l.span(), "listen", format!("{:?} is not an address such as \"0.0.0.0:80\"", l.get_ref()))
            })?,
            None => SocketAddr::from(([0, 0, 0, 0], 80)),
        };
        // An empty `$PORT` (`PORT=`) is unset, as most tools take it.
        if let Some(port) = port_env.filter(|p| !p.trim().is_empty()) {
            let port: u16 = port.trim().parse().map_err(|_| {
                ConfigError::file(path, format!("$PORT is {port:?}, which is not a port number"))
            })?;
            listen.set_port(port);
        }

        let tunnel_path = match &raw.tunnel_path {
            Some(p) => {
                let value = p.get_ref();
                if !value.starts_with('/') || value.len() < 2 || value.contains(['?', '#', ' ']) {
                    return Err(at(
                        p.span(),
                        "tunnel_path",
                        format!("{value:?} must be a path such as \"/$$ggrok\""),
                    ));
                }
                value.clone()
            }
            None => ggrok_proto::DEFAULT_TUNNEL_PATH.to_owned(),
        };

        let keepalive_interval = match &raw.keepalive_interval {
            Some(k) => check_range(k, "keepalive_interval", 0.1, 3600.0)
                .map_err(|m| at(k.span(), "keepalive_interval", m))?,
            None => DEFAULT_KEEPALIVE,
        };
        let public_url = match &raw.public_url {
            Some(u) => Some(PublicUrl::parse(u.get_ref()).map_err(|m| at(u.span(), "public_url", m))?),
            None => None,
        };
        let shutdown_grace = match &raw.shutdown_grace {
            Some(g) => check_range(g, "shutdown_grace", 0.0, 3600.0)
                .map_err(|m| at(g.span(), "shutdown_grace", m))?,
            None => DEFAULT_SHUTDOWN_GRACE,
        };

        let anonymous_hosts = match (&raw.allow_anonymous, &raw.anonymous_hosts) {
            (Some(allow), Some(hosts)) if *allow.get_ref() => {
                if hosts.get_ref().is_empty() {
                    return Err(at(
                        hosts.span(),
                        "anonymous_hosts",
                        "must list at least one host or pattern".into(),
                    ));
                }
                let mut patterns = Vec::new();
                for (j, h) in hosts.get_ref().iter().enumerate() {
                    patterns.push(HostPattern::parse(h.get_ref()).map_err(|e| {
                        at(h.span(), &format!("anonymous_hosts[{j}]"), format!("{:?}: {e}", h.get_ref()))
                    })?);
                }
                Some(patterns)
            }
            (Some(allow), None) if *allow.get_ref() => {
                return Err(at(
                    allow.span(),
                    "allow_anonymous",
                    "also list the hosts anonymous clients may claim in anonymous_hosts".into(),
                ));
            }
            (_, Some(hosts)) => {
                return Err(at(
                    hosts.span(),
                    "anonymous_hosts",
                    "has no effect without allow_anonymous = true".into(),
                ));
            }
            _ => None,
        };
        if raw.clients.is_empty() && anonymous_hosts.is_none() {
            return Err(ConfigError::file(
                path,
                "no [[client]] entries: add one with a name, a token and the hosts it may claim \
                 (or set allow_anonymous = true with anonymous_hosts to let anyone connect)",
            ));
        }
        let state_dir = std::env::var("STATE_DIRECTORY").ok();
        let acme = raw.acme.as_ref().map(|a| a.validate(path, text, state_dir.as_deref())).transpose()?;
        let tls = raw.tls.as_ref().map(|t| t.validate(path, text, acme.is_some())).transpose()?;
        if acme.is_some() && tls.is_none() {
            return Err(ConfigError::file(
                path,
                "[acme] needs [tls] with a listen address: its certificates are presented there",
            ));
        }
        let mut public = vec![(listen, "listen")];
        public.extend(tls.as_ref().map(|t| (t.listen, "tls.listen")));
        let admin = raw.admin.as_ref().map(|a| a.validate(path, text, &public)).transpose()?;
        let log_level = match &raw.log_level {
            Some(l) => {
                ggrok_proto::logging::check_filter(l.get_ref()).map_err(|e| at(l.span(), "log_level", e))?;
                l.get_ref().clone()
            }
            None => "info".to_owned(),
        };
        let threads = match &raw.threads {
            Some(t) if *t.get_ref() > 1024 => {
                return Err(at(t.span(), "threads", "must be between 0 (one per CPU core) and 1024".into()));
            }
            Some(t) if *t.get_ref() == 0 => None,
            Some(t) => Some(*t.get_ref() as usize),
            None => Some(1),
        };
        let limits = raw.limits.validate(path, text)?;
        let proxy_protocol_from = match &raw.proxy_protocol_from {
            Some(list) => access::trusted(list)
                .map_err(|(j, span, e)| at(span, &format!("proxy_protocol_from[{j}]"), e))?,
            None => Vec::new(),
        };
        let cluster = raw.cluster.validate(path, text)?;
        let clients = clients::validate(&raw.clients, at)?;
        Ok(Self {
            listen,
            tunnel_path,
            public_url,
            keepalive_interval,
            shutdown_grace,
            log_level,
            threads,
            tls,
            acme,
            admin,
            limits,
            cluster,
            clients,
            anonymous_hosts,
            proxy_protocol_from,
        })
    }
}

/// The duration of `value` if it lies within `min..=max` seconds.
pub fn check_range(value: &Spanned<Seconds>, _key: &str, min: f64, max: f64) -> Result<Duration, String> {
    let d = value.get_ref().0;
    if d.as_secs_f64() < min || d.as_secs_f64() > max {
        return Err(format!("must be between {min} and {max} seconds"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests;
