//! Per-tunnel access rules, enforced by the server before a public request or connection reaches
//! the tunnel: `basic_auth` (users with a bcrypt or argon2 hash, never a password), `allow_ips` and
//! `deny_ips` (CIDR lists on the client's address). ggrokd reads them from its config and sends
//! them with the claim (protocol version 4); the server checks them
//! (`ggrok-server/src/access/`). This module only parses and matches; it holds no crypto, so that
//! ggrokd can check its file without verifying anything.

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Largest argon2 memory cost accepted, in KiB: a hash whose check would take more is refused,
/// since the server pays it for every login (64 MiB; the default hash uses 19 MiB).
pub const MAX_ARGON2_MEMORY_KIB: u32 = 64 * 1024;
/// Largest argon2 time cost (passes) accepted.
pub const MAX_ARGON2_TIME: u32 = 10;
/// Largest argon2 parallelism accepted.
pub const MAX_ARGON2_LANES: u32 = 8;
/// Largest bcrypt cost accepted (2^14 rounds, about a second on a slow core).
pub const MAX_BCRYPT_COST: u32 = 14;
/// Most `basic_auth` users, `allow_ips` or `deny_ips` entries on one tunnel (they travel in one
/// control message, whose size is capped).
pub const MAX_RULES: usize = 64;

/// A tunnel's access rules. Empty (the default) means anyone may use the tunnel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRules {
    /// Users allowed in with HTTP Basic authentication; empty: no authentication.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub basic_auth: Vec<Credential>,
    /// When not empty, only clients in one of these networks get through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_ips: Vec<Cidr>,
    /// Clients in one of these networks are refused, whatever `allow_ips` says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_ips: Vec<Cidr>,
}

impl AccessRules {
    /// Whether there are no rules at all.
    pub fn is_empty(&self) -> bool {
        self.basic_auth.is_empty() && !self.has_ip_rules()
    }

    /// Whether `allow_ips` or `deny_ips` says anything.
    pub fn has_ip_rules(&self) -> bool {
        !self.allow_ips.is_empty() || !self.deny_ips.is_empty()
    }

    /// Whether a client at `ip` may come in: not in `deny_ips`, and in `allow_ips` when that is
    /// given. An IPv4 address seen as IPv6 (`::ffff:a.b.c.d`, from a dual-stack listener) is
    /// matched as the IPv4 address it is.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if self.deny_ips.iter().any(|n| n.contains(ip)) {
            return false;
        }
        self.allow_ips.is_empty() || self.allow_ips.iter().any(|n| n.contains(ip))
    }

    /// Checks what came over the wire (the server's side of what ggrokd's config checks).
    pub fn validate(&self) -> Result<(), String> {
        for (key, n) in [
            ("basic_auth", self.basic_auth.len()),
            ("allow_ips", self.allow_ips.len()),
            ("deny_ips", self.deny_ips.len()),
        ] {
            if n > MAX_RULES {
                return Err(format!("{key} has {n} entries; at most {MAX_RULES} are allowed"));
            }
        }
        let mut users: Vec<&str> = self.basic_auth.iter().map(|c| c.user.as_str()).collect();
        users.sort_unstable();
        if let Some(w) = users.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("basic_auth names user {:?} twice", w[0]));
        }
        Ok(())
    }

    /// A summary for people: `basic auth (2 users), allow 1 network, deny 3`, no secrets.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.basic_auth.is_empty() {
            let users: Vec<&str> = self.basic_auth.iter().map(|c| c.user.as_str()).collect();
            parts.push(format!("basic auth ({})", users.join(", ")));
        }
        if !self.allow_ips.is_empty() {
            parts.push(format!("allow {}", join(&self.allow_ips)));
        }
        if !self.deny_ips.is_empty() {
            parts.push(format!("deny {}", join(&self.deny_ips)));
        }
        parts.join("; ")
    }
}

fn join(nets: &[Cidr]) -> String {
    nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" ")
}

/// A network (`203.0.113.0/24`, `2001:db8::/32`) or one address (`127.0.0.2`, read as `/32` or
/// `/128`). Host bits under the prefix are cleared (`10.1.2.3/8` is `10.0.0.0/8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr(pub IpNet);

impl Cidr {
    /// Whether `ip` is in the network. IPv4-mapped IPv6 addresses match as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Cidr(net.trunc()));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Cidr(IpNet::from(ip.to_canonical())));
        }
        Err(format!(
            "{s:?} is not an address or network such as \"203.0.113.7\", \"203.0.113.0/24\" or \"2001:db8::/32\""
        ))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which password hash a [`Credential`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashKind {
    /// `$argon2id$…` (also `argon2i`, `argon2d`), in PHC string form.
    Argon2,
    /// `$2b$…` (also `2a`, `2y`, as `htpasswd -B` writes).
    Bcrypt,
}

/// One `basic_auth` entry: `user:hash`, where the hash is bcrypt or argon2. `Debug` hides the hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The user name.
    pub user: String,
    /// The password hash, in its usual text form.
    pub hash: String,
    /// What kind of hash it is.
    pub kind: HashKind,
}

