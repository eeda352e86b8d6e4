//! What flows through the server, in Prometheus metrics (served by [`crate::ops::admin`]).
//!
//! Per-host series are labelled with the host *as registered* (`api.example.com`,
//! `*.example.com`), the registry entry a request was routed to, never with the raw `Host`
//! header: a wildcard tunnel can receive any number of names, the registry holds a bounded number
//! of entries. Requests that reach no tunnel (unknown host, invalid `Host`, redirects to HTTPS)
//! count under `host=""`.
//!
//! The hot path takes no lock and allocates nothing here: a [`HostMeter`] holding the host's
//! counters is made once, when the host is claimed, and lives in its registry entry; a request
//! only increments atomics. A host's series are removed once the registry forgets the host (it is
//! released, or stays offline past its grace period) and no request in flight still uses them,
//! so their number stays bounded as clients come and go.

mod access;
mod certificates;
mod histogram;
mod limits;
mod metered;
mod reloads;
mod tcp;

pub use access::{AccessSeries, Denial};
pub use certificates::CertificateSeries;
pub use histogram::{BUCKETS, DurationHistogram};
pub use limits::{Limit, Rejection};
use limits::{LimitLabels, ReasonLabels};
pub use metered::{Metered, PublicTraffic, respond};
pub use reloads::ReloadSeries;
pub use tcp::{TcpMeter, TcpSeries};

use http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// `Content-Type` of [`Metrics::encode`]'s text: the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The `host` label of requests that reached no tunnel.
pub const UNROUTED: &str = "";

/// The `status_class` label values; statuses of 600 and above (which HTTP does not define) count
/// as `5xx`.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabels {
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    host: String,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DaemonLabels {
    client: String,
    daemon: String,
    replica: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    replica: String,
    version: &'static str,
}

/// What the scrape reads from the server's state at scrape time.
pub struct Scrape<'a> {
    /// Hosts served by a connected daemon.
    pub hosts_online: usize,
    /// Each connected daemon: its client, its id (from its hello), and its sessions here.
    pub daemons: &'a [(String, String, usize)],
    /// This replica's name (`[cluster] replica`).
    pub replica: &'a str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

/// The per-host families, and which hosts have a live [`HostMeter`].
#[derive(Default)]
struct Series {
    requests: Family<RequestLabels, Counter>,
    received: Family<HostLabels, Counter>,
    sent: Family<HostLabels, Counter>,
    durations: Family<HostLabels, DurationHistogram>,
    meters: Mutex<HashMap<String, Weak<HostMeter>>>,
}

impl Series {
    fn remove(&self, host: &str) {
        let labels = HostLabels { host: host.to_owned() };
        for status_class in STATUS_CLASSES {
            self.requests.remove(&RequestLabels { host: host.to_owned(), status_class });
        }
        self.received.remove(&labels);
        self.sent.remove(&labels);
        self.durations.remove(&labels);
    }
}

/// Every metric of the server.
pub struct Metrics {
    registry: Registry,
    series: Arc<Series>,
    sessions: Gauge,
    daemons: Gauge,
    daemon_sessions: Family<DaemonLabels, Gauge>,
    info: Family<InfoLabels, Gauge>,
    hosts_online: Gauge,
    stream_window: Gauge,
    answers: Gauge,
    large_reads: Gauge,
    streams: [Counter; 2],
    limits: [Counter; Limit::ALL.len()],
    rejections: [Counter; Rejection::ALL.len()],
    unrouted: Arc<HostMeter>,
    /// TCP tunnels' series, by port.
    pub tcp: TcpSeries,
    /// Config reloads.
    pub reloads: ReloadSeries,
    /// Clients turned away by access rules.
    pub access: AccessSeries,
    /// Certificates in use and ACME orders.
    pub certificates: CertificateSeries,
}

