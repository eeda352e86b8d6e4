//! The `[[tunnel]]` tables of `ggrokd.toml`: an HTTP tunnel (`host = "…"`) or a TCP tunnel
//! (`tcp = PORT`, 0 for any port the server picks), each with its `local` service and its access
//! rules ([`super::access`]).

use super::{AppProtocol, LocalAddr, LocalHttp, TunnelSpec, access};
use ggrok_proto::diag::ConfigError;
use ggrok_proto::host::HostPattern;
use serde::Deserialize;
use std::fmt;
use std::path::Path;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTunnel {
    host: Option<Spanned<String>>,
    tcp: Option<Spanned<i64>>,
    local: Spanned<String>,
    host_header: Option<Spanned<String>>,
    proxy_protocol: Option<Spanned<bool>>,
    app_protocol: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    tls_skip_verify: Option<Spanned<bool>>,
    basic_auth: access::RawList,
    allow_ips: access::RawList,
    deny_ips: access::RawList,
}

/// What a tunnel serves publicly: a host (or `*.` pattern), or a TCP port of the server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Public {
    /// Public HTTP(S) requests for this host or pattern.
    Http(HostPattern),
    /// Public TCP connections to this port of the server; 0 until the server picked one.
    Tcp(u16),
}

impl Public {
    /// The TCP port, for a TCP tunnel.
    pub fn tcp_port(&self) -> Option<u16> {
        match self {
            Public::Tcp(port) => Some(*port),
            Public::Http(_) => None,
        }
    }

    /// Reads the key a tunnel is known by (its `Display`): a host or pattern, or `tcp:PORT`.
    pub fn parse_key(key: &str) -> Result<Self, String> {
        match key.strip_prefix("tcp:") {
            Some(port) => port.parse().map(Public::Tcp).map_err(|_| format!("{key:?}: not a TCP port")),
            None => HostPattern::parse(key).map(Public::Http).map_err(|e| format!("{key:?}: {e}")),
        }
    }
}

impl From<HostPattern> for Public {
    fn from(host: HostPattern) -> Self {
        Public::Http(host)
    }
}

/// The key the tunnel table and the wire know a tunnel by: the host or pattern, or `tcp:PORT`.
impl fmt::Display for Public {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Public::Http(host) => write!(f, "{host}"),
            Public::Tcp(port) => write!(f, "tcp:{port}"),
        }
    }
}

/// Validates the tunnels, in file order.
/// Validates the `[[tunnel]]`s; `several` says why the daemon reaches several servers (or
/// replicas), where a TCP tunnel's port must be given rather than picked (`tcp = 0`).
pub(super) fn parse(
    path: &Path,
    text: &str,
    raw: &[RawTunnel],
    several: Option<&str>,
) -> Result<Vec<TunnelSpec>, ConfigError> {
    let at =
        |span: std::ops::Range<usize>, key: &str, msg: String| ConfigError::at(path, text, span, key, msg);
    let mut tunnels: Vec<TunnelSpec> = Vec::with_capacity(raw.len());
    for (i, t) in raw.iter().enumerate() {
        let key = |k: &str| format!("tunnel[{i}].{k}");
        let (public, span, name) = match (&t.host, &t.tcp) {
            (Some(h), None) => {
                let host = HostPattern::parse(h.get_ref())
                    .map_err(|e| at(h.span(), &key("host"), format!("{:?}: {e}", h.get_ref())))?;
                // A bare name (`myapp`) goes under the client's domain only through `ggrokctl add`,
                // which knows it from the server and writes the full name here.
                let raw = h.get_ref().trim();
                if !raw.contains('.') && !raw.starts_with('[') {
                    return Err(at(
                        h.span(),
                        &key("host"),
                        format!(
                            "{raw:?} is not a full host name: give one with its domain \
                             ({raw}.example.com), or run `ggrokctl add {raw} PORT`, which puts a bare \
                             name under your domain and writes it here"
                        ),
                    ));
                }
                (Public::Http(host), h.span(), "host")
            }
            (None, Some(p)) => {
                let port = u16::try_from(*p.get_ref()).map_err(|_| {
                    at(
                        p.span(),
                        &key("tcp"),
                        format!("{}: expected a port from 0 to 65535 (0: any the server picks)", p.get_ref()),
                    )
                })?;
                if let Some(why) = several.filter(|_| port == 0) {
                    return Err(at(
                        p.span(),
                        &key("tcp"),
                        format!(
                            "tcp = 0 lets the server pick a port, and {why} each would pick its own: give \
                             the port (one of the server's [[client]] ports)"
                        ),
                    ));
                }
                if port == 0 && tunnels.iter().any(|o| o.host == Public::Tcp(0)) {
                    return Err(at(
                        p.span(),
                        &key("tcp"),
                        "only one tunnel at a time may ask for any port (tcp = 0); start ggrokd to have the \
                         first one's port saved, or give a port"
                            .into(),
                    ));
                }
                (Public::Tcp(port), p.span(), "tcp")
            }
            (Some(h), Some(_)) => {
                return Err(at(
                    h.span(),
                    &key("host"),
                    "give either host (HTTP) or tcp (a TCP port), not both".into(),
                ));
            }
            (None, None) => {
                return Err(at(
                    t.local.span(),
                    &key("host"),
                    "missing: give host = \"…\" for an HTTP tunnel or tcp = PORT for a TCP tunnel".into(),
                ));
            }
        };
        if public != Public::Tcp(0) && tunnels.iter().any(|other| other.host == public) {
            return Err(at(span, &key(name), format!("{public} is defined twice")));
        }
        let local_raw = t.local.get_ref();
        let parsed = if public.tcp_port().is_some() {
            LocalAddr::parse_tcp(local_raw)
        } else {
            LocalAddr::parse(local_raw)
        };
        let mut local = parsed.map_err(|e| at(t.local.span(), &key("local"), e))?;
        let local_http = local_http(t, public.tcp_port().is_some(), path, &mut local)
            .map_err(|(span, k, e)| at(span.unwrap_or(t.local.span()), &key(k), e))?;
        let rewrite_host = match t.host_header.as_ref().map(|h| (h, h.get_ref().as_str())) {
            Some((h, _)) if public.tcp_port().is_some() => {
                return Err(at(h.span(), &key("host_header"), "applies to HTTP tunnels only".into()));
            }
            None | Some((_, "keep")) => false,
            Some((_, "rewrite")) => true,
            Some((h, other)) => {
                return Err(at(
                    h.span(),
                    &key("host_header"),
                    format!("{other:?}: expected \"keep\" or \"rewrite\""),
                ));
            }
        };
        let proxy_protocol = match &t.proxy_protocol {
            Some(p) if public.tcp_port().is_none() => {
                return Err(at(p.span(), &key("proxy_protocol"), "applies to TCP tunnels only".into()));
            }
            Some(p) => *p.get_ref(),
            None => false,
        };
        let raw_access =
            access::RawAccess { basic_auth: &t.basic_auth, allow_ips: &t.allow_ips, deny_ips: &t.deny_ips };
        let access = access::parse(path, text, i, raw_access, public.tcp_port().is_some())?;
        tunnels.push(TunnelSpec { host: public, local, local_http, rewrite_host, proxy_protocol, access });
    }
    Ok(tunnels)
}