/// Why a `basic_auth` entry was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// No `user:` part.
    #[error("expected \"user:hash\"")]
    NoUser,
    /// The user name is empty or has characters Basic authentication cannot carry.
    #[error("the user name must not be empty or contain control characters")]
    BadUser,
    /// What follows the user is not a hash: very likely the password itself.
    #[error(
        "user {0:?} has what looks like a plaintext password; store a bcrypt or argon2 hash instead \
         (`ggrokctl add HOST LOCAL --basic-auth user:password` or `ggrokctl hash-password user` write one), \
         and never the password"
    )]
    Plaintext(String),
    /// A hash of a known kind, but malformed or too costly to check.
    #[error("user {user:?}: {why}")]
    BadHash {
        /// The user.
        user: String,
        /// What is wrong with the hash.
        why: String,
    },
}

impl Credential {
    /// Reads `user:hash`, checking that the hash is a well-formed argon2 or bcrypt hash whose
    /// cost is within the limits above.
    pub fn parse(entry: &str) -> Result<Self, CredentialError> {
        let (user, hash) = entry.split_once(':').ok_or(CredentialError::NoUser)?;
        if user.is_empty() || user.chars().any(char::is_control) {
            return Err(CredentialError::BadUser);
        }
        let bad = |why: String| CredentialError::BadHash { user: user.to_owned(), why };
        let kind = if hash.starts_with("$argon2") {
            check_argon2(hash).map_err(bad)?;
            HashKind::Argon2
        } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            check_bcrypt(hash).map_err(bad)?;
            HashKind::Bcrypt
        } else {
            return Err(CredentialError::Plaintext(user.to_owned()));
        };
        Ok(Credential { user: user.to_owned(), hash: hash.to_owned(), kind })
    }
}

/// `$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH`.
fn check_argon2(hash: &str) -> Result<(), String> {
    let fields: Vec<&str> = hash.split('$').collect();
    let malformed = || "not an argon2 hash in PHC form ($argon2id$v=19$m=…,t=…,p=…$salt$hash)".to_owned();
    let (algorithm, params, salt, digest) = match fields.as_slice() {
        ["", a, v, p, s, d] if v.starts_with("v=") => (*a, *p, *s, *d),
        ["", a, p, s, d] => (*a, *p, *s, *d),
        _ => return Err(malformed()),
    };
    if !matches!(algorithm, "argon2id" | "argon2i" | "argon2d") || salt.is_empty() || digest.is_empty() {
        return Err(malformed());
    }
    let b64 = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if !b64(salt) || !b64(digest) {
        return Err(malformed());
    }
    let (mut m, mut t, mut p) = (None, None, None);
    for kv in params.split(',') {
        let (k, v) = kv.split_once('=').ok_or_else(malformed)?;
        let v: u32 = v.parse().map_err(|_| malformed())?;
        match k {
            "m" => m = Some(v),
            "t" => t = Some(v),
            "p" => p = Some(v),
            _ => {}
        }
    }
    let (Some(m), Some(t), Some(p)) = (m, t, p) else { return Err(malformed()) };
    if m > MAX_ARGON2_MEMORY_KIB || t > MAX_ARGON2_TIME || p > MAX_ARGON2_LANES {
        return Err(format!(
            "argon2 costs m={m},t={t},p={p} are over the most a server checks \
             (m={MAX_ARGON2_MEMORY_KIB},t={MAX_ARGON2_TIME},p={MAX_ARGON2_LANES}): every login would cost that much"
        ));
    }
    Ok(())
}

/// `$2b$12$` then 22 characters of salt and 31 of hash, in bcrypt's base64.
fn check_bcrypt(hash: &str) -> Result<(), String> {
    let malformed = || "not a bcrypt hash ($2b$COST$ then 53 characters)".to_owned();
    let rest = &hash[4..];
    let (cost, tail) = rest.split_once('$').ok_or_else(malformed)?;
    let cost: u32 = cost.parse().map_err(|_| malformed())?;
    let alphabet = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'/';
    if tail.len() != 53 || !tail.bytes().all(alphabet) || !(4..=31).contains(&cost) {
        return Err(malformed());
    }
    if cost > MAX_BCRYPT_COST {
        return Err(format!(
            "bcrypt cost {cost} is over the most a server checks ({MAX_BCRYPT_COST}): every login would cost that much"
        ));
    }
    Ok(())
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:***", self.user)
    }
}

impl Serialize for Credential {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}:{}", self.user, self.hash))
    }
}

