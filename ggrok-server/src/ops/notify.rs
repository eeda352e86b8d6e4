//! The systemd notification protocol (`sd_notify`), for `Type=notify` units: `READY=1` once the
//! config is valid and the listener is bound, a `STATUS=` line kept current (address, tunnel
//! clients, hosts online), `WATCHDOG=1` when the unit sets `WatchdogSec=`, and `STOPPING=1` on
//! shutdown.
//!
//! Outside systemd (`$NOTIFY_SOCKET` unset) every call does nothing.

use crate::State;
use sd_notify::NotifyState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the status line is recomputed; it is sent only when its text changes.
const STATUS_POLL: Duration = Duration::from_secs(1);

/// Sends `states` to the service manager. A failure is logged once: the server works without it,
/// but systemd will then consider a `Type=notify` unit not started, or its watchdog expired.
fn send(states: &[NotifyState]) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Err(e) = sd_notify::notify(states)
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!("cannot notify the service manager through $NOTIFY_SOCKET: {e}");
    }
}

/// The server is ready (its listener is bound): sends `READY=1` with the status, then spawns the
/// task that keeps the status current and feeds the watchdog until shutdown.
pub fn ready(state: Arc<State>, addr: SocketAddr) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let status = status_line(&state, addr);
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    tokio::spawn(report(state, addr, status));
}

async fn report(state: Arc<State>, addr: SocketAddr, mut sent: String) {
    let mut poll = tokio::time::interval(STATUS_POLL);
    // The watchdog is fed at half its period, as sd_watchdog_enabled(3) advises.
    let mut watchdog = sd_notify::watchdog_enabled().map(|period| tokio::time::interval(period / 2));
    loop {
        tokio::select! {
            _ = poll.tick() => {
                let status = status_line(&state, addr);
                if status != sent {
                    send(&[NotifyState::Status(&status)]);
                    sent = status;
                }
            }
            _ = tick_or_never(&mut watchdog) => send(&[NotifyState::Watchdog]),
            _ = state.shutdown.cancelled() => return,
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

/// The line `systemctl status ggrok-server` shows, such as
/// `listening on 0.0.0.0:80, 2 tunnel clients over 5 connections, 5 hosts online`: clients are
/// ggrokd daemons, connections their tunnel sessions.
fn status_line(state: &State, addr: SocketAddr) -> String {
    format!(
        "listening on {addr}, {} tunnel clients over {} connections, {} hosts online",
        state.daemons.count(),
        state.sessions.len(),
        state.registry.online()
    )
}
