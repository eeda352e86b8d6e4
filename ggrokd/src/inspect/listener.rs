//! The inspector's listener as `inspect` configures it: started with ggrokd, and moved, stopped
//! or started again by a reload when the address changes. A stopped listener's open connections
//! (the page's event stream among them) end with it; a page reloaded at the new address carries
//! on, since what was captured stays.

use super::server;
use crate::daemon::Daemon;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// The running listener and what starts one.
#[derive(Default)]
pub struct Listener {
    /// The daemon served (weak: the daemon holds this) and ggrokd's shutdown, set by [`start`].
    ///
    /// [`start`]: Listener::start
    runner: OnceLock<(Weak<Daemon>, CancellationToken)>,
    /// The listener running now, if one is.
    current: Mutex<Option<Running>>,
}

struct Running {
    /// The address configured (`127.0.0.1:0` stays on the port it was given).
    configured: SocketAddr,
    /// The address bound.
    local: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Listener {
    /// Starts the listener on `address` (none: `inspect = "off"`) for `daemon` until `shutdown`.
    pub async fn start(
        &self,
        daemon: &Arc<Daemon>,
        address: Option<SocketAddr>,
        shutdown: CancellationToken,
    ) {
        let _ = self.runner.set((Arc::downgrade(daemon), shutdown));
        self.follow(address).await;
    }

    /// Makes the listener follow `address` (a reload): nothing when one runs at that configured
    /// address already; else the new one binds first, and only once it listens does the old one
    /// stop (its socket closed when this returns). A new address that cannot be bound (a busy
    /// port) is a warning, the old listener stays, and the next reload tries again.
    pub async fn follow(&self, address: Option<SocketAddr>) {
        let Some((daemon, shutdown)) = self.runner.get() else { return };
        if self.lock().as_ref().map(|r| r.configured) == address {
            return;
        }
        let started = match address {
            None => None,
            Some(configured) => {
                let (Some(listener), Some(daemon)) = (server::bind(configured), daemon.upgrade()) else {
                    return;
                };
                let Ok(local) = listener.local_addr() else { return };
                let stop = shutdown.child_token();
                let task = tokio::spawn(server::serve(daemon, listener, stop.clone()));
                Some(Running { configured, local, stop, task })
            }
        };
        let old = std::mem::replace(&mut *self.lock(), started);
        if let Some(old) = old {
            old.stop.cancel();
            let _ = old.task.await;
            info!("inspector on http://{} stopped", old.local);
        }
    }

    /// Where the listener runs now, as a URL; none when it does not.
    pub fn url(&self) -> Option<String> {
        self.lock().as_ref().map(|r| format!("http://{}", r.local))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.current.lock().expect("inspector listener lock")
    }
}
