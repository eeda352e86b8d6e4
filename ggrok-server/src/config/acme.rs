//! `[acme]` of server.toml: certificates from an RFC 8555 CA (Let's Encrypt by default) for the
//! HTTPS listener, next to or instead of `[[tls.certificate]]` files.
//!
//! ```toml
//! [acme]
//! directory = "https://acme-v02.api.letsencrypt.org/directory"  # default; "letsencrypt-staging" for trials
//! email = "ops@example.com"                 # optional contact for the CA
//! cache_dir = "/var/lib/ggrok-server/acme"  # default: $STATE_DIRECTORY/acme
//! names = ["tunnel.example.com"]            # ordered at start, renewed forever
//! on_demand = true                          # exact hosts authenticated clients claim (default false)
//! challenge = ["http-01", "tls-alpn-01"]    # the default: both, tried in this order
//! max_orders_per_day = 30                   # orders in any 24 hours (default 30)
//! ca_file = "ca.pem"                        # trust this CA for the directory instead of the system roots
//! ```

use ggrok_proto::diag::ConfigError;
use ggrok_proto::host::HostPattern;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Let's Encrypt's production directory, the default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory: untrusted certificates, generous rate limits.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
/// Default `max_orders_per_day`.
pub const DEFAULT_MAX_ORDERS_PER_DAY: u32 = 30;
/// Where the cache goes when neither `cache_dir` nor `$STATE_DIRECTORY` says.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ggrok-server";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcme {
    directory: Option<Spanned<String>>,
    email: Option<Spanned<String>>,
    cache_dir: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    names: Option<Spanned<Vec<Spanned<String>>>>,
    on_demand: Option<Spanned<bool>>,
    challenge: Option<Spanned<Vec<Spanned<String>>>>,
    max_orders_per_day: Option<Spanned<i64>>,
}

/// How the CA may check that this server answers for a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChallengeKind {
    /// A token under `/.well-known/acme-challenge/` on the plain listener (port 80 for the CA).
    Http01,
    /// A special certificate for the `acme-tls/1` ALPN protocol on the TLS listener (port 443).
    TlsAlpn01,
}

impl ChallengeKind {
    /// The name in the config and in RFC 8555 / RFC 8737.
    pub fn name(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// Settings of the ACME account: used when the server starts, a change needs a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeAccount {
    /// The CA's directory URL.
    pub directory: String,
    /// Contact address given to the CA.
    pub email: Option<String>,
    /// Where the account, keys and certificates are kept (0700, files 0600).
    pub cache_dir: PathBuf,
    /// A CA (PEM) to trust for the directory's HTTPS instead of the system roots.
    pub ca_file: Option<PathBuf>,
}

/// The validated `[acme]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The account; restart-only.
    pub account: AcmeAccount,
    /// Exact names ordered at start and kept renewed.
    pub names: Vec<String>,
    /// Whether exact hosts that authenticated clients claim get certificates too.
    pub on_demand: bool,
    /// Challenge types, in the order they are tried: a failed validation moves to the next.
    pub challenges: Vec<ChallengeKind>,
    /// Orders (successful or not) allowed in any 24 hours.
    pub max_orders_per_day: u32,
}

