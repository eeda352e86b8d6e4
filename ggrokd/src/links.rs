//! The daemon's links, each on an OS thread of its own (`ggrokd-link-N`) with a current-thread
//! runtime: its HTTP/2 connection, its control stream and its requests to local services never
//! cross threads, and a link that drops reconnects on its own while the others serve.
//!
//! How many: per server of the config, `connections = N` starts N at once; `"auto"` starts one,
//! and the others once a server hello says how many workers the server runs; behind one address,
//! as many more as the replicas seen there need ([`Daemon::wanted_links`]). Links are numbered
//! over all servers. When fewer are wanted (a reload, a server with fewer workers, a server
//! removed from the config), links that are down or share a replica drain and stop first.
//! Shutdown cancels every link's token, and [`run`] returns once every thread has finished.

use crate::config::ServerUrl;
use crate::daemon::{Daemon, Plan};
use crate::link::Link;
use ggrok_proto::ctl::LinkState;
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span};

/// Starts and stops links to match [`Daemon::wanted_links`] until `shutdown`, then waits for
/// every link thread to finish (each drains its requests in flight for up to the grace period).
pub async fn run(daemon: Arc<Daemon>, shutdown: CancellationToken) {
    let mut wanted = daemon.wanted_links();
    let mut running: Vec<(Arc<Link>, JoinHandle<()>)> = Vec::new();
    let mut stopping: Vec<(u32, JoinHandle<()>)> = Vec::new();
    // Every `resolve_interval`: resolve the names again, and look again for replicas seen but
    // held by no link.
    let mut next_look = tokio::time::Instant::now() + daemon.timing().resolve_interval;
    loop {
        let plan: Plan = wanted.borrow_and_update().clone();
        // Links to servers no longer listed stop.
        let (gone, kept): (Vec<_>, Vec<_>) =
            running.drain(..).partition(|(l, _)| !plan.iter().any(|(s, _)| *s == l.server));
        running = kept;
        for (link, thread) in gone {
            info!(server = %link.server.authority, "the server left the config; closing its connection");
            stopping.push(stop(&daemon, &link, thread));
        }
        for (server, want) in &plan {
            let want = *want as usize;
            let mut have = running.iter().filter(|(l, _)| l.server == *server).count();
            if have > want {
                info!(server = %server.authority, from = have, to = want, "holding fewer connections to the server");
            }
            while have > want {
                let at = surplus(&running, server);
                let (link, thread) = running.remove(at);
                stopping.push(stop(&daemon, &link, thread));
                have -= 1;
            }
            while have < want {
                let index = (0..)
                    .find(|i| {
                        !running.iter().any(|(l, _)| l.index == *i) && !stopping.iter().any(|(s, _)| s == i)
                    })
                    .expect("a free index");
                match start(&daemon, index, server.clone(), &shutdown) {
                    Ok(started) => running.push(started),
                    Err(e) => {
                        error!("cannot start a thread for connection {index}: {e}");
                        break;
                    }
                }
                have += 1;
            }
        }
        stopping.retain(|(_, t)| !t.is_finished());
        tokio::select! {
            changed = wanted.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep_until(next_look) => {
                daemon.resolve_again().await;
                daemon.explore_again();
                next_look = tokio::time::Instant::now() + daemon.timing().resolve_interval;
            }
            _ = shutdown.cancelled() => break,
        }
    }
    shutdown.cancel();
    let threads: Vec<_> =
        running.into_iter().map(|(_, t)| t).chain(stopping.into_iter().map(|(_, t)| t)).collect();
    let _ = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    })
    .await;
}

/// Which of `running`'s links to `server` to stop when fewer are wanted: one that is not
/// connected, else one on the replica most links hold, else the highest-numbered.
fn surplus(running: &[(Arc<Link>, JoinHandle<()>)], server: &ServerUrl) -> usize {
    let replicas: Vec<Option<String>> = running.iter().map(|(l, _)| l.replica()).collect();
    let score = |at: usize| {
        let link = &running[at].0;
        let down = link.state() != LinkState::Connected;
        let sharing = replicas.iter().filter(|r| r.is_some() && **r == replicas[at]).count();
        (down, sharing, link.index)
    };
    (0..running.len())
        .filter(|at| running[*at].0.server == *server)
        .max_by_key(|at| score(*at))
        .expect("a link to stop")
}

/// Stops `link`: it drains on its thread, which is returned with its index.
fn stop(daemon: &Daemon, link: &Link, thread: JoinHandle<()>) -> (u32, JoinHandle<()>) {
    link.stop.cancel();
    daemon.remove_link(link.index);
    (link.index, thread)
}

/// Starts link `index` to `server` on its own thread.
fn start(
    daemon: &Arc<Daemon>,
    index: u32,
    server: ServerUrl,
    shutdown: &CancellationToken,
) -> std::io::Result<(Arc<Link>, JoinHandle<()>)> {
    let link = Arc::new(Link::new(index, server, shutdown.child_token()).with_budget(daemon.budget.clone()));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    daemon.add_link(link.clone());
    let thread = {
        let (daemon, link) = (daemon.clone(), link.clone());
        std::thread::Builder::new().name(format!("ggrokd-link-{index}")).spawn(move || {
            let span = info_span!("link", connection = index, server = %link.server.authority);
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
