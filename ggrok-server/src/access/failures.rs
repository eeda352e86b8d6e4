//! Failed logins by client address: after `[limits] max_auth_failures` wrong credentials (10 by
//! default) within [`WINDOW`], an address gets 429 for `auth_block` (60 s) without anything being
//! checked, which bounds both password
//! guessing and the CPU an address can make the server spend on hashes. IPv6 clients are counted
//! by their /64, which one subscriber usually holds whole.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong credentials an address may send within [`WINDOW`], by default.
pub const MAX_FAILURES: u32 = 10;
/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How long an address that failed too often is turned away, by default.
pub const BLOCK: Duration = Duration::from_secs(60);

/// How many failures turn an address away, and for how long (`[limits] max_auth_failures`,
/// `auth_block`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub max_failures: u32,
    pub block: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self { max_failures: MAX_FAILURES, block: BLOCK }
    }
}
/// Addresses remembered at most; past it, stale records are dropped, and if none is stale new
/// addresses are not recorded (the hash checks' own limit still holds).
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    since: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

impl Record {
    fn stale(&self, now: Instant) -> bool {
        now.duration_since(self.since) >= WINDOW && self.blocked_until.is_none_or(|until| until <= now)
    }
}

/// The failure table, shared by every worker.
#[derive(Default)]
pub struct Failures {
    table: Mutex<HashMap<IpAddr, Record>>,
}

/// The key an address is counted under.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
        v4 => v4,
    }
}

impl Failures {
    /// How much longer `ip` is turned away, if it is.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let table = self.table.lock().expect("failures lock");
        let until = table.get(&key(ip))?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Records a failure of `ip`; returns whether `policy` now turns it away.
    pub fn failed(&self, ip: IpAddr, now: Instant, policy: Policy) -> bool {
        let mut table = self.table.lock().expect("failures lock");
        if table.len() >= MAX_TRACKED && !table.contains_key(&key(ip)) {
            table.retain(|_, r| !r.stale(now));
            if table.len() >= MAX_TRACKED {
                return false;
            }
        }
        let record = table.entry(key(ip)).or_insert(Record { since: now, failures: 0, blocked_until: None });
        if record.stale(now) {
            *record = Record { since: now, failures: 0, blocked_until: None };
        }
        record.failures += 1;
        if record.failures >= policy.max_failures {
            record.blocked_until = Some(now + policy.block);
            return true;
        }
        false
    }

    /// Forgets records that no longer count.
    pub fn purge(&self, now: Instant) {
        self.table.lock().expect("failures lock").retain(|_, r| !r.stale(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy { max_failures: MAX_FAILURES, block: BLOCK };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn too_many_failures_block_an_address_for_a_while() {
        let f = Failures::default();
        let t0 = Instant::now();
        for n in 1..MAX_FAILURES {
            assert!(!f.failed(ip("192.0.2.1"), t0, P), "failure {n}");
        }
        assert_eq!(f.blocked(ip("192.0.2.1"), t0), None);
        assert!(f.failed(ip("192.0.2.1"), t0, P));
        assert_eq!(f.blocked(ip("192.0.2.1"), t0), Some(BLOCK));
        assert_eq!(f.blocked(ip("192.0.2.2"), t0), None, "other addresses are not affected");
        assert_eq!(f.blocked(ip("::ffff:192.0.2.1"), t0), Some(BLOCK), "the same address over IPv6");
        assert_eq!(f.blocked(ip("192.0.2.1"), t0 + BLOCK), None, "the block ends");
    }

    #[test]
    fn failures_spread_over_time_do_not_add_up() {
        let f = Failures::default();
        let t0 = Instant::now();
        for n in 0..MAX_FAILURES * 3 {
            assert!(!f.failed(ip("192.0.2.1"), t0 + WINDOW / 5 * n, P), "failure {n}");
        }
        f.purge(t0 + WINDOW * 10);
        assert!(f.table.lock().unwrap().is_empty());
    }

    #[test]
    fn the_policy_sets_how_many_and_how_long() {
        let f = Failures::default();
        let t0 = Instant::now();
        let strict = Policy { max_failures: 3, block: Duration::from_secs(600) };
        assert!(!f.failed(ip("192.0.2.1"), t0, strict));
        assert!(!f.failed(ip("192.0.2.1"), t0, strict));
        assert!(f.failed(ip("192.0.2.1"), t0, strict));
        assert_eq!(f.blocked(ip("192.0.2.1"), t0 + BLOCK), Some(Duration::from_secs(540)));
    }

    #[test]
    fn ipv6_clients_count_by_their_slash_64() {
        let f = Failures::default();
        let t0 = Instant::now();
        for n in 0..MAX_FAILURES {
            f.failed(ip(&format!("2001:db8:1:2::{n:x}")), t0, P);
        }
        assert!(f.blocked(ip("2001:db8:1:2:ffff::1"), t0).is_some());
        assert!(f.blocked(ip("2001:db8:1:3::1"), t0).is_none());
    }
}
