//! Reconnect delays: exponential with jitter, capped, reset after a healthy connection.

use std::time::Duration;

/// Exponential backoff. Each delay is the current step with ±20 % jitter; the step doubles up to
/// `max`. Construct with [`Backoff::new`], which rejects settings that make no sense.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    attempt: u32,
}

impl Backoff {
    /// `initial` must be positive and not above `max`.
    pub fn new(initial: Duration, max: Duration) -> Result<Self, String> {
        if initial.is_zero() || initial > max {
            return Err(format!(
                "backoff: initial delay {initial:?} must be positive and at most the maximum {max:?}"
            ));
        }
        Ok(Self { initial, max, next: initial, attempt: 0 })
    }

    /// ggrok's defaults: 0.5 s doubling to 30 s.
    pub fn default_reconnect() -> Self {
        Self::new(Duration::from_millis(500), Duration::from_secs(30)).expect("valid defaults")
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        self.attempt += 1;
        step.mul_f64(0.8 + fastrand::f64() * 0.4)
    }

    /// Attempts since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Back to the initial delay, after a connection that stayed healthy.
    pub fn reset(&mut self) {
        self.next = self.initial;
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::default_reconnect();
        let steps: Vec<f64> = (0..10).map(|_| b.next_delay().as_secs_f64()).collect();
        let nominal = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0];
        for (got, want) in steps.iter().zip(nominal) {
            assert!(*got >= want * 0.8 - 1e-9 && *got <= want * 1.2 + 1e-9, "{got} vs {want}");
        }
        assert_eq!(b.attempt(), 10);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(600));
    }

    #[test]
    fn rejects_nonsense() {
        assert!(Backoff::new(Duration::ZERO, Duration::from_secs(1)).is_err());
        assert!(Backoff::new(Duration::from_secs(2), Duration::from_secs(1)).is_err());
    }
}
