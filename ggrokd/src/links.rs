//! The daemon's links, each on an OS thread of its own (`ggrokd-link-N`) with a current-thread
//! runtime: its HTTP/2 connection, its control stream and its requests to local services never
//! cross threads, and a link that drops reconnects on its own while the others serve.
//!
//! How many: `connections = N` starts N at once; `"auto"` starts link 0, and the others once a
//! server hello says how many workers the server runs ([`Daemon::wanted_links`]). When fewer are
//! wanted (a reload, a server with fewer workers), the highest-numbered links drain and stop.
//! Shutdown cancels every link's token, and [`run`] returns once every thread has finished.

use crate::daemon::Daemon;
use crate::link::Link;
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span};

/// Starts and stops links to match [`Daemon::wanted_links`] until `shutdown`, then waits for
/// every link thread to finish (each drains its requests in flight for up to the grace period).
pub async fn run(daemon: Arc<Daemon>, shutdown: CancellationToken) {
    let mut wanted = daemon.wanted_links();
    let mut running: Vec<(Arc<Link>, JoinHandle<()>)> = Vec::new();
    let mut stopping: Vec<JoinHandle<()>> = Vec::new();
    loop {
        let want = *wanted.borrow_and_update() as usize;
        while running.len() < want {
            let index = running.len() as u32;
            match start(&daemon, index, &shutdown) {
                Ok(started) => running.push(started),
                Err(e) => {
                    error!("cannot start a thread for connection {index}: {e}");
                    break;
                }
            }
        }
        if running.len() > want {
            info!(from = running.len(), to = want, "holding fewer connections to the server");
        }
        while running.len() > want {
            let (link, thread) = running.pop().expect("more running than wanted");
            link.stop.cancel();
            daemon.remove_link(link.index);
            stopping.push(thread);
        }
        stopping.retain(|t| !t.is_finished());
        tokio::select! {
            changed = wanted.changed() => if changed.is_err() { break },
            _ = shutdown.cancelled() => break,
        }
    }
    shutdown.cancel();
    let threads: Vec<_> = running.into_iter().map(|(_, t)| t).chain(stopping).collect();
    let _ = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    })
    .await;
}

/// Starts link `index` on its own thread.
fn start(
    daemon: &Arc<Daemon>,
    index: u32,
    shutdown: &CancellationToken,
) -> std::io::Result<(Arc<Link>, JoinHandle<()>)> {
    let link = Arc::new(Link::new(index, shutdown.child_token()));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    daemon.add_link(link.clone());
    let thread = {
        let (daemon, link) = (daemon.clone(), link.clone());
        std::thread::Builder::new().name(format!("ggrokd-link-{index}")).spawn(move || {
            let span = info_span!("link", connection = index);
            runtime.block_on(crate::supervisor::supervise(daemon, link).instrument(span));
            // Tasks still running (a local connection's reaper, a splice cut by the grace
            // period) end with the runtime; a DNS lookup in flight is not waited for long.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        })
    };
    match thread {
        Ok(thread) => Ok((link, thread)),
        Err(e) => {
            daemon.remove_link(index);
            Err(e)
        }
    }
}
