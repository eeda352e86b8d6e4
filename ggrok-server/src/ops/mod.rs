//! What operators see: [`metrics`] (Prometheus), the [`admin`] listener that serves them with
//! `/healthz`, and systemd [`notify`]cations.

pub mod admin;
pub mod metrics;
pub mod notify;
