//! ggrokd: the client daemon. Holds the tunnels of its configuration over one or more connections
//! (links, each on its own thread) to ggrok-server, forwards each request to the local service it
//! names, and serves the control socket that ggrokctl talks to.

#![forbid(unsafe_code)]

pub mod backoff;
pub mod claims;
pub mod cli;
pub mod config;
pub mod control;
pub mod coverage;
pub mod ctl;
pub mod daemon;
pub mod dial;
pub mod exchange;
pub mod identity;
pub mod inspect;
pub mod link;
pub mod links;
pub mod local;
pub mod notify;
pub mod ops;
pub mod persist;
pub mod pool;
pub mod proxy_header;
pub mod reqlog;
pub mod session;
pub mod stats;
pub mod supervisor;
pub mod tcp;
pub mod tls;
pub mod tunnels;
pub mod wire;

use config::DaemonConfig;
use ctl::ControlSocket;
use daemon::Daemon;
use std::path::Path;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Binds the control socket, then runs the daemon until `shutdown` is cancelled: the control
/// socket, SIGHUP (reload) and the systemd notifications on the caller's runtime, each link on a
/// thread of its own ([`links`]).
pub async fn run(config: DaemonConfig, socket: &Path, shutdown: CancellationToken) -> anyhow::Result<()> {
    let identity = identity::take(&config.path).map_err(anyhow::Error::msg)?;
    let control_socket = ControlSocket::bind(socket)?;
    let id = identity.id.clone();
    info!(
        config = %config.path.display(),
        servers = %config.servers.iter().map(|s| s.authority.as_str()).collect::<Vec<_>>().join(", "),
        tunnels = config.tunnels.len(),
        connections = %config.connections,
        transport = config.transport.as_str(),
        daemon = id,
        socket = %control_socket.path().display(),
        "ggrokd {} starting",
        env!("CARGO_PKG_VERSION")
    );
    let daemon = Arc::new(Daemon::new(&config, id));
    daemon.inspector.listener.start(&daemon, config.inspect.address, shutdown.clone()).await;
    tokio::spawn(control_socket.serve(daemon.clone(), shutdown.clone()));
    tokio::spawn(reload_on_sighup(daemon.clone(), shutdown.clone()));
    // Ready without waiting for the server: ggrokctl works from now on, and a server that is down
    // must not hold up `systemctl start`.
    notify::ready(daemon.clone(), shutdown.clone());
    links::run(daemon, shutdown).await;
    info!("stopped");
    Ok(())
}

async fn reload_on_sighup(daemon: Arc<Daemon>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        return warn!("cannot listen for SIGHUP; use ggrokctl reload");
    };
    loop {
        tokio::select! {
            _ = hangups.recv() => {
                info!("SIGHUP: reloading the config");
                // Errors are logged by reload itself.
                let _ = ops::reload(&daemon).await;
            }
            _ = shutdown.cancelled() => return,
        }
    }
}
