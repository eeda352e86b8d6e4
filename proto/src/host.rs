//! Host names and host patterns.
//!
//! A *host* is a concrete DNS name as it arrives in a `Host` header, normalised: lower case, no port,
//! no trailing dot. A *pattern* is either such a name or `*.` followed by one, where `*` stands for
//! exactly one label. Patterns serve twice: as what a tunnel serves (`*.alice.example.com` routes
//! every direct subdomain) and as what a client may claim in the server's `[[client]]` entries.

use std::fmt;
use thiserror::Error;

/// Longest host name accepted (RFC 1035).
pub const MAX_HOST_LEN: usize = 253;

/// Why a host or pattern was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HostError {
    /// Nothing left after removing the port.
    #[error("empty host name")]
    Empty,
    /// Longer than [`MAX_HOST_LEN`].
    #[error("host name longer than {MAX_HOST_LEN} characters")]
    TooLong,
    /// A character outside letters, digits, `-`, `_` and `.`.
    #[error("illegal character {0:?} in host name")]
    IllegalChar(char),
    /// Empty label (`a..b`), or one starting or ending with `-`.
    #[error("malformed label {0:?} in host name")]
    BadLabel(String),
    /// `*` somewhere else than as the whole first label.
    #[error("a wildcard may only be the whole first label, as in *.example.com")]
    BadWildcard,
    /// The port after `:` is not a number.
    #[error("bad port in host {0:?}")]
    BadPort(String),
}

/// Normalises a `Host` header value (or `:authority`) to a host name: drops the port, lower-cases,
/// drops one trailing dot, and checks the characters. Wildcards are not hosts.
pub fn normalize_host(raw: &str) -> Result<String, HostError> {
    let without_port = strip_port(raw)?;
    let name = without_port.strip_suffix('.').unwrap_or(without_port);
    let name = name.to_ascii_lowercase();
    check_name(&name, false)?;
    Ok(name)
}

fn strip_port(raw: &str) -> Result<&str, HostError> {
    if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal: [::1]:8080. Kept with its brackets; it can only match an exact pattern.
        let end = rest.find(']').ok_or(HostError::IllegalChar('['))?;
        let port = &rest[end + 1..];
        if !port.is_empty() {
            let digits = port.strip_prefix(':').ok_or_else(|| HostError::BadPort(raw.into()))?;
            check_port(digits, raw)?;
        }
        return Ok(&raw[..end + 2]);
    }
    match raw.rsplit_once(':') {
        Some((host, port)) => {
            check_port(port, raw)?;
            Ok(host)
        }
        None => Ok(raw),
    }
}

fn check_port(digits: &str, raw: &str) -> Result<(), HostError> {
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::BadPort(raw.into()));
    }
    Ok(())
}

fn check_name(name: &str, allow_wildcard: bool) -> Result<(), HostError> {
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    if name.len() > MAX_HOST_LEN {
        return Err(HostError::TooLong);
    }
    if name.starts_with('[') {
        // IPv6 literal from strip_port: hex digits and colons only.
        let inner =
            name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).ok_or(HostError::IllegalChar('['))?;
        if inner.is_empty() {
            return Err(HostError::Empty);
        }
        return match inner.chars().find(|c| !(c.is_ascii_hexdigit() || *c == ':' || *c == '.')) {
            Some(c) => Err(HostError::IllegalChar(c)),
            None => Ok(()),
        };
    }
    for (i, label) in name.split('.').enumerate() {
        if label == "*" && i == 0 && allow_wildcard {
            continue;
        }
        if let Some(c) =
            label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '*'))
        {
            return Err(HostError::IllegalChar(c));
        }
        if label.contains('*') {
            return Err(HostError::BadWildcard);
        }
        if label.is_empty() || label.starts_with('-') || label.ends_with('-') {
            return Err(HostError::BadLabel(label.into()));
        }
    }
    Ok(())
}

/// A host name, or `*.` and a host name meaning any one label in front of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Exactly this host.
    Exact(String),
    /// `*.suffix`: any host that is one label followed by `.suffix`.
    Wildcard(String),
}

impl HostPattern {
    /// Parses `api.example.com` or `*.example.com` (case-insensitive, no port).
    pub fn parse(raw: &str) -> Result<Self, HostError> {
        let name = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
        if name.contains(':') && !name.starts_with('[') {
            return Err(HostError::IllegalChar(':'));
        }
        check_name(&name, true)?;
        match name.strip_prefix("*.") {
            Some(suffix) => Ok(Self::Wildcard(suffix.to_owned())),
            None if name == "*" => Err(HostError::BadWildcard),
            None => Ok(Self::Exact(name)),
        }
    }

