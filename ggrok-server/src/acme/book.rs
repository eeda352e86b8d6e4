//! What ACME knows of each name, and when to order next: the schedule of renewals, backoff after
//! failures, the daily cap and the order of priority. Pure bookkeeping (no I/O), driven by
//! [`super::supervise`] and read by the admin listener.

use super::RenewalPolicy;
use crate::tls::info::CertInfo;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

/// The longest a renewal waits for: renew when this much is left, at the latest.
pub const RENEW_BEFORE_MAX: Duration = Duration::from_secs(30 * 86_400);
/// The first wait after a failed order; it doubles with each failure after it.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(5 * 60);
/// The longest wait after failures.
pub const BACKOFF_MAX: Duration = Duration::from_secs(12 * 3600);
/// The window of `max_orders_per_day`.
const DAY: Duration = Duration::from_secs(86_400);

/// Why a name is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Listed in `[acme] names`.
    Configured,
    /// Claimed by an authenticated client (`on_demand`).
    OnDemand,
}

/// Where a name stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// No certificate yet: an order is due or under way.
    Pending,
    /// A certificate is presented; its renewal is scheduled.
    Valid,
    /// The last order failed; the next one waits (`next_attempt`).
    Failed,
    /// An on-demand certificate that nobody claims any more: not renewed until a client claims
    /// the host again.
    Idle,
}

/// One name.
#[derive(Debug, Clone, Serialize)]
pub struct Name {
    /// Why it is ordered.
    pub origin: Origin,
    /// Where it stands.
    pub status: Status,
    /// The certificate presented for it, if any.
    #[serde(skip)]
    pub cert: Option<CertInfo>,
    /// Why the last order failed.
    pub last_error: Option<String>,
    /// When the next order is due (`None`: none is planned).
    #[serde(skip)]
    pub next_attempt: Option<SystemTime>,
    /// Failed orders in a row.
    pub failures: u32,
    /// The challenge type the next order uses (an index into `[acme] challenge`): a failed
    /// validation moves to the next type.
    #[serde(skip)]
    pub challenge: usize,
}

impl Name {
    fn new(origin: Origin, now: SystemTime) -> Self {
        Self {
            origin,
            status: Status::Pending,
            cert: None,
            last_error: None,
            next_attempt: Some(now),
            failures: 0,
            challenge: 0,
        }
    }
}

/// Every name, and the orders of the last 24 hours.
#[derive(Debug, Default)]
pub struct Book {
    names: BTreeMap<String, Name>,
    orders: VecDeque<SystemTime>,
}

/// What is next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Order this name now.
    Order(String),
    /// Nothing before this time.
    Wait(SystemTime),
    /// Names are due, but `max_orders_per_day` orders were made in the last 24 hours: nothing
    /// before this time.
    Capped(SystemTime),
    /// Nothing planned.
    Idle,
}

impl Book {
    /// Every name.
    pub fn names(&self) -> &BTreeMap<String, Name> {
        &self.names
    }

    /// One name.
    pub fn get(&self, name: &str) -> Option<&Name> {
        self.names.get(name)
    }

    /// Wants a certificate for `name`: a new name is due now. A configured name stays configured.
    /// Returns whether anything changed.
    pub fn want(&mut self, name: &str, origin: Origin, now: SystemTime, policy: &RenewalPolicy) -> bool {
        match self.names.get_mut(name) {
            None => {
                self.names.insert(name.to_owned(), Name::new(origin, now));
                true
            }
            Some(entry) => {
                let mut changed = false;
                if origin == Origin::Configured && entry.origin != Origin::Configured {
                    entry.origin = Origin::Configured;
                    changed = true;
                }
                if entry.status == Status::Idle {
                    // Wanted again: renew when due (now, if it already was), or order now.
                    entry.status = if entry.cert.is_some() { Status::Valid } else { Status::Pending };
                    entry.next_attempt =
                        Some(entry.cert.as_ref().map_or(now, |c| policy.renew_at(c).max(now)));
                    changed = true;
                }
                changed
            }
        }
    }

    /// Forgets that `name` is configured (it left `names`): an on-demand name from now on, which
    /// is renewed only while claimed.
    pub fn unconfigure(&mut self, name: &str) {
        if let Some(entry) = self.names.get_mut(name) {
            entry.origin = Origin::OnDemand;
        }
    }

    /// A certificate for `name` (from the cache or a finished order): renewed when due.
    pub fn issued(&mut self, name: &str, origin: Origin, cert: CertInfo, policy: &RenewalPolicy) {
        let entry = self.names.entry(name.to_owned()).or_insert_with(|| Name::new(origin, SystemTime::now()));
        entry.status = Status::Valid;
        entry.next_attempt = Some(policy.renew_at(&cert));
        entry.cert = Some(cert);
        entry.failures = 0;
        entry.last_error = None;
    }

    /// An order for `name` failed: it waits longer after each failure, and the next one uses the
    /// next challenge type.
    pub fn failed(&mut self, name: &str, error: String, now: SystemTime, challenges: usize) {
        let Some(entry) = self.names.get_mut(name) else { return };
        entry.failures += 1;
        entry.status = Status::Failed;
        entry.last_error = Some(error);
        entry.challenge = (entry.challenge + 1) % challenges.max(1);
        entry.next_attempt = Some(now + backoff(entry.failures, fastrand::f64()));
    }

