//! The server's systemd notifications: `READY=1` once the config is valid and the listener is
//! bound, then a `STATUS=` line kept current (address, tunnel clients, hosts online). The protocol
//! itself (watchdog, `STOPPING=1`) is [`ggrok_proto::notify`], shared with ggrokd.

use crate::State;
use std::net::SocketAddr;
use std::sync::Arc;

/// The server is ready (its listener is bound): `READY=1` with the status, kept current until
/// shutdown.
pub fn ready(state: Arc<State>, addr: SocketAddr) {
    let shutdown = state.shutdown.clone();
    ggrok_proto::notify::ready(move || status_line(&state, addr), shutdown);
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
