//! TCP tunnels' metrics, by public port: connections accepted, connections open, and bytes each
//! way. A connection resolves its port's counters once ([`TcpMeter`]) and then only increments
//! atomics as bytes pass. A port's series are removed when its listener closes
//! ([`TcpSeries::forget`]); the ports a client may claim bound their number.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortLabels {
    port: u16,
}

/// The per-port families.
#[derive(Default)]
pub struct TcpSeries {
    connections: Family<PortLabels, Counter>,
    open: Family<PortLabels, Gauge>,
    received: Family<PortLabels, Counter>,
    sent: Family<PortLabels, Counter>,
}

impl TcpSeries {
    /// Registers the families.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let series = Self::default();
        registry.register(
            "tcp_connections",
            "Public TCP connections accepted on TCP tunnel ports, by port",
            series.connections.clone(),
        );
        registry.register(
            "tcp_connections_open",
            "Public TCP connections open on TCP tunnel ports, by port",
            series.open.clone(),
        );
        registry.register_with_unit(
            "tcp_received",
            "Bytes received from public TCP clients, by port",
            Unit::Bytes,
            series.received.clone(),
        );
        registry.register_with_unit(
            "tcp_sent",
            "Bytes sent to public TCP clients, by port",
            Unit::Bytes,
            series.sent.clone(),
        );
        series
    }

    /// Counts a connection accepted on `port`; the meter counts its bytes and keeps it open
    /// until dropped.
    pub fn connection(&self, port: u16) -> TcpMeter {
        let labels = PortLabels { port };
        self.connections.get_or_create(&labels).inc();
        let open = self.open.get_or_create_owned(&labels);
        open.inc();
        TcpMeter {
            open,
            received: self.received.get_or_create_owned(&labels),
            sent: self.sent.get_or_create_owned(&labels),
        }
    }

    /// `port`'s listener closed: its series go.
    pub fn forget(&self, port: u16) {
        let labels = PortLabels { port };
        self.connections.remove(&labels);
        self.open.remove(&labels);
        self.received.remove(&labels);
        self.sent.remove(&labels);
    }
}

/// One public TCP connection's counters; a [`ggrok_proto::tally::Tally`] of the public socket.
pub struct TcpMeter {
    open: Gauge,
    received: Counter,
    sent: Counter,
}

impl ggrok_proto::tally::Tally for TcpMeter {
    fn read(&mut self, n: usize) {
        self.received.inc_by(n as u64);
    }
    fn written(&mut self, n: usize) {
        self.sent.inc_by(n as u64);
    }
}

impl Drop for TcpMeter {
    fn drop(&mut self) {
        self.open.dec();
    }
}
