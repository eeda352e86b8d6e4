//! `[limits] tcp_idle_timeout`: a public TCP connection that carries no byte either way for that
//! long is closed. The public socket's tally marks each byte's time ([`Activity`]); a watchdog
//! ([`Activity::idle`]) sleeps until the last mark plus the timeout and resolves once nothing
//! passed meanwhile. No timer per byte: one sleep per timeout period at most.

use crate::ops::metrics::TcpMeter;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// When a connection last carried a byte, in milliseconds since it began.
#[derive(Clone)]
pub struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Default for Activity {
    /// A connection beginning now.
    fn default() -> Self {
        Self { start: Instant::now(), last_ms: Arc::default() }
    }
}

impl Activity {
    fn mark(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Resolves once the connection carried nothing for `timeout`.
    pub async fn idle(&self, timeout: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let due = last + timeout;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// The public socket's tally: the port's metrics, and the connection's activity.
pub struct Traffic(pub TcpMeter, pub Activity);

impl ggrok_proto::tally::Tally for Traffic {
    fn read(&mut self, n: usize) {
        self.0.read(n);
        self.1.mark();
    }
    fn written(&mut self, n: usize) {
        self.0.written(n);
        self.1.mark();
    }
}
