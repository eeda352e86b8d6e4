//! Keeps one connection to the server up, forever: connect, serve, and after a loss wait with
//! backoff and try again. Each loss and each recovery is logged once; repeated failures with the
//! same error only at debug level, while `ggrokctl status` shows the attempt count, the last error
//! and when the next try is due.

use crate::backoff::{Retry, Wake, wait};
use crate::daemon::Daemon;
use crate::session;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// A connection that lasted this long was healthy: the next failure starts backoff afresh.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Since when the server has been unreachable, and the last error logged.
struct Outage {
    since: Instant,
    error: String,
}

/// Runs until `shutdown`.
pub async fn supervise(daemon: Arc<Daemon>, shutdown: CancellationToken) {
    let timing = daemon.timing();
    let mut retry = Retry::new(timing.reconnect_initial, timing.reconnect_max, HEALTHY_AFTER)
        .expect("the config validated the reconnect delays");
    let mut outage: Option<Outage> = None;
    loop {
        daemon.link_connecting(retry.attempt());
        let server = daemon.endpoint().server.authority;
        let dialled = tokio::select! {
            r = session::connect(&daemon) => r,
            _ = daemon.reconnect_requested() => continue,
            _ = shutdown.cancelled() => return,
        };
        let (error, connected_for) = match dialled {
            Err(e) => (format!("{e:#}"), None),
            Ok(ws) => {
                match outage.take() {
                    Some(o) => info!(
                        server,
                        attempts = retry.attempt(),
                        "reconnected to the server after {:.1}s",
                        o.since.elapsed().as_secs_f64()
                    ),
                    None => info!(server, "connected to the server"),
                }
                daemon.link_connected();
                let up = Instant::now();
                let served = tokio::select! {
                    r = session::serve(&daemon, ws, &shutdown) => r,
                    _ = daemon.reconnect_requested() => {
                        daemon.tunnels.reset_states();
                        info!("reconnecting with the new server settings");
                        continue;
                    }
                };
                daemon.tunnels.reset_states();
                if shutdown.is_cancelled() {
                    return;
                }
                let error = match served {
                    Ok(()) => "the server closed the connection".to_owned(),
                    Err(e) => format!("{e:#}"),
                };
                (error, Some(up.elapsed()))
            }
        };
        let delay = retry.next_delay(connected_for);
        daemon.link_down(error.clone(), retry.attempt(), SystemTime::now() + delay);
        match &outage {
            None if connected_for.is_some() => {
                warn!(server, "lost the connection to the server: {error}; reconnecting")
            }
            None => warn!(server, "cannot connect to the server: {error}; retrying with backoff"),
            Some(o) if o.error != error => warn!(server, "still cannot connect to the server: {error}"),
            Some(_) => debug!(server, attempt = retry.attempt(), "reconnect failed again: {error}"),
        }
        let since = outage.map_or_else(Instant::now, |o| o.since);
        outage = Some(Outage { since, error });
        debug!(attempt = retry.attempt(), "next attempt in {:.1}s", delay.as_secs_f64());
        if wait(delay, &shutdown, daemon.reconnect_requested()).await == Wake::Shutdown {
            return;
        }
    }
}
