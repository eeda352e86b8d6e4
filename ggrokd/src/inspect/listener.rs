//! The inspector's listener as `inspect` configures it: started with ggrokd, and moved, stopped
//! or started again by a reload when the address changes. A stopped listener's open connections
//! (the page's event stream among them) end with it; a page reloaded at the new address carries
//! on, since what was captured stays.

use super::server;
use crate::daemon::Daemon;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock, Weak};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// The running listener and what starts one.
#[derive(Default)]
pub struct Listener {
    /// The daemon served (weak: the daemon holds this) and ggrokd's shutdown, set by [`start`].
    ///
    /// [`start`]: Listener::start
    runner: OnceLock<(Weak<Daemon>, CancellationToken)>,
    /// The configured address of the listener running now, and what stops it.
    current: Mutex<Option<(SocketAddr, CancellationToken)>>,
}

impl Listener {
    /// Starts the listener on `address` (none: `inspect = "off"`) for `daemon` until `shutdown`.
    pub fn start(
        &self,
        daemon: &std::sync::Arc<Daemon>,
        address: Option<SocketAddr>,
        shutdown: CancellationToken,
    ) {
        let _ = self.runner.set((std::sync::Arc::downgrade(daemon), shutdown));
        self.follow(address);
    }

    /// Makes the listener follow `address` (a reload): nothing when it is the one configured
    /// already; else the running one stops and one on `address`, if any, starts (a busy port is
    /// a warning, as at start). The configured address is compared, so `127.0.0.1:0` stays on
    /// the port it was given.
    pub fn follow(&self, address: Option<SocketAddr>) {
        let Some((daemon, shutdown)) = self.runner.get() else { return };
        let mut current = self.current.lock().expect("inspector listener lock");
        if current.as_ref().map(|(a, _)| *a) == address {
            return;
        }
        if let Some((old, stop)) = current.take() {
            stop.cancel();
            info!("inspector on {old} stopped");
        }
        let (Some(address), Some(daemon)) = (address, daemon.upgrade()) else { return };
        let stop = shutdown.child_token();
        // Remembered even when the port is busy, so the next reload does not warn again unless
        // the address changed.
        *current = Some((address, stop.clone()));
        if let Some(listener) = server::bind(address) {
            tokio::spawn(server::serve(daemon, listener, stop));
        }
    }
}
