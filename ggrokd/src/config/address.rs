//! The addresses in `ggrokd.toml`: the server's tunnel endpoint (`server = "wss://…"`) and each
//! tunnel's local service (`local = "8080"`).

use std::fmt;

/// The tunnel endpoint of a ggrok-server, e.g. `ws://tunnel.example.com/$$ggrok`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// Full WebSocket URL.
    pub url: String,
    /// `host:port`, to connect to and for messages.
    pub authority: String,
    /// The host name, for TLS (SNI and certificate check).
    pub host: String,
    /// The tunnel path, e.g. `/$$ggrok`.
    pub path: String,
    /// `wss://`: TLS to the server.
    pub tls: bool,
}

/// A local HTTP service, as `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddr {
    /// `host:port` to connect to; `localhost` when only a port was given.
    pub authority: String,
}

impl fmt::Display for LocalAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority)
    }
}

impl LocalAddr {
    /// Parses `8080`, `host:port`, `[::1]:8080` or `http://host[:port]`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.starts_with("https://") {
            return Err(format!("{raw:?}: https:// local services are not supported yet; use http://"));
        }
        if let Some(rest) = raw.strip_prefix("http://") {
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            if rest.contains('/') {
                return Err(format!("{raw:?}: a path is not allowed; give only scheme, host and port"));
            }
            let authority = if has_port(rest) { rest.to_owned() } else { format!("{rest}:80") };
            return Self::from_authority(raw, authority);
        }
        if raw.contains("://") {
            return Err(format!("{raw:?}: only http:// local services are supported"));
        }
        if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
            return Self::from_authority(raw, format!("localhost:{raw}"));
        }
        if !has_port(raw) {
            return Err(format!(
                "{raw:?} is not a local address: give a port (8080), host:port or http://host:port"
            ));
        }
        Self::from_authority(raw, raw.to_owned())
    }

    fn from_authority(raw: &str, authority: String) -> Result<Self, String> {
        let (host, port) = authority.rsplit_once(':').expect("authority has a port");
        match port.parse::<u16>() {
            Ok(p) if p != 0 => {}
            _ => return Err(format!("{raw:?}: {port:?} is not a port number (1-65535)")),
        }
        if host.is_empty() || authority.parse::<http::uri::Authority>().is_err() {
            return Err(format!("{raw:?} is not a valid host:port"));
        }
        Ok(Self { authority })
    }
}

fn has_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, _)) => !host.ends_with(':') && (!host.contains(':') || host.ends_with(']')),
        None => false,
    }
}

impl ServerUrl {
    /// Parses `ws://host[:port][/path]` or `wss://…`; the path defaults to `/$$ggrok`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let uri: http::Uri = raw.parse().map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
        let scheme = uri.scheme_str().unwrap_or("");
        let (tls, default_port) = match scheme {
            "ws" | "http" => (false, 80),
            "wss" | "https" => (true, 443),
            _ => return Err(format!("{raw:?} must start with ws:// or wss://")),
        };
        let authority = uri.authority().ok_or_else(|| format!("{raw:?} has no host"))?;
        let port = authority.port_u16().unwrap_or(default_port);
        let path = match uri.path() {
            "" | "/" => ggrok_proto::DEFAULT_TUNNEL_PATH,
            p => p,
        };
        let host = authority.host();
        let scheme = if tls { "wss" } else { "ws" };
        Ok(Self {
            url: format!("{scheme}://{host}:{port}{path}"),
            authority: format!("{host}:{port}"),
            host: host.trim_start_matches('[').trim_end_matches(']').to_owned(),
            path: path.to_owned(),
            tls,
        })
    }
}
