//! Spreading the daemon's links over the server's workers. The kernel hands each new connection
//! to one worker's `SO_REUSEPORT` listener by a hash, so two links can land on the same worker
//! while another has none; a public request served on a worker without a link of its daemon
//! crosses threads on the server. A link that lands on a worker another link already holds, while
//! some worker is held by none, closes and dials again at once — a few times, then keeps what it
//! got.

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
    fn jitter_stays_under_a_tenth_of_a_second() {
        for _ in 0..100 {
            assert!(jitter() < REDIAL_JITTER);
        }
    }
}
