//! Config reloads (SIGHUP): `ggrok_config_reloads_total{result="ok"|"failed"}`, and when the
//! config in force was loaded, `ggrok_config_last_reload_success_timestamp_seconds`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The reload counters.
pub struct ReloadSeries {
    reloads: Family<ResultLabels, Counter>,
    loaded_at: Gauge,
}

impl ReloadSeries {
    /// Registers the families; both results start at 0, and the load time at now.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let series = Self { reloads: Family::default(), loaded_at: Gauge::default() };
        for result in ["ok", "failed"] {
            let _ = series.reloads.get_or_create(&ResultLabels { result });
        }
        series.loaded_at.set(now());
        registry.register(
            "config_reloads",
            "Reloads of server.toml (SIGHUP), by result: ok, or failed (the previous config stays)",
            series.reloads.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "When the config in force was loaded (start or last good reload), in Unix seconds",
            series.loaded_at.clone(),
        );
        series
    }

    /// Counts a reload.
    pub fn count(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
        if ok {
            self.loaded_at.set(now());
        }
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