    /// Whether the concrete, normalised `host` is served by this pattern.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => name == host,
            Self::Wildcard(suffix) => match host.split_once('.') {
                Some((label, rest)) => !label.is_empty() && label != "*" && rest == suffix,
                None => false,
            },
        }
    }

    /// Whether a client allowed this pattern may claim `claim`: an exact claim must match the
    /// pattern; a wildcard claim only an identical wildcard.
    pub fn allows(&self, claim: &HostPattern) -> bool {
        match claim {
            Self::Exact(host) => self.matches(host),
            Self::Wildcard(_) => self == claim,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// The wildcard pattern that would route `host`: `a.example.com` → `*.example.com`.
pub fn wildcard_for(host: &str) -> Option<String> {
    host.split_once('.').map(|(_, rest)| format!("*.{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_port_and_trailing_dot() {
        assert_eq!(normalize_host("API.Example.COM:8080").unwrap(), "api.example.com");
        assert_eq!(normalize_host("api.example.com.").unwrap(), "api.example.com");
        assert_eq!(normalize_host("localhost").unwrap(), "localhost");
        assert_eq!(normalize_host("[::1]:80").unwrap(), "[::1]");
        assert_eq!(normalize_host("127.0.0.1:9").unwrap(), "127.0.0.1");
    }

    #[test]
    fn rejects_illegal_hosts() {
        assert_eq!(normalize_host(""), Err(HostError::Empty));
        assert_eq!(normalize_host(":80"), Err(HostError::Empty));
        assert_eq!(normalize_host("a b.com"), Err(HostError::IllegalChar(' ')));
        assert_eq!(normalize_host("a/b.com"), Err(HostError::IllegalChar('/')));
        assert_eq!(normalize_host("a..com"), Err(HostError::BadLabel(String::new())));
        assert_eq!(normalize_host("-a.com"), Err(HostError::BadLabel("-a".into())));
        assert_eq!(normalize_host("*.a.com"), Err(HostError::BadWildcard));
        assert!(matches!(normalize_host("a.com:http"), Err(HostError::BadPort(_))));
        assert!(matches!(normalize_host("a.com:"), Err(HostError::BadPort(_))));
        assert_eq!(normalize_host(&"a".repeat(300)), Err(HostError::TooLong));
    }

    #[test]
    fn brackets_never_panic() {
        for raw in ["[", "[.", "[]", "[]:80", "[::1", "]", "[::1]x", "[::1]:", "[[::1]]"] {
            assert!(normalize_host(raw).is_err(), "{raw:?} accepted");
            assert!(HostPattern::parse(raw).is_err(), "{raw:?} accepted as a pattern");
        }
        assert_eq!(HostPattern::parse("[::1]").unwrap(), HostPattern::Exact("[::1]".into()));
    }

    #[test]
    fn wildcard_matches_exactly_one_label() {
        let p = HostPattern::parse("*.Example.com").unwrap();
        assert_eq!(p, HostPattern::Wildcard("example.com".into()));
        assert!(p.matches("api.example.com"));
        assert!(!p.matches("example.com"));
        assert!(!p.matches("a.b.example.com"));
        assert!(!p.matches("api.example.com.evil.test"));
        assert!(!p.matches("apiexample.com"));
        assert!(!p.matches("evilexample.com"));
    }

    #[test]
    fn exact_pattern_matches_only_itself() {
        let p = HostPattern::parse("api.example.com").unwrap();
        assert!(p.matches("api.example.com"));
        assert!(!p.matches("x.api.example.com"));
        assert!(!p.matches("api.example.co"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert_eq!(HostPattern::parse("*"), Err(HostError::BadWildcard));
        assert_eq!(HostPattern::parse("a.*.com"), Err(HostError::BadWildcard));
        assert_eq!(HostPattern::parse("*a.com"), Err(HostError::BadWildcard));
        assert_eq!(HostPattern::parse("**.com"), Err(HostError::BadWildcard));
        assert_eq!(HostPattern::parse("a.com:80"), Err(HostError::IllegalChar(':')));
    }

    #[test]
    fn claims_are_checked_against_allowed_patterns() {
        let allowed = HostPattern::parse("*.alice.example.com").unwrap();
        let claim = |s| HostPattern::parse(s).unwrap();
        assert!(allowed.allows(&claim("api.alice.example.com")));
        assert!(allowed.allows(&claim("*.alice.example.com")));
        assert!(!allowed.allows(&claim("*.example.com")));
        assert!(!allowed.allows(&claim("alice.example.com")));
        assert!(!allowed.allows(&claim("*.x.alice.example.com")));
        assert!(!allowed.allows(&claim("api.bob.example.com")));
        let exact = HostPattern::parse("api.example.com").unwrap();
        assert!(exact.allows(&claim("api.example.com")));
        assert!(!exact.allows(&claim("*.example.com")));
    }

    #[test]
    fn wildcard_for_replaces_first_label() {
        assert_eq!(wildcard_for("a.b.c").as_deref(), Some("*.b.c"));
        assert_eq!(wildcard_for("localhost"), None);
    }
}
