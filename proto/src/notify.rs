//! The systemd notification protocol (`sd_notify`) for both daemons' `Type=notify` units:
//! `READY=1` once the daemon is ready, a `STATUS=` line kept current, `WATCHDOG=1` when the unit
//! sets `WatchdogSec=`, `RELOADING=1` … `READY=1` around a reload, and `STOPPING=1` on shutdown.
//! Each daemon supplies only its status line.
//!
//! Outside systemd (`$NOTIFY_SOCKET` unset) every call does nothing.

use sd_notify::NotifyState;
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
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// The daemon is ready: sends `READY=1` with `status()`, then spawns the task that resends the
/// status whenever its text changes and feeds the watchdog, until `shutdown` is cancelled.
pub fn ready<F>(status: F, shutdown: CancellationToken)
where
    F: Fn() -> String + Send + 'static,
{
    if !enabled() {
        return;
    }
    let sent = status();
    send(&[NotifyState::Ready, NotifyState::Status(&sent)]);
    tokio::spawn(report(status, sent, shutdown));
}

async fn report<F: Fn() -> String>(status: F, mut sent: String, shutdown: CancellationToken) {
    let mut poll = tokio::time::interval(STATUS_POLL);
    // The watchdog is fed at half its period, as sd_watchdog_enabled(3) advises.
    let mut watchdog = sd_notify::watchdog_enabled().map(|period| tokio::time::interval(period / 2));
    loop {
        tokio::select! {
            _ = poll.tick() => {
                let now = status();
                if now != sent {
                    send(&[NotifyState::Status(&now)]);
                    sent = now;
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
    if enabled() {
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
