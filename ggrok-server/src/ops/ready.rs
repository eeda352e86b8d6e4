//! Readiness after a start (`[cluster] wait_for_sessions`): a replica that has just started has
//! no tunnel yet, so every public request it took would get 404 "no tunnel". With the setting,
//! `/healthz` answers 503 `waiting for tunnel sessions` until a daemon has claimed its first host
//! here, or until the configured time has passed, whichever comes first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::info;

/// Whether this server is ready for public traffic, as far as tunnels go.
#[derive(Debug)]
pub struct Readiness {
    started: Instant,
    wait: Duration,
    claimed: AtomicBool,
}

impl Readiness {
    /// Ready at once when `wait` is zero; else after the first claim or after `wait`.
    pub fn new(wait: Duration) -> Self {
        Self { started: Instant::now(), wait, claimed: AtomicBool::new(false) }
    }

    /// A daemon has claimed a host (a tunnel session is registered): ready from now on.
    pub fn claimed(&self) {
        if !self.claimed.swap(true, Ordering::Relaxed) && !self.wait.is_zero() {
            let after = self.started.elapsed();
            if after < self.wait {
                info!(after_secs = after.as_secs_f64(), "first tunnel registered: /healthz now says ok");
            }
        }
    }

    /// Whether a load balancer should send public traffic.
    pub fn ready(&self) -> bool {
        self.wait.is_zero() || self.claimed.load(Ordering::Relaxed) || self.started.elapsed() >= self.wait
    }
}

#[cfg(test)]
mod tests {
    use super::Readiness;
    use std::time::Duration;

    #[test]
    fn ready_at_once_without_a_wait_else_on_the_first_claim() {
        assert!(Readiness::new(Duration::ZERO).ready());
        let waiting = Readiness::new(Duration::from_secs(3600));
        assert!(!waiting.ready());
        waiting.claimed();
        assert!(waiting.ready());
        waiting.claimed();
        assert!(waiting.ready());
    }

    #[test]
    fn ready_once_the_wait_is_over() {
        let mut readiness = Readiness::new(Duration::from_secs(5));
        readiness.started -= Duration::from_secs(5);
        assert!(readiness.ready());
    }
}
