//! Per-tunnel access rules, enforced before anything reaches a tunnel: the rules a claim carried
//! ([`Guard`], kept with the tunnel's registry entry) and the server-wide state that checking
//! them needs ([`Gate`]: failed logins by address, the hash checker).
//!
//! Order for an HTTP request: `deny_ips`, then `allow_ips` (403); then, with `basic_auth`, an
//! address that failed too often gets 429, no credentials or wrong ones 401 with
//! `WWW-Authenticate`. Right credentials are remembered for [`VERIFIED_FOR`] (by a digest of the
//! header, per tunnel), so a browser's many requests cost one hash check; the `Authorization`
//! header is then removed, so the local service never sees the tunnel's password. A TCP
//! connection is checked against the IP rules only, at accept.

pub mod failures;
mod verify;

pub use failures::{Failures, Policy};
pub use verify::Checker;

use crate::ops::metrics::{Denial, Metrics};
use ggrok_proto::access::AccessRules;
use ggrok_proto::http::{self as body, Body};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// How long right credentials are taken without a new hash check.
pub const VERIFIED_FOR: Duration = Duration::from_secs(300);
/// Verified credentials remembered per tunnel; past it the memory starts afresh.
const MAX_VERIFIED: usize = 1024;

/// A tunnel's rules, as its claim carried them, and the credentials verified lately.
#[derive(Debug)]
pub struct Guard {
    rules: AccessRules,
    verified: Mutex<HashMap<[u8; 32], Instant>>,
}

/// What a registry entry holds: the tunnel's guard, when it has rules.
pub type Access = Option<Arc<Guard>>;

impl Guard {
    /// The guard of `rules`; `None` when there are none.
    pub fn of(rules: AccessRules) -> Access {
        (!rules.is_empty()).then(|| Arc::new(Guard { rules, verified: Mutex::default() }))
    }

    /// The rules.
    pub fn rules(&self) -> &AccessRules {
        &self.rules
    }

    /// Whether `ip` passes `deny_ips` and `allow_ips`.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.rules.allows_ip(ip)
    }

    fn remembers(&self, digest: &[u8; 32], now: Instant) -> bool {
        let verified = self.verified.lock().expect("verified lock");
        verified.get(digest).is_some_and(|at| now.duration_since(*at) < VERIFIED_FOR)
    }

    fn remember(&self, digest: [u8; 32], now: Instant) {
        let mut verified = self.verified.lock().expect("verified lock");
        if verified.len() >= MAX_VERIFIED {
            verified.retain(|_, at| now.duration_since(*at) < VERIFIED_FOR);
            if verified.len() >= MAX_VERIFIED {
                verified.clear();
            }
        }
        verified.insert(digest, now);
    }
}

/// The server-wide side of access checks.
#[derive(Default)]
pub struct Gate {
    /// Failed logins by address.
    pub failures: Failures,
    checker: Checker,
}

impl Gate {
    /// Lets a request for `host` from `client` through `guard`, or answers it: 403, 429 or 401.
    /// On the way through, the `Authorization` header that passed is removed from `headers`.
    /// `policy` (from `[limits]`) says how many wrong passwords turn an address away, and for how
    /// long.
    pub async fn admit(
        &self,
        guard: &Guard,
        client: IpAddr,
        host: &str,
        headers: &mut HeaderMap,
        metrics: &Metrics,
        policy: Policy,
    ) -> Result<(), Response<Body>> {
        if !guard.allows_ip(client) {
            metrics.access.denied(Denial::Ip);
            debug!(%client, host, "access: address not allowed: 403");
            return Err(body::text(
                StatusCode::FORBIDDEN,
                format!("ggrok: your address {client} is not allowed to reach {host}"),
            ));
        }
        let credentials = &guard.rules.basic_auth;
        if credentials.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        let given = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes().to_vec());
        let Some(given) = given else {
            metrics.access.denied(Denial::NoAuth);
            return Err(challenge(host, "needs a user name and password"));
        };
        let digest: [u8; 32] = Sha256::digest(&given).into();
        if !guard.remembers(&digest, now) {
            if let Some(wait) = self.failures.blocked(client, now) {
                metrics.access.denied(Denial::Rate);
                return Err(too_many(wait));
            }
            let ok = match verify::basic_credentials(&given) {
                Some((user, password)) => self.checker.check(credentials, &user, password).await,
                None => false,
            };
            if !ok {
                metrics.access.denied(Denial::Auth);
                if self.failures.failed(client, now, policy) {
                    warn!(%client, host, "access: too many wrong passwords; the address gets 429 for {}s", policy.block.as_secs_f64());
                } else {
                    debug!(%client, host, "access: wrong user name or password: 401");
                }
                return Err(challenge(host, "refused the user name or password; try again"));
            }
            guard.remember(digest, now);
        }
        headers.remove(header::AUTHORIZATION);
        Ok(())
    }
}

