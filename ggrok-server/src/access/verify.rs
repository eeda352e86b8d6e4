//! Checking `Authorization: Basic` against a tunnel's hashes. A hash check costs tens of
//! milliseconds of CPU by design, so it runs on the blocking pool (never on a worker's runtime),
//! at most [`MAX_CHECKS`] at a time over the whole server; the caller caches successes
//! ([`super::Guard`]) and counts failures ([`super::failures`]).

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use base64::Engine;
use ggrok_proto::access::{Credential, HashKind};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Hash checks running at once, over every tunnel and worker.
pub const MAX_CHECKS: usize = 2;

/// User and password from an `Authorization` header value, if it is Basic authentication.
pub fn basic_credentials(value: &[u8]) -> Option<(String, String)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(token.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Whether `password` is the one `credential` holds a hash of.
fn matches(credential: &Credential, password: &str) -> bool {
    match credential.kind {
        HashKind::Argon2 => PasswordHash::new(&credential.hash)
            .is_ok_and(|hash| argon2::Argon2::default().verify_password(password.as_bytes(), &hash).is_ok()),
        HashKind::Bcrypt => bcrypt::verify(password, &credential.hash).unwrap_or(false),
    }
}

/// The server's hash checker.
pub struct Checker {
    slots: Arc<Semaphore>,
}

impl Default for Checker {
    fn default() -> Self {
        Self { slots: Arc::new(Semaphore::new(MAX_CHECKS)) }
    }
}

impl Checker {
    /// Whether `user` and `password` match one of `credentials`. An unknown user costs a check
    /// all the same, so that timing does not tell which users exist.
    pub async fn check(&self, credentials: &[Credential], user: &str, password: String) -> bool {
        let known = credentials.iter().find(|c| c.user == user);
        let Some(credential) = known.or(credentials.first()).cloned() else { return false };
        let Ok(_slot) = self.slots.clone().acquire_owned().await else { return false };
        let matched =
            tokio::task::spawn_blocking(move || matches(&credential, &password)).await.unwrap_or(false);
        matched && known.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(entry: &str) -> Credential {
        Credential::parse(entry).unwrap()
    }

    #[test]
    fn basic_headers_are_read() {
        let header = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("alice:pa:ss"));
        assert_eq!(basic_credentials(header.as_bytes()), Some(("alice".into(), "pa:ss".into())));
        let lower = format!("basic {}", base64::engine::general_purpose::STANDARD.encode("a:"));
        assert_eq!(basic_credentials(lower.as_bytes()), Some(("a".into(), String::new())));
        for bad in ["Bearer abc", "Basic !!!", "Basic", "", "Basic bm9jb2xvbg=="] {
            assert_eq!(basic_credentials(bad.as_bytes()), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn argon2_and_bcrypt_hashes_are_checked() {
        let bcrypt_hash = bcrypt::hash("secret", 4).unwrap();
        let argon2_hash = {
            use argon2::password_hash::{PasswordHasher, SaltString};
            let salt = SaltString::encode_b64(b"saltsaltsalt").unwrap();
            argon2::Argon2::default().hash_password(b"secret", &salt).unwrap().to_string()
        };
        let credentials =
            [credential(&format!("alice:{argon2_hash}")), credential(&format!("bob:{bcrypt_hash}"))];
        let checker = Checker::default();
        assert!(checker.check(&credentials, "alice", "secret".into()).await);
        assert!(checker.check(&credentials, "bob", "secret".into()).await);
        assert!(!checker.check(&credentials, "alice", "wrong".into()).await);
        assert!(!checker.check(&credentials, "bob", "wrong".into()).await);
        assert!(!checker.check(&credentials, "carol", "secret".into()).await, "an unknown user");
        assert!(!checker.check(&[], "alice", "secret".into()).await);
    }
}
