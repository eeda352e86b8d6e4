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

/// A local service: `host:port`, and how to speak to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddr {
    /// `host:port` to connect to; `localhost` when only a port was given.
    pub authority: String,
    /// `http://` (also a bare port or `host:port`), `https://` or `h2c://`.
    pub scheme: LocalScheme,
}

/// How a local service is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalScheme {
    /// Plain HTTP: HTTP/1.1, or HTTP/2 with prior knowledge with `app_protocol = "http2"`.
    Http,
    /// HTTP over TLS, the certificate verified (`ca_file`, `tls_skip_verify`).
    Https,
    /// HTTP/2 with prior knowledge, without TLS (gRPC servers): `http://` with `app_protocol = "http2"`.
    H2c,
}

/// `host:port` for plain HTTP (as it always was), else the URL: `https://localhost:8443`.
impl fmt::Display for LocalAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme {
            LocalScheme::Http => f.write_str(&self.authority),
            LocalScheme::Https => write!(f, "https://{}", self.authority),
            LocalScheme::H2c => write!(f, "h2c://{}", self.authority),
        }
    }
}

impl LocalAddr {
    /// Parses `8080`, `host:port`, `[::1]:8080`, `http://host[:port]`, `https://host[:port]` or
    /// `h2c://host[:port]`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let schemes = [
            ("http://", LocalScheme::Http, 80),
            ("https://", LocalScheme::Https, 443),
            ("h2c://", LocalScheme::H2c, 80),
        ];
        for (prefix, scheme, default_port) in schemes {
            let Some(rest) = raw.strip_prefix(prefix) else { continue };
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            if rest.contains('/') {
                return Err(format!("{raw:?}: a path is not allowed; give only scheme, host and port"));
            }
            let authority = if has_port(rest) { rest.to_owned() } else { format!("{rest}:{default_port}") };
            return Self::from_authority(raw, authority, scheme);
        }
        if raw.contains("://") {
            return Err(format!("{raw:?}: a local service is http://, https:// or h2c://"));
        }
        if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
            return Self::from_authority(raw, format!("localhost:{raw}"), LocalScheme::Http);
        }
        if !has_port(raw) {
            return Err(format!(
                "{raw:?} is not a local address: give a port (8080), host:port or http://host:port"
            ));
        }
        Self::from_authority(raw, raw.to_owned(), LocalScheme::Http)
    }

    /// The host part, without brackets: the TLS name of an `https://` service.
    pub fn host(&self) -> &str {
        let (host, _) = self.authority.rsplit_once(':').expect("authority has a port");
        host.trim_start_matches('[').trim_end_matches(']')
    }

    fn from_authority(raw: &str, authority: String, scheme: LocalScheme) -> Result<Self, String> {
        let (host, port) = authority.rsplit_once(':').expect("authority has a port");
        match port.parse::<u16>() {
            Ok(p) if p != 0 => {}
            _ => return Err(format!("{raw:?}: {port:?} is not a port number (1-65535)")),
        }
        if host.is_empty() || authority.parse::<http::uri::Authority>().is_err() {
            return Err(format!("{raw:?} is not a valid host:port"));
        }
        Ok(Self { authority, scheme })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_and_their_schemes() {
        let cases = [
            ("8080", "localhost:8080", LocalScheme::Http, "localhost:8080"),
            ("http://a.test", "a.test:80", LocalScheme::Http, "a.test:80"),
            ("https://localhost:8443/", "localhost:8443", LocalScheme::Https, "https://localhost:8443"),
            ("https://a.test", "a.test:443", LocalScheme::Https, "https://a.test:443"),
            ("h2c://[::1]:50051", "[::1]:50051", LocalScheme::H2c, "h2c://[::1]:50051"),
        ];
        for (raw, authority, scheme, shown) in cases {
            let local = LocalAddr::parse(raw).unwrap();
            assert_eq!((local.authority.as_str(), local.scheme), (authority, scheme), "{raw}");
            assert_eq!(local.to_string(), shown);
        }
        assert_eq!(LocalAddr::parse("h2c://[::1]:50051").unwrap().host(), "::1");
        let err = LocalAddr::parse("ftp://a:1").unwrap_err();
        assert!(err.contains("http://, https:// or h2c://"), "{err}");
        assert!(LocalAddr::parse("https://a:1/x").unwrap_err().contains("a path is not allowed"));
    }
}