/// 401 with the `Basic` challenge, the realm being the host.
fn challenge(host: &str, what: &str) -> Response<Body> {
    let mut resp = body::text(StatusCode::UNAUTHORIZED, format!("ggrok: {host} {what}"));
    let realm = format!("Basic realm=\"{host}\", charset=\"UTF-8\"");
    if let Ok(value) = HeaderValue::from_str(&realm) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    resp
}

/// 429 with `Retry-After`.
fn too_many(wait: Duration) -> Response<Body> {
    let secs = wait.as_secs().max(1);
    let mut resp = body::text(
        StatusCode::TOO_MANY_REQUESTS,
        format!("ggrok: too many wrong passwords from your address; try again in {secs}s"),
    );
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use ggrok_proto::access::Credential;

    fn basic(user_password: &str) -> HeaderValue {
        let token = base64::engine::general_purpose::STANDARD.encode(user_password);
        HeaderValue::from_str(&format!("Basic {token}")).unwrap()
    }

    fn guard() -> Arc<Guard> {
        let hash = bcrypt::hash("right", 4).unwrap();
        let rules = AccessRules {
            basic_auth: vec![Credential::parse(&format!("alice:{hash}")).unwrap()],
            deny_ips: vec!["192.0.2.66".parse().unwrap()],
            ..Default::default()
        };
        Guard::of(rules).unwrap()
    }

    #[tokio::test]
    async fn requests_go_through_403_429_and_401_in_order() {
        let (gate, guard, metrics) = (Gate::default(), guard(), Metrics::new());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut headers = HeaderMap::new();
        let denied =
            gate.admit(&guard, ip("192.0.2.66"), "a.test", &mut headers, &metrics, Policy::default()).await;
        assert_eq!(denied.unwrap_err().status(), StatusCode::FORBIDDEN);
        let none = gate
            .admit(&guard, ip("192.0.2.1"), "a.test", &mut headers, &metrics, Policy::default())
            .await
            .unwrap_err();
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(none.headers()[header::WWW_AUTHENTICATE], "Basic realm=\"a.test\", charset=\"UTF-8\"");
        headers.insert(header::AUTHORIZATION, basic("alice:right"));
        gate.admit(&guard, ip("192.0.2.1"), "a.test", &mut headers, &metrics, Policy::default())
            .await
            .unwrap();
        assert!(!headers.contains_key(header::AUTHORIZATION), "removed once checked");
        for _ in 0..failures::MAX_FAILURES {
            headers.insert(header::AUTHORIZATION, basic("alice:wrong"));
            let wrong = gate
                .admit(&guard, ip("192.0.2.9"), "a.test", &mut headers, &metrics, Policy::default())
                .await;
            assert_eq!(wrong.unwrap_err().status(), StatusCode::UNAUTHORIZED);
        }
        headers.insert(header::AUTHORIZATION, basic("alice:another"));
        let blocked = gate
            .admit(&guard, ip("192.0.2.9"), "a.test", &mut headers, &metrics, Policy::default())
            .await
            .unwrap_err();
        assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(blocked.headers().contains_key(header::RETRY_AFTER));
        // Credentials verified before are taken from memory, without a check, even then.
        headers.insert(header::AUTHORIZATION, basic("alice:right"));
        gate.admit(&guard, ip("192.0.2.9"), "a.test", &mut headers, &metrics, Policy::default())
            .await
            .unwrap();
    }

    #[test]
    fn no_rules_no_guard() {
        assert!(Guard::of(AccessRules::default()).is_none());
    }
}
