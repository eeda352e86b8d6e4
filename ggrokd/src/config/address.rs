//! The addresses in `ggrokd.toml`: the server's tunnel endpoint (`server = "wss://…"`) and each
//! tunnel's local service (`local = "8080"`), read by [`ggrok_proto::local`], which ggrokctl
//! shares.

pub use ggrok_proto::local::{LocalAddr, LocalScheme};

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

impl ServerUrl {
    /// Parses `ws://host[:port][/path]` or `wss://…`; the path defaults to `/$$ggrok`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let uri: http::Uri = raw.parse().map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
        let scheme = uri.scheme_str().unwrap_or("");
        let (tls, default_port) = match scheme {
            "ws" | "http" => (false, 80),
            "wss" | "https" => (true, 443),
            _ => {
                return Err(format!(
                    "{raw:?} must start with ws:// or wss:// (http:// and https:// mean the same)"
                ));
            }
        };
        let authority = uri.authority().ok_or_else(|| format!("{raw:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "{raw:?}: a user or password in the URL is not used; the token goes in `token` or `token_file`"
            ));
        }
        if uri.query().is_some() {
            return Err(format!("{raw:?}: a query (?…) is not allowed; give scheme, host, port and path"));
        }
        // `http` reads a port it cannot use (":99999", ":abc") as none: it must not become 80.
        let after_host = authority.as_str().rsplit_once(']').map_or(authority.as_str(), |(_, rest)| rest);
        let port = match after_host.rsplit_once(':') {
            None => default_port,
            Some((_, port)) => match port.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return Err(format!("{raw:?}: {port:?} is not a port number (1-65535)")),
            },
        };
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
