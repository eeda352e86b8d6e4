//! Token checks for tunnel clients, in constant time.

use crate::config::{ClientEntry, ServerConfig};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Finds the client whose token is `token`. Every entry is compared, in constant time, so the
/// answer's timing says nothing about which token, or how much of one, matched.
pub fn authenticate<'a>(clients: &'a [ClientEntry], token: &str) -> Option<&'a ClientEntry> {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let mut found = None;
    for client in clients {
        if bool::from(client.token_sha256.ct_eq(&digest)) {
            found = Some(client);
        }
    }
    found
}

/// How an anonymous client's name starts (`anonymous-N`; its token digest is all zeros).
pub const ANONYMOUS: &str = "anonymous-";

/// What the configuration in force admits for a session that authenticated as `name` with the
/// token whose digest is `token_sha256`: its `[[client]]` (same name, same token), or for an
/// anonymous client the anonymous hosts. `None` once a reload removed the client, changed its
/// token or stopped allowing anonymous clients.
pub fn current(config: &ServerConfig, name: &str, token_sha256: &[u8; 32]) -> Option<ClientEntry> {
    if *token_sha256 == [0; 32] && name.starts_with(ANONYMOUS) {
        return Some(anonymous(name.to_owned(), config.anonymous_hosts.clone()?));
    }
    config.clients.iter().find(|c| c.name == name && c.token_sha256 == *token_sha256).cloned()
}

/// The entry of an anonymous client named `name` (`anonymous-N`): the anonymous hosts, no token,
/// domain, ports or requirements.
pub fn anonymous(name: String, hosts: Vec<ggrok_proto::host::HostPattern>) -> ClientEntry {
    ClientEntry {
        name,
        token_sha256: [0; 32],
        hosts,
        domain: None,
        ports: Default::default(),
        require: Default::default(),
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(name: &str, token: &str) -> ClientEntry {
        ClientEntry {
            name: name.into(),
            token_sha256: Sha256::digest(token).into(),
            hosts: vec![],
            domain: None,
            ports: Default::default(),
            require: Default::default(),
        }
    }

    #[test]
    fn finds_the_matching_client_only() {
        let clients = [client("a", "token-a"), client("b", "token-b")];
        assert_eq!(authenticate(&clients, "token-b").map(|c| c.name.as_str()), Some("b"));
        assert!(authenticate(&clients, "token-c").is_none());
        assert!(authenticate(&clients, "").is_none());
    }

    #[test]
    fn parses_bearer_headers() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("abc"), None);
    }
}
