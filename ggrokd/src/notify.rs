//! The systemd notification protocol (`sd_notify`), for `Type=notify` units: `READY=1` once the
//! config is valid and the control socket is bound (never waiting for the server, so a server that
//! is down cannot hold up `systemctl start`), a `STATUS=` line kept current from
//! [`Daemon::status`], `WATCHDOG=1` when the unit sets `WatchdogSec=`, `RELOADING=1` … `READY=1`
//! around a reload, and `STOPPING=1` on shutdown.
//!
//! Outside systemd (`$NOTIFY_SOCKET` unset) every call does nothing.

use crate::daemon::Daemon;
use ggrok_proto::ctl::{LinkState, StatusInfo};
use sd_notify::NotifyState;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the status line is recomputed; it is sent only when its text changes.
const STATUS_POLL: Duration = Duration::from_secs(1);

/// Sends `states` to the service manager. A failure is logged once: the daemon works without it,
/// but systemd will then consider a `Type=notify` unit not started, or its watchdog expired.
fn send(states: &[NotifyState]) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Err(e) = sd_notify::notify(states)
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!("cannot notify the service manager through $NOTIFY_SOCKET: {e}");
    }
}

/// Whether a service manager listens (`$NOTIFY_SOCKET` is set).
fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// The daemon is ready: sends `READY=1` with the current status, then spawns the task that keeps
/// the status current and feeds the watchdog until `shutdown`.
pub fn ready(daemon: Arc<Daemon>, shutdown: CancellationToken) {
    if !enabled() {
        return;
    }
    let status = status_line(&daemon.status());
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    tokio::spawn(report(daemon, status, shutdown));
}

async fn report(daemon: Arc<Daemon>, mut sent: String, shutdown: CancellationToken) {
    let mut poll = tokio::time::interval(STATUS_POLL);
    // The watchdog is fed at half its period, as sd_watchdog_enabled(3) advises.
    let mut watchdog = sd_notify::watchdog_enabled().map(|period| tokio::time::interval(period / 2));
    loop {
        tokio::select! {
            _ = poll.tick() => {
                let status = status_line(&daemon.status());
                if status != sent {
                    send(&[NotifyState::Status(&status)]);
                    sent = status;
                }
            }
            _ = tick_or_never(&mut watchdog) => send(&[NotifyState::Watchdog]),
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Shutdown has begun: `STOPPING=1`. Called by the signal handler before it cancels, so the
/// message is out before the process can exit.
pub fn stopping() {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        send(&[NotifyState::Stopping, NotifyState::Status("stopping: finishing requests in flight")]);
    }
}

/// Ticks `interval`; without one (no watchdog), never resolves.
async fn tick_or_never(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Marks a reload: `RELOADING=1` now, `READY=1` when dropped, whether the reload succeeded or not
/// (a refused reload leaves the daemon running on its previous config).
pub struct Reloading(());

impl Reloading {
    /// Tells the service manager that a reload has started.
    pub fn start() -> Self {
        if enabled() {
            // systemd 253 and later want the time of the reload along with RELOADING=1.
            match NotifyState::monotonic_usec_now() {
                Ok(now) => send(&[NotifyState::Reloading, now]),
                Err(_) => send(&[NotifyState::Reloading]),
            }
        }
        Self(())
    }
}

impl Drop for Reloading {
    fn drop(&mut self) {
        if enabled() {
            send(&[NotifyState::Ready]);
        }
    }
}

/// The one-line status `systemctl --user status ggrokd` shows, such as
/// `connected to tunnel.example.com:443, 3/3 tunnels online; connections 4/4 up`.
pub fn status_line(s: &StatusInfo) -> String {
    let server = server_name(&s.server);
    let mut tunnels = format!("{}/{} tunnels online", s.tunnels_online, s.tunnels_total);
    if !s.connections.is_empty() {
        tunnels.push_str(&format!("; {}", connections_up(s)));
    }
    match (s.connection, &s.last_error) {
        (LinkState::Connected, _) => format!("connected to {server}, {tunnels}"),
        // Between attempts the link flips between connecting and disconnected; one line covers both.
        (_, Some(error)) if s.attempt > 0 => format!(
            "reconnecting to {server} ({} failed attempts, last: {}), {tunnels}",
            s.attempt, error.message
        ),
        (state, _) => format!("{} to {server}, {tunnels}", state.as_str()),
    }
}

/// `connections 3/4 up`: connected links of all links.
pub fn connections_up(s: &StatusInfo) -> String {
    let up = s.connections.iter().filter(|c| c.state == LinkState::Connected).count();
    format!("connections {up}/{} up", s.connections.len())
}

/// `wss://tunnel.example.com/$$ggrok` → `tunnel.example.com`: the part a person recognises.
fn server_name(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ggrok_proto::ctl::{ConnectionInfo, TimedError};

    fn status(connection: LinkState, attempt: u32, error: Option<&str>) -> StatusInfo {
        StatusInfo {
            daemon_version: "0".into(),
            pid: 1,
            uptime_secs: 0,
            config: "ggrokd.toml".into(),
            server: "wss://tunnel.example.com/$$ggrok".into(),
            connection,
            since: 0,
            attempt,
            last_error: error.map(|m| TimedError { at: 0, message: m.into() }),
            next_retry: None,
            connections: Vec::new(),
            tunnels_online: if connection == LinkState::Connected { 3 } else { 0 },
            tunnels_total: 3,
            tunnels: Vec::new(),
            buffers: None,
        }
    }

    #[test]
    fn status_lines_say_where_and_how_many() {
        assert_eq!(
            status_line(&status(LinkState::Connected, 0, Some("old"))),
            "connected to tunnel.example.com, 3/3 tunnels online"
        );
        assert_eq!(
            status_line(&status(LinkState::Connecting, 0, None)),
            "connecting to tunnel.example.com, 0/3 tunnels online"
        );
        let reconnecting =
            "reconnecting to tunnel.example.com (2 failed attempts, last: refused), 0/3 tunnels online";
        assert_eq!(status_line(&status(LinkState::Disconnected, 2, Some("refused"))), reconnecting);
        assert_eq!(status_line(&status(LinkState::Connecting, 2, Some("refused"))), reconnecting);
    }

    #[test]
    fn the_status_line_counts_the_connections_up() {
        let link = |index, state| ConnectionInfo {
            index,
            server: "ws://t".into(),
            replica: None,
            worker: None,
            transport: None,
            protocol: None,
            session: None,
            state,
            since: 0,
            requests: 0,
            attempt: 0,
            last_error: None,
            next_retry: None,
        };
        let mut s = status(LinkState::Connected, 0, None);
        s.connections = (0..4).map(|i| link(i, LinkState::Connected)).collect();
        assert_eq!(
            status_line(&s),
            "connected to tunnel.example.com, 3/3 tunnels online; connections 4/4 up"
        );
        s.connections[2].state = LinkState::Disconnected;
        assert!(status_line(&s).ends_with("; connections 3/4 up"), "{}", status_line(&s));
    }

    #[test]
    fn server_names_drop_scheme_and_path() {
        assert_eq!(server_name("ws://127.0.0.1:9/$$ggrok"), "127.0.0.1:9");
        assert_eq!(server_name("tunnel.example.com"), "tunnel.example.com");
    }
}