impl<'de> Deserialize<'de> for Credential {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Credential::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARGON2: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0IjW2vmJ2YdHnoX0cTy5Ip4WHR5nUsWVO7xTeIQFrsg";
    const BCRYPT: &str = "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_take_networks_and_single_addresses() {
        assert_eq!(cidr("127.0.0.2").to_string(), "127.0.0.2/32");
        assert_eq!(cidr("::1").to_string(), "::1/128");
        assert_eq!(cidr("10.1.2.3/8").to_string(), "10.0.0.0/8", "host bits are cleared");
        assert_eq!(cidr(" 2001:db8::/32 ").to_string(), "2001:db8::/32");
        for bad in ["", "10.0.0.0/33", "host.example", "1.2.3", "10.0.0.0/-1"] {
            assert!(bad.parse::<Cidr>().unwrap_err().contains("is not an address"), "{bad}");
        }
    }

    #[test]
    fn deny_wins_then_allow_decides() {
        let open = AccessRules::default();
        assert!(open.allows_ip(ip("198.51.100.1")) && open.is_empty());
        let rules = AccessRules {
            allow_ips: vec![cidr("203.0.113.0/24"), cidr("127.0.0.2")],
            deny_ips: vec![cidr("203.0.113.66")],
            ..Default::default()
        };
        assert!(rules.allows_ip(ip("203.0.113.7")));
        assert!(rules.allows_ip(ip("127.0.0.2")));
        assert!(!rules.allows_ip(ip("127.0.0.1")), "not in allow_ips");
        assert!(!rules.allows_ip(ip("203.0.113.66")), "denied even though allowed");
        assert!(rules.allows_ip(ip("::ffff:203.0.113.7")), "IPv4-mapped matches as IPv4");
        let deny_only = AccessRules { deny_ips: vec![cidr("10.0.0.0/8")], ..Default::default() };
        assert!(!deny_only.allows_ip(ip("10.9.9.9")) && deny_only.allows_ip(ip("11.0.0.1")));
    }

    #[test]
    fn credentials_hold_hashes_only() {
        let a = Credential::parse(&format!("alice:{ARGON2}")).unwrap();
        assert_eq!((a.user.as_str(), a.kind), ("alice", HashKind::Argon2));
        assert_eq!(format!("{a:?}"), "alice:***", "Debug hides the hash");
        let b = Credential::parse(&format!("bob:{BCRYPT}")).unwrap();
        assert_eq!(b.kind, HashKind::Bcrypt);
        assert!(
            matches!(Credential::parse("alice:hunter2"), Err(CredentialError::Plaintext(u)) if u == "alice")
        );
        assert!(matches!(Credential::parse("alice"), Err(CredentialError::NoUser)));
        assert!(matches!(Credential::parse(&format!(":{ARGON2}")), Err(CredentialError::BadUser)));
        assert!(matches!(Credential::parse("a:$2b$10$short"), Err(CredentialError::BadHash { .. })));
        assert!(matches!(Credential::parse("a:$argon2id$nonsense"), Err(CredentialError::BadHash { .. })));
        let msg = Credential::parse("alice:hunter2").unwrap_err().to_string();
        assert!(msg.contains("plaintext") && !msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn hashes_too_costly_to_check_are_refused() {
        let heavy = ARGON2.replace("m=19456", "m=1048576");
        let err = Credential::parse(&format!("a:{heavy}")).unwrap_err().to_string();
        assert!(err.contains("over the most a server checks"), "{err}");
        let slow = BCRYPT.replace("$10$", "$16$");
        assert!(Credential::parse(&format!("a:{slow}")).is_err());
    }

    #[test]
    fn rules_travel_as_plain_strings_and_empty_ones_not_at_all() {
        let rules = AccessRules {
            basic_auth: vec![Credential::parse(&format!("alice:{BCRYPT}")).unwrap()],
            allow_ips: vec![cidr("127.0.0.2")],
            deny_ips: vec![],
        };
        let json = serde_json::to_string(&rules).unwrap();
        assert_eq!(json, format!(r#"{{"basic_auth":["alice:{BCRYPT}"],"allow_ips":["127.0.0.2/32"]}}"#));
        assert_eq!(serde_json::from_str::<AccessRules>(&json).unwrap(), rules);
        assert_eq!(serde_json::to_string(&AccessRules::default()).unwrap(), "{}");
        assert!(serde_json::from_str::<AccessRules>(r#"{"basic_auth":["a:pw"]}"#).is_err());
        assert_eq!(rules.summary(), "basic auth (alice); allow 127.0.0.2/32");
    }

    #[test]
    fn validation_caps_what_a_claim_carries() {
        let many = AccessRules { deny_ips: vec![cidr("10.0.0.1"); MAX_RULES + 1], ..Default::default() };
        assert!(many.validate().unwrap_err().contains("deny_ips"));
        let c = Credential::parse(&format!("a:{BCRYPT}")).unwrap();
        let twice = AccessRules { basic_auth: vec![c.clone(), c], ..Default::default() };
        assert!(twice.validate().unwrap_err().contains("twice"));
    }
}
