//! Certificates and ACME: `ggrok_acme_orders_total{result="ok"|"failed"}`,
//! `ggrok_acme_names{status}` (names by where they stand), and
//! `ggrok_certificate_expiry_timestamp_seconds{name,source}` for every name of every certificate
//! in use, set at scrape time.

use crate::tls::Source;
use crate::tls::info::CertInfo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExpiryLabels {
    name: String,
    source: &'static str,
}

/// The certificate series.
pub struct CertificateSeries {
    orders: Family<ResultLabels, Counter>,
    names: Family<StatusLabels, Gauge>,
    expiry: Family<ExpiryLabels, Gauge>,
}

impl CertificateSeries {
    /// Registers the families; both order results start at 0.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let series = Self { orders: Family::default(), names: Family::default(), expiry: Family::default() };
        for result in ["ok", "failed"] {
            let _ = series.orders.get_or_create(&ResultLabels { result });
        }
        registry.register(
            "acme_orders",
            "ACME certificate orders, by result: ok (issued) or failed",
            series.orders.clone(),
        );
        registry.register(
            "acme_names",
            "Names ACME keeps certificates for, by status: pending, valid, failed, idle (on-demand, unclaimed)",
            series.names.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When the certificate presented for a name expires, in Unix seconds, by name and source (file, acme)",
            series.expiry.clone(),
        );
        series
    }

    /// Counts an order.
    pub fn order(&self, ok: bool) {
        self.orders.get_or_create(&ResultLabels { result: if ok { "ok" } else { "failed" } }).inc();
    }

    /// Sets the gauges from the certificates in use and ACME's names by status.
    pub fn set(&self, in_use: &[(Source, CertInfo)], names: &[(&'static str, usize)]) {
        self.expiry.clear();
        for (source, info) in in_use {
            let source = match source {
                Source::File(_) => "file",
                Source::Acme(_) => "acme",
            };
            for name in &info.names {
                let labels = ExpiryLabels { name: name.clone(), source };
                // Files come first: where two certificates carry a name, the file's is presented.
                if self.expiry.get(&labels).is_none() {
                    self.expiry.get_or_create(&labels).set(info.not_after);
                }
            }
        }
        for (status, count) in names {
            self.names.get_or_create(&StatusLabels { status }).set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
    }
}