impl Metrics {
    /// All metrics at zero.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("ggrok");
        let series = Arc::new(Series::default());
        let (sessions, hosts_online) = (Gauge::default(), Gauge::default());
        registry.register("tunnel_sessions", "Tunnel clients (ggrokd) connected", sessions.clone());
        registry.register("hosts_online", "Hosts served by a connected tunnel client", hosts_online.clone());
        let daemons = Gauge::default();
        registry.register(
            "tunnel_daemons",
            "ggrokd daemons connected (each over one or more tunnel sessions)",
            daemons.clone(),
        );
        let daemon_sessions = Family::<DaemonLabels, Gauge>::default();
        registry.register(
            "daemon_sessions",
            "Tunnel sessions of each connected ggrokd on this replica, by client and daemon id",
            daemon_sessions.clone(),
        );
        let info = Family::<InfoLabels, Gauge>::default();
        registry.register(
            "server_info",
            "This server: its replica name and version (always 1)",
            info.clone(),
        );
        let (stream_window, answers, large_reads) = (Gauge::default(), Gauge::default(), Gauge::default());
        registry.register_with_unit(
            "tunnel_stream_window",
            "The receive window each tunnel stream gets now: set by [limits] buffer_memory and the answers in flight",
            Unit::Bytes,
            stream_window.clone(),
        );
        registry.register(
            "answers_in_flight",
            "Answers from tunnels whose bodies are on their way to public clients",
            answers.clone(),
        );
        registry.register(
            "large_read_buffers",
            "Public HTTP/1 connections reading with 256 KiB buffers now: at most [limits] buffer_memory / 2 MiB, the others read 64 KiB",
            large_reads.clone(),
        );
        let routes = Family::<RouteLabels, Counter>::default();
        let streams =
            ["same_worker", "other_worker"].map(|route| routes.get_or_create_owned(&RouteLabels { route }));
        registry.register(
            "tunnel_streams",
            "Public requests sent through a tunnel session, by whether the session is on the worker thread the request arrived on",
            routes,
        );
        registry.register(
            "http_requests",
            "Public requests answered, by registered host (\"\" when no tunnel matched) and status class",
            series.requests.clone(),
        );
        registry.register_with_unit(
            "http_received",
            "Request body bytes received from public clients (and bytes of upgraded connections), by host",
            Unit::Bytes,
            series.received.clone(),
        );
        registry.register_with_unit(
            "http_sent",
            "Response body bytes sent to public clients (and bytes of upgraded connections), by host",
            Unit::Bytes,
            series.sent.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time from a public request's arrival to the end of its response body (for upgrades, to the 101)",
            Unit::Seconds,
            series.durations.clone(),
        );
        let limit_family = Family::<LimitLabels, Counter>::default();
        let limits = Limit::ALL.map(|l| limit_family.get_or_create_owned(&LimitLabels { limit: l.key() }));
        registry.register("limit_hits", "Limits hit, by the key of the limit in [limits]", limit_family);
        let reasons = Family::<ReasonLabels, Counter>::default();
        let rejections =
            Rejection::ALL.map(|r| reasons.get_or_create_owned(&ReasonLabels { reason: r.label() }));
        registry.register(
            "tunnel_handshakes_rejected",
            "Tunnel client handshakes refused, by reason",
            reasons,
        );
        let unrouted = HostMeter::new(&series, UNROUTED);
        let tcp = TcpSeries::register(&mut registry);
        let reloads = ReloadSeries::register(&mut registry);
        let access = AccessSeries::register(&mut registry);
        let certificates = CertificateSeries::register(&mut registry);
        Arc::new(Self {
            registry,
            series,
            sessions,
            daemons,
            daemon_sessions,
            info,
            hosts_online,
            stream_window,
            answers,
            large_reads,
            streams,
            limits,
            rejections,
            unrouted,
            tcp,
            reloads,
            access,
            certificates,
        })
    }

    /// The meter of a registered host (or pattern); made once per host, shared while it lives.
    pub fn meter(&self, host: &str) -> Arc<HostMeter> {
        let mut meters = self.series.meters.lock().expect("metrics lock");
        if let Some(meter) = meters.get(host).and_then(Weak::upgrade) {
            return meter;
        }
        // The host's last meter is gone (or going: its drop waits for this lock and will then see
        // a newer meter): start its series afresh.
        self.series.remove(host);
        let meter = HostMeter::new(&self.series, host);
        meters.insert(host.to_owned(), Arc::downgrade(&meter));
        meter
    }

    /// The meter of requests that reached no tunnel (`host=""`).
    pub fn unrouted(&self) -> &Arc<HostMeter> {
        &self.unrouted
    }

    /// Counts a limit hit.
    pub fn limit_hit(&self, limit: Limit) {
        self.limits[limit as usize].inc();
    }

    /// Counts a refused tunnel handshake.
    pub fn rejected(&self, why: Rejection) {
        self.rejections[why as usize].inc();
    }

    /// Counts a connected tunnel session until the guard is dropped.
    pub fn session_connected(&self) -> SessionGuard {
        self.sessions.inc();
        SessionGuard(self.sessions.clone())
    }

    /// Counts a request sent through a tunnel session on the request's own worker (`local`) or
    /// another one.
    pub fn stream_routed(&self, local: bool) {
        self.streams[usize::from(!local)].inc();
    }

    /// Sets the buffer budget's gauges: the stream window granted, the answers in flight and the
    /// connections holding large read buffers.
    pub fn set_budget(&self, budget: &ggrok_proto::budget::Budget) {
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.stream_window.set(i64::from(budget.window()));
        self.answers.set(count(budget.open()));
        self.large_reads.set(count(budget.large_reads()));
    }

    /// Every metric in the Prometheus text format, with what `scrape` read at scrape time.
    pub fn encode(&self, scrape: &Scrape) -> String {
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.hosts_online.set(count(scrape.hosts_online));
        self.daemons.set(count(scrape.daemons.len()));
        // Daemons come and go: the family holds those connected now, and nothing more.
        self.daemon_sessions.clear();
        for (client, daemon, sessions) in scrape.daemons {
            let labels = DaemonLabels {
                client: client.clone(),
                daemon: daemon.clone(),
                replica: scrape.replica.to_owned(),
            };
            self.daemon_sessions.get_or_create(&labels).set(count(*sessions));
        }
        self.info.clear();
        let info = InfoLabels { replica: scrape.replica.to_owned(), version: env!("CARGO_PKG_VERSION") };
        self.info.get_or_create(&info).set(1);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

/// A connected tunnel session, counted while it lives.
pub struct SessionGuard(Gauge);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One host's counters, resolved once: counting a request is a few atomic increments.
pub struct HostMeter {
    host: String,
    requests: [Counter; STATUS_CLASSES.len()],
    received: Counter,
    sent: Counter,
    duration: DurationHistogram,
    series: Arc<Series>,
}

impl std::fmt::Debug for HostMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostMeter").field("host", &self.host).finish_non_exhaustive()
    }
}

