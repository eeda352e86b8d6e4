//! `public_url`: the URL users reach the server's tunnels at, when it is not the server's own
//! listener, as behind a load balancer that listens on 443 (and perhaps ends TLS) in front of
//! replicas listening on 8080. `ggrokctl add` and `list` show it, and `[tls] redirect_http`
//! redirects to its port when it is an https:// one.

/// A parsed `public_url`: `http://{host}` or `https://{host}`, with an optional `:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicUrl {
    /// `https://` (else `http://`).
    pub https: bool,
    /// The port, when not the scheme's default.
    pub port: Option<u16>,
}

/// What a wrong `public_url` is told.
const FORM: &str = "must be http:// or https://, then {host}, then an optional :port, as in \"https://{host}\" or \"http://{host}:8080\"";

impl PublicUrl {
    /// Parses `text`; the error says what the value must be.
    pub fn parse(text: &str) -> Result<Self, String> {
        let wrong = || format!("{text:?} {FORM}");
        let scheme_of = |prefix: &str| {
            text.get(..prefix.len()).filter(|s| s.eq_ignore_ascii_case(prefix)).map(|_| &text[prefix.len()..])
        };
        let (https, rest) = match (scheme_of("https://"), scheme_of("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => return Err(wrong()),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let port = match rest.strip_prefix("{host}").ok_or_else(wrong)? {
            "" => None,
            port => match port
                .strip_prefix(':')
                .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u16>().ok())
            {
                Some(0) | None => return Err(wrong()),
                Some(p) if p == if https { 443 } else { 80 } => None,
                Some(p) => Some(p),
            },
        };
        Ok(Self { https, port })
    }

    /// The URL of `host` (a host or `*.` pattern).
    pub fn url(&self, host: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        match self.port {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_hosts_and_ports() {
        let url = |t: &str| PublicUrl::parse(t).unwrap().url("a.example.com");
        assert_eq!(url("https://{host}"), "https://a.example.com");
        assert_eq!(url("https://{host}/"), "https://a.example.com");
        assert_eq!(url("https://{host}:443"), "https://a.example.com");
        assert_eq!(url("https://{host}:8443"), "https://a.example.com:8443");
        assert_eq!(url("http://{host}"), "http://a.example.com");
        assert_eq!(url("http://{host}:8080"), "http://a.example.com:8080");
        assert_eq!(url("HTTPS://{host}"), "https://a.example.com");
    }

    #[test]
    fn anything_else_is_refused_with_the_form() {
        for bad in [
            "{host}",
            "ftp://{host}",
            "https://example.com",
            "https://{host}:0",
            "https://{host}:x",
            "https://{host}/path",
            "https://{host}:99999",
            "https://{host}:+8443",
            "https://x.{host}",
        ] {
            let e = PublicUrl::parse(bad).unwrap_err();
            assert!(e.contains("must be http:// or https://"), "{bad}: {e}");
        }
    }
}
