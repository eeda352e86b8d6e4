//! What operators see: [`metrics`] (Prometheus), the [`admin`] listener that serves them with
//! `/healthz`, whose answer after a start may wait for tunnels ([`ready`]), and systemd
//! [`notify`]cations.

pub mod admin;
pub mod metrics;
pub mod notify;
pub mod ready;