impl HostMeter {
    fn new(series: &Arc<Series>, host: &str) -> Arc<Self> {
        let labels = HostLabels { host: host.to_owned() };
        Arc::new(Self {
            host: host.to_owned(),
            requests: STATUS_CLASSES.map(|status_class| {
                series.requests.get_or_create_owned(&RequestLabels { host: host.to_owned(), status_class })
            }),
            received: series.received.get_or_create_owned(&labels),
            sent: series.sent.get_or_create_owned(&labels),
            duration: series.durations.get_or_create_owned(&labels),
            series: series.clone(),
        })
    }

    /// Counts an answered request by its status class.
    pub fn answered(&self, status: StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, STATUS_CLASSES.len()) - 1;
        self.requests[class].inc();
    }

    /// Counts bytes received from a public client.
    pub fn received(&self, bytes: usize) {
        self.received.inc_by(bytes as u64);
    }

    /// Counts bytes sent to a public client.
    pub fn sent(&self, bytes: usize) {
        self.sent.inc_by(bytes as u64);
    }

    /// Records how long a request took.
    pub fn took(&self, d: Duration) {
        self.duration.observe(d);
    }
}

impl Drop for HostMeter {
    fn drop(&mut self) {
        let Ok(mut meters) = self.series.meters.lock() else { return };
        // Only the host's current meter removes its series: a newer one may have taken over.
        if meters.get(&self.host).is_some_and(|w| std::ptr::eq(w.as_ptr(), self)) {
            meters.remove(&self.host);
            self.series.remove(&self.host);
        }
    }
}

#[cfg(test)]
mod tests;
