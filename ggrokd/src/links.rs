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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Connections, DaemonConfig};
    use std::path::Path;
    use std::time::Duration;

    /// Names of this process's threads.
    fn thread_names() -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|n| n.trim().to_owned())
            .collect()
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let wait = async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait).await.unwrap_or_else(|_| panic!("{what}"));
    }

    #[tokio::test]
    async fn links_run_on_named_threads_follow_the_wanted_count_and_stop_on_shutdown() {
        // Nothing listens there: the links retry with backoff, which is all this test needs.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let text = format!("server = \"ws://127.0.0.1:{port}\"\nconnections = 3\nreconnect_initial = 5\n");
        let daemon =
            Arc::new(Daemon::new(&DaemonConfig::parse(Path::new("g.toml"), &text).unwrap(), "d".into()));
        let shutdown = CancellationToken::new();
        let manager = tokio::spawn(run(daemon.clone(), shutdown.clone()));
        until("three links", || daemon.links().len() == 3).await;
        until("three named threads", || {
            let names = thread_names();
            (0..3).all(|i| names.contains(&format!("ggrokd-link-{i}")))
        })
        .await;
        daemon.set_connections(Connections::Fixed(1));
        until("one link", || daemon.links().len() == 1).await;
        until("threads 1 and 2 gone", || !thread_names().iter().any(|n| n == "ggrokd-link-2")).await;
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), manager)
            .await
            .expect("shutdown waits for no retry")
            .unwrap();
        assert!(!thread_names().iter().any(|n| n.starts_with("ggrokd-link-")));
    }
}
