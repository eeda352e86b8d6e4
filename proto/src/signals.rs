//! Shutdown on SIGTERM or SIGINT, shared by the daemons.

use tokio_util::sync::CancellationToken;

/// Waits for SIGTERM or SIGINT, logs it, calls `on_stop` (e.g. `STOPPING=1` to systemd), then
/// cancels `shutdown`. Returns without cancelling if the signals cannot be listened for.
pub async fn cancel_on_stop_signal(shutdown: CancellationToken, on_stop: fn()) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("shutting down");
    on_stop();
    shutdown.cancel();
}
