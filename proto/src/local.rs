//! A tunnel's local service as written (`8080`, `host:port`, `http://…`, `https://…`, `h2c://…`):
//! ggrokd reads it from `ggrokd.toml` and from `ggrokctl add`, and ggrokctl checks it before it
//! sends anything, so both say the same about a wrong one.

use std::fmt;

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
    /// `h2c://host[:port]`. The error quotes `raw` once, such as `"99999" is not a port number
    /// (1-65535)`.
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

    /// Parses the local service of a TCP tunnel: a port or `host:port`, without a scheme.
    pub fn parse_tcp(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.contains("://") {
            return Err(format!(
                "{trimmed:?}: a TCP tunnel's local service is a port or host:port, without a scheme"
            ));
        }
        Self::parse(trimmed)
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
            // A bare port is the whole of `raw`: quoted once.
            _ if port == raw => return Err(format!("{raw:?} is not a port number (1-65535)")),
            _ => return Err(format!("{raw:?}: the port {port:?} is not a port number (1-65535)")),
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

    #[test]
    fn errors_quote_the_value_once() {
        let cases = [
            ("99999", "\"99999\" is not a port number (1-65535)"),
            ("0", "\"0\" is not a port number (1-65535)"),
            ("a.test:99999", "\"a.test:99999\": the port \"99999\" is not a port number (1-65535)"),
            ("http://a:0", "\"http://a:0\": the port \"0\" is not a port number (1-65535)"),
            ("abc", "\"abc\" is not a local address: give a port (8080), host:port or http://host:port"),
        ];
        for (raw, expected) in cases {
            assert_eq!(LocalAddr::parse(raw).unwrap_err(), expected, "{raw}");
        }
        let err = LocalAddr::parse_tcp("http://db:5432").unwrap_err();
        assert_eq!(
            err,
            "\"http://db:5432\": a TCP tunnel's local service is a port or host:port, without a scheme"
        );
        assert_eq!(LocalAddr::parse_tcp(" db:5432 ").unwrap().authority, "db:5432");
    }
}
