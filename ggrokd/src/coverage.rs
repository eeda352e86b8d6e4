//! Spreading the daemon's links over the server's workers. The kernel hands each new connection
//! to one worker's `SO_REUSEPORT` listener by a hash, so two links can land on the same worker
//! while another has none; a public request served on a worker without a link of its daemon
//! crosses threads on the server. A link that lands on a worker another link already holds, while
//! some worker is held by none, closes and dials again at once — a few times, then keeps what it
//! got.
//!
//! The same holds for replicas behind one load-balanced address: each server names itself in its
//! hello (`[cluster] replica`), and a link that lands on a replica that already has its share of
//! the daemon's links, while a replica seen there has less, dials again ([`landing`]). To find
//! replicas it has not seen yet, the daemon holds one more link to such an address while it
//! explores: that link dials until it lands on a new replica, or has landed [`MAX_REDIALS`] times
//! in a row on replicas held already, and the exploring ends.

use std::time::Duration;

/// Redials per link and connect cycle, at most.
pub const MAX_REDIALS: u32 = 8;

/// The pause before a redial, drawn from 0 to this: links redialing together do not move in step.
pub const REDIAL_JITTER: Duration = Duration::from_millis(100);

/// Whether a link that landed on worker `landed` of `workers` should close and dial again, when
/// the daemon's other connected links hold `others` and this link has redialed `redials` times in
/// this connect cycle.
pub fn should_redial(landed: u32, workers: u32, others: &[u32], redials: u32) -> bool {
    redials < MAX_REDIALS && others.contains(&landed) && (0..workers).any(|w| !others.contains(&w))
}

/// What a link does after landing on a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landing {
    /// Keep the connection.
    Keep,
    /// Close it and dial again (after a jitter).
    Redial,
    /// Close it and dial again, exploring: it landed on a replica held already, as every one is.
    Explore,
    /// Keep it, and stop exploring: every landing for a while found a replica already held.
    Settle,
}

/// Where a link landed, and what the other links of the same server hold.
pub struct Seen<'a> {
    /// The replica it reached.
    pub replica: &'a str,
    /// The replicas the other connected links of this server hold (one entry per link).
    pub others: &'a [String],
    /// Every replica seen at this address.
    pub known: &'a [String],
    /// Links wanted on each replica.
    pub per_replica: u32,
    /// This link's redials in its connect cycle.
    pub redials: u32,
    /// Landings on held replicas in a row while exploring, this one included.
    pub misses: u32,
    /// Whether the daemon is still looking for replicas it has not seen.
    pub exploring: bool,
}

/// Whether a link keeps the replica it landed on ([`Seen`]).
pub fn landing(seen: &Seen) -> Landing {
    let held = |r: &str| seen.others.iter().filter(|o| o.as_str() == r).count() as u32;
    if !seen.known.iter().any(|k| k == seen.replica) || held(seen.replica) < seen.per_replica {
        return Landing::Keep;
    }
    if seen.known.iter().any(|k| held(k) < seen.per_replica) {
        return if seen.redials < MAX_REDIALS { Landing::Redial } else { Landing::Keep };
    }
    match seen.exploring {
        true if seen.misses >= MAX_REDIALS => Landing::Settle,
        true => Landing::Explore,
        false => Landing::Keep,
    }
}

/// A pause in `0..REDIAL_JITTER`.
pub fn jitter() -> Duration {
    REDIAL_JITTER.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redial_only_onto_a_free_worker() {
        assert!(!should_redial(0, 4, &[], 0), "the first link keeps any worker");
        assert!(!should_redial(1, 4, &[0], 0), "a worker of its own");
        assert!(should_redial(0, 4, &[0], 0), "worker 0 taken, 1-3 free");
        assert!(should_redial(2, 4, &[0, 2, 3], 0), "worker 1 free");
        assert!(!should_redial(2, 3, &[0, 1, 2], 0), "every worker held: more links than workers");
        assert!(!should_redial(1, 2, &[0, 1, 1], 0));
        assert!(!should_redial(0, 1, &[0], 0), "one worker: nothing to gain");
    }

    #[test]
    fn at_most_eight_redials_then_keep() {
        assert!(should_redial(0, 4, &[0], MAX_REDIALS - 1));
        assert!(!should_redial(0, 4, &[0], MAX_REDIALS));
        assert_eq!(MAX_REDIALS, 8);
    }

    #[test]
    fn replicas_are_covered_then_explored_a_bounded_number_of_times() {
        let s = |v: &[&str]| v.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        let (known, others) = (s(&["a", "b"]), s(&["a"]));
        let both = s(&["a", "b"]);
        let seen = |replica: &'static str, all_held: bool, redials, misses, exploring| {
            landing(&Seen {
                replica,
                others: if all_held { &both } else { &others },
                known: &known,
                per_replica: 1,
                redials,
                misses,
                exploring,
            })
        };
        assert_eq!(seen("c", false, 0, 0, true), Landing::Keep, "a new replica");
        assert_eq!(seen("b", false, 0, 0, true), Landing::Keep, "a free one");
        assert_eq!(seen("a", false, 0, 0, false), Landing::Redial, "b is free");
        assert_eq!(seen("a", false, MAX_REDIALS, 0, false), Landing::Keep, "out of redials");
        assert_eq!(seen("a", true, 0, 1, true), Landing::Explore, "exploring");
        assert_eq!(seen("a", true, 0, MAX_REDIALS, true), Landing::Settle);
        assert_eq!(seen("a", true, 0, 0, false), Landing::Keep, "explored: an extra link");
    }

    #[test]
    fn jitter_stays_under_a_tenth_of_a_second() {
        for _ in 0..100 {
            assert!(jitter() < REDIAL_JITTER);
        }
    }
}
