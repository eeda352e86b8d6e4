//! A tunnel's traffic counters: requests, 4xx/5xx, bytes, requests in flight, and the latency of
//! its latest requests. Everything is an atomic, so the request path takes no lock here.

use ggrok_proto::ctl::LATENCY_WINDOW;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Counters of one tunnel, shared by its requests in flight (and kept when a reload replaces the
/// tunnel).
#[derive(Debug, Default)]
pub struct TunnelStats {
    /// Requests forwarded (counted when they arrive).
    pub requests: AtomicU64,
    /// Requests the local service could not be reached for.
    pub errors: AtomicU64,
    /// Responses with a 4xx status.
    pub status_4xx: AtomicU64,
    /// Responses with a 5xx status.
    pub status_5xx: AtomicU64,
    /// Body bytes from the public clients.
    pub bytes_in: AtomicU64,
    /// Body bytes to the public clients.
    pub bytes_out: AtomicU64,
    /// Requests and upgraded connections in flight.
    pub active: AtomicU64,
    /// Durations of the latest completed requests.
    pub latency: LatencyWindow,
}

/// What one completed exchange adds to the counters.
pub struct Outcome {
    /// The status the public client got (0: none).
    pub status: u16,
    /// Body bytes in and out.
    pub bytes: (u64, u64),
    /// From arrival to the end of the response; `None` for upgraded connections, whose lifetime
    /// says nothing about latency.
    pub latency: Option<Duration>,
}

impl TunnelStats {
    /// A request arrived: one more request, one more in flight.
    pub fn started(&self) {
        self.requests.fetch_add(1, Relaxed);
        self.active.fetch_add(1, Relaxed);
    }

    /// A request (or upgraded connection) ended.
    pub fn finished(&self, outcome: &Outcome) {
        self.active.fetch_sub(1, Relaxed);
        match outcome.status {
            400..=499 => self.status_4xx.fetch_add(1, Relaxed),
            500..=599 => self.status_5xx.fetch_add(1, Relaxed),
            _ => 0,
        };
        let (bytes_in, bytes_out) = outcome.bytes;
        if bytes_in > 0 {
            self.bytes_in.fetch_add(bytes_in, Relaxed);
        }
        if bytes_out > 0 {
            self.bytes_out.fetch_add(bytes_out, Relaxed);
        }
        if let Some(latency) = outcome.latency {
            self.latency.record(latency);
        }
    }
}

/// The durations of the latest [`LATENCY_WINDOW`] requests, in microseconds, in a ring of atomics
/// allocated at the first request (4 KiB, only for tunnels that have traffic).
///
/// Writers claim a slot with one `fetch_add` and store into it; a reader copies the ring and
/// sorts the copy. A reader racing a writer may see a slot's previous value, which is harmless
/// for a percentile over a thousand samples.
#[derive(Debug, Default)]
pub struct LatencyWindow {
    slots: OnceLock<Box<[AtomicU32]>>,
    next: AtomicU64,
}

/// Marks a slot not written yet (the ring's first lap).
const EMPTY: u32 = u32::MAX;

/// Percentiles of a [`LatencyWindow`], in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    /// Median.
    pub p50: u32,
    /// 99th percentile.
    pub p99: u32,
    /// How many samples they were computed from.
    pub samples: usize,
}

impl LatencyWindow {
    /// Records one duration (saturating at about 71 minutes).
    pub fn record(&self, duration: Duration) {
        let micros = u32::try_from(duration.as_micros()).unwrap_or(EMPTY - 1).min(EMPTY - 1);
        let slots = self.slots.get_or_init(|| (0..LATENCY_WINDOW).map(|_| AtomicU32::new(EMPTY)).collect());
        let at = self.next.fetch_add(1, Relaxed) % LATENCY_WINDOW as u64;
        slots[at as usize].store(micros, Relaxed);
    }

