//! `[[client]]` of server.toml: who may connect, with which token, and which hosts, domain and
//! TCP ports each may claim.

use super::{PortRanges, Requirements, ports};
use ggrok_proto::diag::ConfigError;
use ggrok_proto::host::HostPattern;
use ggrok_proto::secret::Secret;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    name: Spanned<String>,
    token: Option<Spanned<Secret>>,
    token_sha256: Option<Spanned<String>>,
    hosts: Option<Spanned<Vec<Spanned<String>>>>,
    domain: Option<Spanned<String>>,
    ports: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    require: Option<Vec<Spanned<String>>>,
}

/// One `[[client]]`: a token and the hosts it may claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientEntry {
    /// Name for logs and for the daemon's greeting.
    pub name: String,
    /// SHA-256 of the token; the token itself is not kept.
    pub token_sha256: [u8; 32],
    /// Patterns of hosts this client may claim (with `domain`, `*.DOMAIN` among them), each once,
    /// in the order of the config.
    pub hosts: Vec<HostPattern>,
    /// The client's own domain (`domain = "alice.example.com"`): ggrokd names a tunnel `myapp`
    /// or a random name under it.
    pub domain: Option<String>,
    /// Public TCP ports this client may claim for TCP tunnels (none by default).
    pub ports: PortRanges,
    /// Access rules every tunnel of this client must carry (`require`).
    pub require: Requirements,
}

/// A client's `domain`, normalised, and the pattern of the names under it (`*.DOMAIN`).
fn domain_pattern(domain: &str) -> Result<(String, HostPattern), String> {
    let exact = HostPattern::parse(domain).map_err(|e| e.to_string())?;
    let domain = exact.to_string();
    if domain.starts_with("*.") {
        return Err("a domain, not a pattern: names under it are allowed already".into());
    }
    if !domain.contains('.') {
        return Err("expected a domain with at least two labels, such as alice.example.com".into());
    }
    let pattern = HostPattern::parse(&format!("*.{domain}")).map_err(|e| e.to_string())?;
    Ok((domain, pattern))
}

/// Validates every `[[client]]`; `at` makes the error for a span, a key and a message.
pub(super) fn validate(
    raw: &[RawClient],
    at: impl Fn(std::ops::Range<usize>, &str, String) -> ConfigError,
) -> Result<Vec<ClientEntry>, ConfigError> {
    let mut clients: Vec<ClientEntry> = Vec::with_capacity(raw.len());
    for (i, c) in raw.iter().enumerate() {
        let key = |k: &str| format!("client[{i}].{k}");
        let name = c.name.get_ref().trim();
        if name.is_empty() {
            return Err(at(c.name.span(), &key("name"), "must not be empty".into()));
        }
        if clients.iter().any(|other| other.name == name) {
            return Err(at(c.name.span(), &key("name"), format!("{name:?} is used by another [[client]]")));
        }
        let token_sha256 = match (&c.token, &c.token_sha256) {
            (Some(t), None) => {
                if t.get_ref().expose().len() < 16 {
                    return Err(at(t.span(), &key("token"), "must be at least 16 characters".into()));
                }
                Sha256::digest(t.get_ref().expose().as_bytes()).into()
            }
            (None, Some(h)) => {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(h.get_ref().trim(), &mut digest).map_err(|_| {
                    at(
                        h.span(),
                        &key("token_sha256"),
                        "must be 64 hexadecimal characters (sha256sum of the token)".into(),
                    )
                })?;
                digest
            }
            (Some(t), Some(_)) => {
                return Err(at(
                    t.span(),
                    &key("token"),
                    "give either token or token_sha256, not both".into(),
                ));
            }
            (None, None) => {
                return Err(at(c.name.span(), &key("token"), "missing: give token or token_sha256".into()));
            }
        };
        if let Some(other) = clients.iter().find(|o| o.token_sha256 == token_sha256) {
            return Err(at(
                c.name.span(),
                &key("token"),
                format!("same token as client {:?}; each client needs its own", other.name),
            ));
        }
        let ports = match &c.ports {
            Some(p) => ports::parse(p.get_ref())
                .map_err(|(j, span, e)| at(span, &format!("client[{i}].ports[{j}]"), e))?,
            None => PortRanges::default(),
        };
        let no_hosts: &[Spanned<String>] = &[];
        let raw_hosts = c.hosts.as_ref().map_or(no_hosts, |h| h.get_ref());
        if raw_hosts.is_empty() && ports.is_empty() && c.domain.is_none() {
            let span = c.hosts.as_ref().map_or(c.name.span(), |h| h.span());
            return Err(at(
                span,
                &key("hosts"),
                "must list at least one host or pattern (or give the client a domain or TCP ports)".into(),
            ));
        }
        let mut hosts = Vec::new();
        let domain = match &c.domain {
            Some(d) => {
                let (domain, pattern) = domain_pattern(d.get_ref())
                    .map_err(|e| at(d.span(), &key("domain"), format!("{:?}: {e}", d.get_ref())))?;
                if let Some(other) = clients.iter().find(|o| o.domain.as_deref() == Some(&domain)) {
                    let why = format!("{domain:?} is already client {:?}'s domain", other.name);
                    return Err(at(d.span(), &key("domain"), why));
                }
                hosts.push(pattern);
                Some(domain)
            }
            None => None,
        };
        for (j, h) in raw_hosts.iter().enumerate() {
            let pattern = HostPattern::parse(h.get_ref()).map_err(|e| {
                at(h.span(), &format!("client[{i}].hosts[{j}]"), format!("{:?}: {e}", h.get_ref()))
            })?;
            // Listed twice, or `*.DOMAIN` again beside `domain`: kept once, in the first place.
            if !hosts.contains(&pattern) {
                hosts.push(pattern);
            }
        }
        let require = match &c.require {
            Some(list) => Requirements::parse(list)
                .map_err(|(j, span, e)| at(span, &format!("client[{i}].require[{j}]"), e))?,
            None => Requirements::default(),
        };
        clients.push(ClientEntry { name: name.to_owned(), token_sha256, hosts, domain, ports, require });
    }
    Ok(clients)
}
