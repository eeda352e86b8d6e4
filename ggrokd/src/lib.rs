//! ggrokd: the client daemon. Holds the tunnels of its configuration over one connection to
//! ggrok-server and forwards each request to the local service it names.

#![forbid(unsafe_code)]

pub mod backoff;
pub mod config;
pub mod control;
pub mod local;
pub mod session;
pub mod tunnels;

use config::DaemonConfig;
use session::Shared;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(config: DaemonConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    info!(
        config = %config.path.display(),
        server = %config.server.authority,
        tunnels = config.tunnels.len(),
        "ggrokd {} starting",
        env!("CARGO_PKG_VERSION")
    );
    let shared = Arc::new(Shared {
        server: config.server.clone(),
        token: config.token.clone(),
        tunnels: Arc::new(tunnels::Tunnels::new(&config.tunnels)),
        local: local::LocalClient::default(),
    });
    session::supervise(shared, shutdown).await;
    info!("stopped");
    Ok(())
}
