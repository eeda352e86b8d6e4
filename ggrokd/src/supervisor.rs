//! Keeps one link's connection to the server up, forever: dial, serve, and after a loss wait with
//! backoff and try again, while the daemon's other links go on serving. Each loss and each
//! recovery is logged once; repeated failures with the same error only at debug level, while
//! `ggrokctl status` shows the attempt count, the last error and when the next try is due.
//!
//! A connection closed on purpose to land on another server worker ([`Ending::Redial`]) is dialled
//! again at once, after a short jitter, without counting as a failure.

use crate::backoff::{Retry, Wake, wait};
use crate::coverage;
use crate::daemon::Daemon;
use crate::link::Link;
use crate::session::{self, Ending};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tracing::{debug, info, warn};

/// A connection that lasted this long was healthy: the next failure starts backoff afresh.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Since when the server has been unreachable, and the last error logged.
struct Outage {
    since: Instant,
    error: String,
}

/// Runs `link` until its stop token (a child of the daemon's shutdown) is cancelled.
pub async fn supervise(daemon: Arc<Daemon>, link: Arc<Link>) {
    let stop = link.stop.clone();
    let timing = daemon.timing();
    let mut retry = Retry::new(timing.reconnect_initial, timing.reconnect_max, HEALTHY_AFTER)
        .expect("the config validated the reconnect delays");
    let mut outage: Option<Outage> = None;
    loop {
        link.connecting(retry.attempt());
        let Some(endpoint) = daemon.endpoint(&link.server) else {
            // The server left the config: the link is being stopped.
            return stop.cancelled().await;
        };
        let server = endpoint.server.authority.clone();
        let dialled = tokio::select! {
            r = async {
                let target = daemon.target(&link).await?;
                crate::dial::connect(&daemon, &endpoint, target).await
            } => r,
            _ = link.reconnect_requested() => continue,
            _ = stop.cancelled() => return,
        };
        let (error, connected_for) = match dialled {
            Err(e) => (format!("{e:#}"), None),
            Ok(dialled) => {
                let (transport, protocol) = (dialled.transport(), dialled.protocol);
                if link.redials() > 0 {
                    debug!(server, transport, "connected again, to land on another worker");
                } else {
                    match outage.take() {
                        Some(o) => info!(
                            server,
                            transport,
                            attempts = retry.attempt(),
                            "reconnected to the server after {:.1}s",
                            o.since.elapsed().as_secs_f64()
                        ),
                        None => info!(server, transport, protocol, "connected to the server"),
                    }
                }
                link.connected(transport, protocol);
                link.reached(dialled.address);
                let up = Instant::now();
                let served = tokio::select! {
                    r = session::serve(&daemon, &link, dialled, &stop) => r,
                    _ = link.reconnect_requested() => {
                        daemon.tunnels.link_down(link.index);
                        info!("reconnecting with the new server settings");
                        continue;
                    }
                };
                daemon.tunnels.link_down(link.index);
                if stop.is_cancelled() {
                    return;
                }
                match served.as_ref().map_err(|e| e.downcast_ref::<Ending>()) {
                    Err(Some(Ending::Redial)) => {
                        let redials = link.count_redial();
                        debug!(
                            redials,
                            "dialling again to land on a worker or replica no other connection holds"
                        );
                        tokio::select! {
                            _ = tokio::time::sleep(coverage::jitter()) => continue,
                            _ = stop.cancelled() => return,
                        }
                    }
                    Err(Some(Ending::Surplus)) => {
                        // Not needed against this server: the link set shrinks to one, which
                        // stops this link. Should the server change meanwhile, it tries again.
                        debug!("not needed: {}", Ending::Surplus);
                        let pause = timing.reconnect_max;
                        link.down(Ending::Surplus.to_string(), 0, SystemTime::now() + pause);
                        if wait(pause, &stop, link.reconnect_requested()).await == Wake::Shutdown {
                            return;
                        }
                        continue;
                    }
                    _ => {}
                }
                let error = match served {
                    Ok(()) => "the server closed the connection".to_owned(),
                    Err(e) => format!("{e:#}"),
                };
                (error, Some(up.elapsed()))
            }
        };
        link.reset_redials();
        let delay = retry.next_delay(connected_for);
        link.down(error.clone(), retry.attempt(), SystemTime::now() + delay);
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
        if wait(delay, &stop, link.reconnect_requested()).await == Wake::Shutdown {
            return;
        }
    }
}
