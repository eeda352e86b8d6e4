//! Reconnect delays: exponential with jitter, capped, reset after a healthy connection; and the
//! wait between attempts, which a shutdown or a reconnect request ends at once.

use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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

/// When to try again after a connection ends.
#[derive(Debug, Clone)]
pub struct Retry {
    backoff: Backoff,
    healthy_after: Duration,
}

impl Retry {
    /// Backoff from `initial` to `max`; a connection that lasted `healthy_after` resets it.
    pub fn new(initial: Duration, max: Duration, healthy_after: Duration) -> Result<Self, String> {
        Ok(Self { backoff: Backoff::new(initial, max)?, healthy_after })
    }

    /// The delay before the next attempt, given how long the last connection was up (`None`
    /// when the attempt failed before connecting).
    pub fn next_delay(&mut self, connected_for: Option<Duration>) -> Duration {
        if connected_for.is_some_and(|d| d >= self.healthy_after) {
            self.backoff.reset();
        }
        self.backoff.next_delay()
    }

    /// Failed attempts since the last healthy connection.
    pub fn attempt(&self) -> u32 {
        self.backoff.attempt()
    }
}

/// How a wait between attempts ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Wake {
    /// The delay passed.
    Elapsed,
    /// Shutdown: stop.
    Shutdown,
    /// Something asked for an immediate reconnect.
    Now,
}

/// Waits `delay`, or less if `shutdown` is cancelled or `reconnect` resolves first.
pub async fn wait(
    delay: Duration,
    shutdown: &CancellationToken,
    reconnect: impl Future<Output = ()>,
) -> Wake {
    tokio::select! {
        _ = tokio::time::sleep(delay) => Wake::Elapsed,
        _ = shutdown.cancelled() => Wake::Shutdown,
        _ = reconnect => Wake::Now,
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
    fn a_healthy_connection_resets_the_backoff() {
        let mut r =
            Retry::new(Duration::from_secs(1), Duration::from_secs(8), Duration::from_secs(60)).unwrap();
        for _ in 0..5 {
            r.next_delay(None);
        }
        assert_eq!(r.attempt(), 5);
        // A short connection does not reset: still near the cap.
        assert!(r.next_delay(Some(Duration::from_secs(5))) >= Duration::from_secs_f64(6.4));
        // A healthy one does.
        assert!(r.next_delay(Some(Duration::from_secs(61))) <= Duration::from_secs_f64(1.2));
        assert_eq!(r.attempt(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_the_whole_delay_when_nothing_happens() {
        let start = tokio::time::Instant::now();
        let never = std::future::pending::<()>();
        assert_eq!(wait(Duration::from_secs(30), &CancellationToken::new(), never).await, Wake::Elapsed);
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_wait_at_once() {
        let shutdown = CancellationToken::new();
        let start = tokio::time::Instant::now();
        let cancel = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            cancel.cancel();
        });
        let outcome = wait(Duration::from_secs(30), &shutdown, std::future::pending()).await;
        assert_eq!(outcome, Wake::Shutdown);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconnect_request_ends_the_wait_at_once() {
        let start = tokio::time::Instant::now();
        let soon = tokio::time::sleep(Duration::from_secs(1));
        assert_eq!(wait(Duration::from_secs(30), &CancellationToken::new(), soon).await, Wake::Now);
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[test]
    fn rejects_nonsense() {
        assert!(Backoff::new(Duration::ZERO, Duration::from_secs(1)).is_err());
        assert!(Backoff::new(Duration::from_secs(2), Duration::from_secs(1)).is_err());
    }
}