    /// p50 and p99 (nearest rank) of the window; `None` before the first sample.
    pub fn percentiles(&self) -> Option<Percentiles> {
        let slots = self.slots.get()?;
        let mut samples: Vec<u32> = slots.iter().map(|s| s.load(Relaxed)).filter(|&v| v != EMPTY).collect();
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        Some(Percentiles {
            p50: nearest_rank(&samples, 50),
            p99: nearest_rank(&samples, 99),
            samples: samples.len(),
        })
    }
}

/// The value at rank ⌈p/100 · n⌉ of the sorted, non-empty `sorted`.
fn nearest_rank(sorted: &[u32], percent: usize) -> u32 {
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn empty_window_has_no_percentiles() {
        assert_eq!(LatencyWindow::default().percentiles(), None);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let window = LatencyWindow::default();
        window.record(ms(7));
        assert_eq!(window.percentiles(), Some(Percentiles { p50: 7000, p99: 7000, samples: 1 }));
        // 1..=100 ms in shuffled order: p50 is the 50th value, p99 the 99th.
        let window = LatencyWindow::default();
        for i in (1..=100).map(|i| (i * 37) % 100 + 1) {
            window.record(ms(i));
        }
        assert_eq!(window.percentiles(), Some(Percentiles { p50: 50_000, p99: 99_000, samples: 100 }));
    }

    #[test]
    fn only_the_latest_window_counts() {
        let window = LatencyWindow::default();
        // A slow past, then a full window of fast requests: the past is forgotten.
        for _ in 0..500 {
            window.record(ms(900));
        }
        for _ in 0..LATENCY_WINDOW {
            window.record(ms(2));
        }
        let p = window.percentiles().unwrap();
        assert_eq!((p.p50, p.p99, p.samples), (2000, 2000, LATENCY_WINDOW));
        // Ten slow requests among the last 1000 stay under p99; eleven reach it.
        for _ in 0..10 {
            window.record(ms(900));
        }
        assert_eq!(window.percentiles().unwrap().p99, 2000);
        window.record(ms(900));
        let p = window.percentiles().unwrap();
        assert_eq!((p.p50, p.p99), (2000, 900_000));
    }

    #[test]
    fn huge_durations_saturate() {
        let window = LatencyWindow::default();
        window.record(Duration::from_secs(10 * 24 * 3600));
        assert_eq!(window.percentiles().unwrap().p99, EMPTY - 1);
    }

    #[test]
    fn concurrent_writers_fill_the_window() {
        let window = std::sync::Arc::new(LatencyWindow::default());
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let window = window.clone();
                std::thread::spawn(move || (0..1000).for_each(|i| window.record(ms(i % 10 + 1))))
            })
            .collect();
        writers.into_iter().for_each(|w| w.join().unwrap());
        let p = window.percentiles().unwrap();
        assert_eq!(p.samples, LATENCY_WINDOW);
        assert!((1000..=10_000).contains(&p.p50) && p.p99 == 10_000, "{p:?}");
    }

    #[test]
    fn counters_split_statuses_and_track_requests_in_flight() {
        let stats = TunnelStats::default();
        stats.started();
        stats.started();
        stats.started();
        assert_eq!(stats.active.load(Relaxed), 3);
        stats.finished(&Outcome { status: 404, bytes: (5, 7), latency: Some(ms(1)) });
        stats.finished(&Outcome { status: 502, bytes: (0, 3), latency: Some(ms(1)) });
        stats.finished(&Outcome { status: 101, bytes: (10, 20), latency: None });
        let load = |a: &AtomicU64| a.load(Relaxed);
        assert_eq!((load(&stats.requests), load(&stats.active)), (3, 0));
        assert_eq!((load(&stats.status_4xx), load(&stats.status_5xx)), (1, 1));
        assert_eq!((load(&stats.bytes_in), load(&stats.bytes_out)), (15, 30));
        assert_eq!(stats.latency.percentiles().unwrap().samples, 2);
    }
}