type KeyFailure = (Option<std::ops::Range<usize>>, &'static str, String);

/// `app_protocol`, `ca_file` (relative to the config file) and `tls_skip_verify`, checked against
/// the scheme of `local`.
fn local_http(t: &RawTunnel, tcp: bool, path: &Path, local: &mut LocalAddr) -> Result<LocalHttp, KeyFailure> {
    let spans = [
        ("app_protocol", t.app_protocol.as_ref().map(Spanned::span)),
        ("ca_file", t.ca_file.as_ref().map(Spanned::span)),
        ("tls_skip_verify", t.tls_skip_verify.as_ref().map(Spanned::span)),
    ];
    let span_of = |k: &str| spans.iter().find(|(name, _)| *name == k).and_then(|(_, s)| s.clone());
    if tcp && let Some((k, span)) = spans.iter().find(|(_, s)| s.is_some()) {
        return Err((span.clone(), k, "applies to HTTP tunnels only".into()));
    }
    let app_protocol = match &t.app_protocol {
        Some(p) => Some(AppProtocol::parse(p.get_ref()).map_err(|e| (Some(p.span()), "app_protocol", e))?),
        None => None,
    };
    let ca_file = t.ca_file.as_ref().map(|f| path.parent().unwrap_or(Path::new(".")).join(f.get_ref()));
    let skip_verify = t.tls_skip_verify.as_ref().is_some_and(|s| *s.get_ref());
    LocalHttp::new(local, app_protocol, ca_file.as_deref(), skip_verify)
        .map_err(|e| (span_of(e.key), e.key, e.message))
}

#[cfg(test)]
mod tests {
    use crate::config::DaemonConfig;
    use std::path::Path;

    fn parse(tunnels: &str) -> Result<DaemonConfig, String> {
        DaemonConfig::parse(Path::new("g.toml"), &format!("server = \"ws://t\"\n{tunnels}"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn tcp_tunnels() {
        let c = parse(
            "[[tunnel]]\ntcp = 5432\nlocal = \"5433\"\nproxy_protocol = true\n[[tunnel]]\ntcp = 0\nlocal = \"127.0.0.1:22\"\n",
        )
        .unwrap();
        assert_eq!(c.tunnels[0].host.to_string(), "tcp:5432");
        assert_eq!(c.tunnels[0].local.authority, "localhost:5433");
        assert_eq!(c.tunnels[1].host.tcp_port(), Some(0));
        assert!(c.tunnels[0].proxy_protocol && !c.tunnels[1].proxy_protocol);
        assert_eq!(super::Public::parse_key("tcp:5432").unwrap(), c.tunnels[0].host);
    }

    #[test]
    fn any_port_needs_one_server() {
        let tunnel = "[[tunnel]]\ntcp = 0\nlocal = \"22\"\n";
        let several = format!("server = [\"ws://a\", \"ws://b\"]\n{tunnel}");
        let err = DaemonConfig::parse(Path::new("g.toml"), &several).unwrap_err().to_string();
        assert!(
            err.starts_with("g.toml:3: tunnel[0].tcp: tcp = 0 lets the server pick")
                && err.contains("several servers"),
            "{err}"
        );
        let all = format!("server = \"ws://a\"\nreplicas = \"all\"\n{tunnel}");
        let err = DaemonConfig::parse(Path::new("g.toml"), &all).unwrap_err().to_string();
        assert!(err.starts_with("g.toml:4: tunnel[0].tcp: ") && err.contains("replicas = \"all\""), "{err}");
        let given = "server = [\"ws://a\", \"ws://b\"]\n[[tunnel]]\ntcp = 2222\nlocal = \"22\"\n";
        assert!(DaemonConfig::parse(Path::new("g.toml"), given).is_ok(), "a given port is fine");
    }

    #[test]
    fn local_protocols_and_tls_keys() {
        let c = parse(
            "[[tunnel]]\nhost = \"g.test\"\nlocal = \"http://127.0.0.1:50051\"\napp_protocol = \"http2\"\n\
             [[tunnel]]\nhost = \"s.test\"\nlocal = \"https://localhost:8443\"\ntls_skip_verify = true\n",
        )
        .unwrap();
        assert_eq!(c.tunnels[0].local.to_string(), "h2c://127.0.0.1:50051");
        assert_eq!(c.tunnels[0].local_http.app_protocol, super::AppProtocol::Http2);
        assert!(c.tunnels[1].local_http.skips_verify());
        let cases = [
            (
                "[[tunnel]]\nhost = \"a.test\"\nlocal = \"8080\"\ntls_skip_verify = true\n",
                "g.toml:5: tunnel[0].tls_skip_verify: applies to https://",
            ),
            (
                "[[tunnel]]\nhost = \"a.test\"\nlocal = \"h2c://a:1\"\napp_protocol = \"http1\"\n",
                "g.toml:5: tunnel[0].app_protocol: \"http1\" contradicts",
            ),
            (
                "[[tunnel]]\nhost = \"a.test\"\nlocal = \"https://a:1\"\napp_protocol = \"grpc\"\n",
                "g.toml:5: tunnel[0].app_protocol: \"grpc\": expected",
            ),
            (
                "[[tunnel]]\nhost = \"a.test\"\nlocal = \"https://a:1\"\nca_file = \"nope.pem\"\n",
                "g.toml:5: tunnel[0].ca_file: cannot read CA certificates from nope.pem",
            ),
            (
                "[[tunnel]]\ntcp = 1\nlocal = \"1\"\napp_protocol = \"http2\"\n",
                "g.toml:5: tunnel[0].app_protocol: applies to HTTP tunnels only",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.starts_with(expected), "{text}: {err}");
        }
    }

    #[test]
    fn bad_tcp_tunnels_name_line_and_key() {
        let cases = [
            ("[[tunnel]]\ntcp = 70000\nlocal = \"1\"\n", "g.toml:3: tunnel[0].tcp: 70000: expected a port"),
            (
                "[[tunnel]]\ntcp = 1\nhost = \"a.test\"\nlocal = \"1\"\n",
                "g.toml:4: tunnel[0].host: give either",
            ),
            ("[[tunnel]]\nlocal = \"1\"\n", "g.toml:3: tunnel[0].host: missing"),
            // The value quoted once (it used to read `"99999": "99999" is not…`).
            (
                "[[tunnel]]\ntcp = 1\nlocal = \"99999\"\n",
                "g.toml:4: tunnel[0].local: \"99999\" is not a port number (1-65535)",
            ),
            (
                "[[tunnel]]\ntcp = 1\nlocal = \"http://a:1\"\n",
                "g.toml:4: tunnel[0].local: \"http://a:1\": a TCP",
            ),
            (
                "[[tunnel]]\ntcp = 1\nlocal = \"1\"\nhost_header = \"keep\"\n",
                "g.toml:5: tunnel[0].host_header: applies",
            ),
            (
                "[[tunnel]]\nhost = \"a.test\"\nlocal = \"1\"\nproxy_protocol = true\n",
                "g.toml:5: tunnel[0].proxy_protocol: applies to TCP tunnels only",
            ),
            (
                "[[tunnel]]\ntcp = 1\nlocal = \"1\"\n[[tunnel]]\ntcp = 1\nlocal = \"2\"\n",
                "g.toml:6: tunnel[1].tcp: tcp:1 is defined twice",
            ),
            (
                "[[tunnel]]\ntcp = 0\nlocal = \"1\"\n[[tunnel]]\ntcp = 0\nlocal = \"2\"\n",
                "g.toml:6: tunnel[1].tcp: only one tunnel",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.starts_with(expected), "{text}: {err}");
        }
    }
}