impl RawAcme {
    /// Validates `[acme]`. `state_dir` is `$STATE_DIRECTORY` (systemd's `StateDirectory=`).
    pub(super) fn validate(
        &self,
        path: &Path,
        text: &str,
        state_dir: Option<&str>,
    ) -> Result<AcmeSettings, ConfigError> {
        let at = |span, key: &str, msg: String| ConfigError::at(path, text, span, format!("acme.{key}"), msg);
        let directory = match &self.directory {
            Some(d) => match d.get_ref().as_str() {
                "letsencrypt" => LETS_ENCRYPT.to_owned(),
                "letsencrypt-staging" => LETS_ENCRYPT_STAGING.to_owned(),
                url if url.starts_with("https://") && url.len() > "https://".len() && !url.contains(' ') => {
                    url.to_owned()
                }
                url => {
                    return Err(at(
                        d.span(),
                        "directory",
                        format!(
                            "{url:?} is not an https:// URL of an ACME directory (or \"letsencrypt\", \
                             \"letsencrypt-staging\")"
                        ),
                    ));
                }
            },
            None => LETS_ENCRYPT.to_owned(),
        };
        let email = match &self.email {
            Some(e) => {
                let value = e.get_ref().trim();
                let ok = value.split_once('@').is_some_and(|(user, domain)| {
                    !user.is_empty() && domain.contains('.') && !value.contains([' ', ',', ':'])
                });
                if !ok {
                    return Err(at(
                        e.span(),
                        "email",
                        format!("{value:?} is not an address such as \"ops@example.com\""),
                    ));
                }
                Some(value.to_owned())
            }
            None => None,
        };
        let cache_dir = match &self.cache_dir {
            Some(c) if c.get_ref().trim().is_empty() => {
                return Err(at(c.span(), "cache_dir", "must not be empty".into()));
            }
            Some(c) => crate::tls::relative_to(path, c.get_ref()),
            None => {
                // systemd may list several state directories, separated by colons.
                let base = state_dir.and_then(|s| s.split(':').next()).filter(|s| !s.is_empty());
                Path::new(base.unwrap_or(DEFAULT_STATE_DIR)).join("acme")
            }
        };
        let ca_file = self.ca_file.as_ref().map(|c| crate::tls::relative_to(path, c.get_ref()));
        let mut names: Vec<String> = Vec::new();
        for (i, n) in
            self.names.as_ref().map(|n| n.get_ref().as_slice()).unwrap_or_default().iter().enumerate()
        {
            let key = format!("names[{i}]");
            let raw = n.get_ref();
            let name = match HostPattern::parse(raw) {
                Ok(HostPattern::Exact(name)) => name,
                Ok(HostPattern::Wildcard(_)) => {
                    return Err(at(
                        n.span(),
                        &key,
                        format!(
                            "{raw:?}: wildcard certificates need the DNS-01 challenge, which ggrok does not \
                             do: use a [[tls.certificate]] file for them"
                        ),
                    ));
                }
                Err(e) => return Err(at(n.span(), &key, format!("{raw:?}: {e}"))),
            };
            if name.parse::<std::net::IpAddr>().is_ok() || !name.contains('.') {
                return Err(at(
                    n.span(),
                    &key,
                    format!("{raw:?}: ACME certificates need a DNS name such as tunnel.example.com"),
                ));
            }
            if names.contains(&name) {
                return Err(at(n.span(), &key, format!("{raw:?} is listed twice")));
            }
            names.push(name);
        }
        let on_demand = self.on_demand.as_ref().is_some_and(|o| *o.get_ref());
        let challenges = match &self.challenge {
            Some(list) => {
                if list.get_ref().is_empty() {
                    return Err(at(
                        list.span(),
                        "challenge",
                        "list at least one of \"http-01\", \"tls-alpn-01\"".into(),
                    ));
                }
                let mut kinds = Vec::new();
                for (i, c) in list.get_ref().iter().enumerate() {
                    let kind = match c.get_ref().as_str() {
                        "http-01" => ChallengeKind::Http01,
                        "tls-alpn-01" => ChallengeKind::TlsAlpn01,
                        other => {
                            return Err(at(
                                c.span(),
                                &format!("challenge[{i}]"),
                                format!(
                                    "{other:?}: use \"http-01\" or \"tls-alpn-01\" (dns-01 is not supported)"
                                ),
                            ));
                        }
                    };
                    if kinds.contains(&kind) {
                        return Err(at(
                            c.span(),
                            &format!("challenge[{i}]"),
                            format!("{:?} is listed twice", kind.name()),
                        ));
                    }
                    kinds.push(kind);
                }
                kinds
            }
            None => vec![ChallengeKind::Http01, ChallengeKind::TlsAlpn01],
        };
        let max_orders_per_day = match &self.max_orders_per_day {
            Some(m) => u32::try_from(*m.get_ref())
                .ok()
                .filter(|m| (1..=10_000).contains(m))
                .ok_or_else(|| at(m.span(), "max_orders_per_day", "must be between 1 and 10000".into()))?,
            None => DEFAULT_MAX_ORDERS_PER_DAY,
        };
        if names.is_empty() && !on_demand {
            let span = self.names.as_ref().map(|n| n.span()).or(self.directory.as_ref().map(|d| d.span()));
            let msg = "nothing to order: list names, or set on_demand = true".to_owned();
            return Err(match span {
                Some(span) => at(span, "names", msg),
                None => ConfigError::file(path, format!("acme.names: {msg}")),
            });
        }
        Ok(AcmeSettings {
            account: AcmeAccount { directory, email, cache_dir, ca_file },
            names,
            on_demand,
            challenges,
            max_orders_per_day,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str, state_dir: Option<&str>) -> Result<AcmeSettings, ConfigError> {
        let text = format!("[acme]\n{body}");
        #[derive(Deserialize)]
        struct Wrap {
            acme: RawAcme,
        }
        let raw: Wrap = toml::from_str(&text).unwrap();
        raw.acme.validate(Path::new("/etc/ggrok/server.toml"), &text, state_dir)
    }

    #[test]
    fn defaults() {
        let s = parse("names = [\"Tunnel.Example.com\"]\n", None).unwrap();
        assert_eq!(s.account.directory, LETS_ENCRYPT);
        assert_eq!(s.account.cache_dir, Path::new("/var/lib/ggrok-server/acme"));
        assert_eq!(s.names, ["tunnel.example.com"]);
        assert_eq!(s.challenges, [ChallengeKind::Http01, ChallengeKind::TlsAlpn01]);
        assert_eq!(s.max_orders_per_day, DEFAULT_MAX_ORDERS_PER_DAY);
        assert!(!s.on_demand);
        let s =
            parse("on_demand = true\ndirectory = \"letsencrypt-staging\"\n", Some("/var/lib/x:/var/lib/y"))
                .unwrap();
        assert_eq!(s.account.directory, LETS_ENCRYPT_STAGING);
        assert_eq!(s.account.cache_dir, Path::new("/var/lib/x/acme"));
        let s = parse("on_demand = true\ncache_dir = \"cache\"\nca_file = \"ca.pem\"\n", None).unwrap();
        assert_eq!(s.account.cache_dir, Path::new("/etc/ggrok/cache"));
        assert_eq!(s.account.ca_file.as_deref(), Some(Path::new("/etc/ggrok/ca.pem")));
    }

    #[test]
    fn errors_name_line_and_key() {
        let cases = [
            ("names = [\"*.example.com\"]\n", "2: acme.names[0]: \"*.example.com\": wildcard"),
            ("names = [\"127.0.0.1\"]\n", "acme.names[0]: \"127.0.0.1\": ACME certificates need a DNS name"),
            ("names = [\"a.test\", \"A.test\"]\n", "acme.names[1]: \"A.test\" is listed twice"),
            ("directory = \"http://x\"\non_demand = true\n", "2: acme.directory"),
            ("email = \"nobody\"\non_demand = true\n", "acme.email"),
            ("challenge = [\"dns-01\"]\non_demand = true\n", "acme.challenge[0]: \"dns-01\""),
            ("challenge = []\non_demand = true\n", "acme.challenge: list at least one"),
            ("max_orders_per_day = 0\non_demand = true\n", "acme.max_orders_per_day"),
            ("names = []\n", "acme.names: nothing to order"),
            ("email = \"a@b.c\"\n", "acme.names: nothing to order"),
        ];
        for (body, expected) in cases {
            let err = parse(body, None).unwrap_err().to_string();
            assert!(err.contains(expected), "{body:?}: {err}");
        }
    }
}
