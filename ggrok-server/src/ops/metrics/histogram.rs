//! A histogram of durations made of atomics: observing one takes no lock (prometheus-client's own
//! `Histogram` takes a mutex per observation), and it is encoded by prometheus-client.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (a `+Inf` bucket follows): from a fast local answer
/// to a slow download.
pub const BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The same bounds in nanoseconds, so an observation compares integers.
const BOUNDS_NANOS: [u64; BUCKETS.len()] = {
    let mut nanos = [0u64; BUCKETS.len()];
    let mut i = 0;
    while i < BUCKETS.len() {
        nanos[i] = (BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    nanos
};

/// Observations of durations; clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct DurationHistogram(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// Sum of all observations, in nanoseconds.
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NANOS.iter().position(|&bound| nanos <= bound).unwrap_or(BUCKETS.len());
        self.0.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// `(upper bound, observations)` per bucket, not cumulative, ending with `+Inf`.
    fn buckets(&self) -> [(f64, u64); BUCKETS.len() + 1] {
        std::array::from_fn(|i| {
            (BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), self.0.buckets[i].load(Ordering::Relaxed))
        })
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets = self.buckets();
        // The count is the buckets' total, so `+Inf` and `_count` agree even while requests end.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::{Registry, Unit};

    #[test]
    fn observations_land_in_their_bucket_and_encode_cumulatively() {
        let h = DurationHistogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(7));
        h.observe(Duration::from_secs(60));
        assert_eq!(h.count(), 4);
        let mut registry = Registry::default();
        registry.register_with_unit("took", "Time taken", Unit::Seconds, h.clone());
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        for line in [
            "# TYPE took_seconds histogram",
            "took_seconds_bucket{le=\"0.001\"} 2",
            "took_seconds_bucket{le=\"0.005\"} 2",
            "took_seconds_bucket{le=\"0.01\"} 3",
            "took_seconds_bucket{le=\"30\"} 3",
            "took_seconds_bucket{le=\"+Inf\"} 4",
            "took_seconds_sum 60.0085",
            "took_seconds_count 4",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
        }
    }
}
