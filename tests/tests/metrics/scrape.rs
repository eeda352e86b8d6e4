//! Reading a scrape: `/metrics` parsed by a Prometheus text parser, and the counts a test
//! expects for one host label.

use http::StatusCode;
use prometheus_parse::{Sample, Scrape, Value};
use std::collections::HashMap;

/// A parsed scrape.
pub struct Metrics(Scrape);

impl Metrics {
    pub fn parse(text: &str) -> Self {
        Self(Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format"))
    }

    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&Sample> {
        self.0.samples.iter().find(|s| {
            s.metric == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }

    /// The value of a counter, gauge or untyped sample; panics when it is missing.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.find(name, labels).map(|s| &s.value) {
            Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
            other => panic!("{name}{labels:?}: {other:?}"),
        }
    }

    pub fn requests(&self, host: &str, class: &str) -> f64 {
        self.value("ggrok_http_requests_total", &[("host", host), ("status_class", class)])
    }

    /// The histogram's `_count`, after checking that its `+Inf` bucket agrees.
    pub fn durations(&self, host: &str) -> f64 {
        let count = self.value("ggrok_http_request_duration_seconds_count", &[("host", host)]);
        let Some(Value::Histogram(buckets)) =
            self.find("ggrok_http_request_duration_seconds", &[("host", host)]).map(|s| &s.value)
        else {
            panic!("no duration histogram for {host:?}")
        };
        let inf = buckets.iter().find(|b| b.less_than.is_infinite()).expect("+Inf bucket");
        assert_eq!(inf.count, count, "+Inf bucket and _count of {host:?}");
        assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count), "buckets are cumulative");
        assert_eq!(buckets.first().map(|b| b.less_than), Some(0.001));
        assert_eq!(buckets.iter().rev().nth(1).map(|b| b.less_than), Some(30.0));
        count
    }
}

/// Requests answered per status class, body bytes each way, for one host label.
#[derive(Default, Debug)]
pub struct Expected {
    classes: HashMap<&'static str, f64>,
    received: f64,
    sent: f64,
}

impl Expected {
    pub fn record(&mut self, status: StatusCode, request_body: usize, response_body: usize) {
        let class = ["1xx", "2xx", "3xx", "4xx", "5xx"][usize::from(status.as_u16() / 100) - 1];
        *self.classes.entry(class).or_default() += 1.0;
        self.received += request_body as f64;
        self.sent += response_body as f64;
    }

    pub fn total(&self) -> f64 {
        self.classes.values().sum()
    }

    pub fn check(&self, m: &Metrics, host: &str) {
        for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
            let want = self.classes.get(class).copied().unwrap_or(0.0);
            assert_eq!(m.requests(host, class), want, "requests {host:?} {class}");
        }
        assert_eq!(m.value("ggrok_http_received_bytes_total", &[("host", host)]), self.received, "{host:?}");
        assert_eq!(m.value("ggrok_http_sent_bytes_total", &[("host", host)]), self.sent, "{host:?}");
        assert_eq!(m.durations(host), self.total(), "durations {host:?}");
    }
}