    /// An on-demand `name` due for renewal that nobody claims: not renewed until claimed again.
    pub fn idle(&mut self, name: &str) {
        if let Some(entry) = self.names.get_mut(name) {
            entry.status = Status::Idle;
            entry.next_attempt = None;
        }
    }

    /// Counts an order against the daily cap.
    pub fn ordered(&mut self, now: SystemTime) {
        self.orders.push_back(now);
    }

    /// Orders in the 24 hours before `now`.
    pub fn orders_today(&mut self, now: SystemTime) -> usize {
        while self.orders.front().is_some_and(|t| now.duration_since(*t).is_ok_and(|d| d >= DAY)) {
            self.orders.pop_front();
        }
        self.orders.len()
    }

    /// What to do next. Of the names due, renewals come first (a certificate in use is about to
    /// lapse), then configured names, then on-demand ones; with `max` orders in the last 24
    /// hours, nothing happens until the oldest of them is a day old.
    pub fn next(&mut self, now: SystemTime, max: u32) -> Next {
        let rank = |n: &Name| match (n.cert.is_some(), n.origin) {
            (true, _) => 0,
            (false, Origin::Configured) => 1,
            (false, Origin::OnDemand) => 2,
        };
        let due = self
            .names
            .iter()
            .filter(|(_, n)| n.next_attempt.is_some_and(|t| t <= now))
            .min_by_key(|(_, n)| (rank(n), n.next_attempt))
            .map(|(name, _)| name.clone());
        match due {
            Some(name) if self.orders_today(now) < max as usize => Next::Order(name),
            Some(_) => Next::Capped(self.orders.front().map_or(now, |t| *t + DAY)),
            None => match self.names.values().filter_map(|n| n.next_attempt).min() {
                Some(t) => Next::Wait(t),
                None => Next::Idle,
            },
        }
    }
}

/// The wait after `failures` failed orders in a row: 5 minutes, doubling, at most 12 hours, give
/// or take a quarter (`jitter` in 0..1), so that names that failed together do not retry together.
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let exp = BACKOFF_FIRST.saturating_mul(1 << failures.saturating_sub(1).min(16));
    exp.min(BACKOFF_MAX).mul_f64(0.75 + jitter.clamp(0.0, 1.0) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(not_before: i64, days: i64) -> CertInfo {
        CertInfo { names: vec![], issuer: String::new(), not_before, not_after: not_before + days * 86_400 }
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn renewals_come_a_third_before_expiry_or_30_days() {
        let policy = RenewalPolicy::default();
        let day = 86_400;
        // 90 days: a third is 30 days.
        assert_eq!(policy.renew_at(&cert(0, 90)), t(60 * day));
        // 6 days: 2 days before.
        assert_eq!(policy.renew_at(&cert(0, 6)), t(4 * day));
        // A year: 30 days before, not four months.
        assert_eq!(policy.renew_at(&cert(0, 360)), t(330 * day));
    }

    #[test]
    fn backoff_doubles_up_to_12_hours_with_jitter() {
        assert_eq!(backoff(1, 0.5), BACKOFF_FIRST);
        assert_eq!(backoff(2, 0.5), BACKOFF_FIRST * 2);
        assert_eq!(backoff(40, 0.5), BACKOFF_MAX);
        assert_eq!(backoff(1, 0.0), BACKOFF_FIRST.mul_f64(0.75));
        assert_eq!(backoff(1, 1.0), BACKOFF_FIRST.mul_f64(1.25));
    }

    #[test]
    fn due_names_by_priority_and_the_daily_cap() {
        let policy = RenewalPolicy::default();
        let mut book = Book::default();
        let now = t(1_000_000);
        book.want("demand.test", Origin::OnDemand, now, &policy);
        book.want("conf.test", Origin::Configured, now, &policy);
        assert_eq!(book.next(now, 2), Next::Order("conf.test".into()));
        book.ordered(now);
        book.failed("conf.test", "no".into(), now, 2);
        assert_eq!(book.get("conf.test").unwrap().challenge, 1);
        assert_eq!(book.next(now, 2), Next::Order("demand.test".into()));
        book.ordered(now);
        // The cap: two orders today.
        book.want("third.test", Origin::OnDemand, now, &policy);
        assert_eq!(book.next(now, 2), Next::Capped(now + DAY));
        assert_eq!(book.next(now + DAY, 2), Next::Order("conf.test".into()));
    }

    #[test]
    fn unclaimed_on_demand_names_idle_until_claimed_again() {
        let policy = RenewalPolicy::default();
        let mut book = Book::default();
        let issued = cert(0, 90);
        book.issued("a.test", Origin::OnDemand, issued.clone(), &policy);
        assert_eq!(book.next(t(0), 5), Next::Wait(policy.renew_at(&issued)));
        book.idle("a.test");
        assert_eq!(book.next(t(0), 5), Next::Idle);
        let later = policy.renew_at(&issued) + Duration::from_secs(1);
        assert!(book.want("a.test", Origin::OnDemand, later, &policy));
        assert_eq!(book.next(later, 5), Next::Order("a.test".into()));
    }
}
