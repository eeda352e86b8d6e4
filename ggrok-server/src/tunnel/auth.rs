//! Token checks for tunnel clients, in constant time.

use crate::config::ClientEntry;
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
