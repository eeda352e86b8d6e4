//! Public TCP connections of TCP tunnels: each port a tunnel claimed has an accept loop here
//! (started by the claim, stopped when the port is closed: [`crate::tunnel::ports`]). Each
//! connection becomes one extended CONNECT stream ([`ggrok_proto::TCP_PROTOCOL`]) on one of the
//! holding daemon's sessions, and the bytes are spliced both ways: the stream's flow control
//! holds up a side that sends faster than the other reads, and a half-close (FIN one way, or
//! END_STREAM) passes through while the other direction goes on.

use super::tcp_idle::{Activity, Traffic};
use crate::State;
use crate::ops::metrics::Limit;
use ggrok_proto::headers::error_chain;
use ggrok_proto::{HEADER_PEER, HEADER_PUBLIC_ADDR, TCP_AUTHORITY, TCP_PROTOCOL};
use h2::ext::Protocol;
use http::{HeaderValue, Method, Request, Version};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Accepts connections on `listener` (a tunnel's `port`) until `stop` or shutdown.
pub async fn serve(state: Arc<State>, listener: std::net::TcpListener, port: u16, stop: CancellationToken) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return warn!(port, "TCP tunnel port: {e}"),
    };
    info!(port, "TCP tunnel port listening");
    // `[limits] max_tcp_connections_per_tunnel`: the port is the tunnel's.
    let slots = Arc::new(Semaphore::new(state.config().limits.max_tcp_connections_per_tunnel));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        state.public.spawn(forward(state.clone(), socket, peer, port, slot));
                    }
                    Err(_) => {
                        let max = state.config().limits.max_tcp_connections_per_tunnel;
                        super::limit_hit(&state, peer, Limit::MaxTcpConnectionsPerTunnel, &format!(
                            "TCP port {port} has {max} connections open: connection closed (max_tcp_connections_per_tunnel)"
                        ));
                        drop(socket);
                    }
                },
                Err(e) => {
                    // Out of file descriptors and the like: the next accept may work.
                    warn!(port, "accepting a TCP connection: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                        _ = stop.cancelled() => break,
                    }
                }
            },
            _ = stop.cancelled() => break,
            _ = state.shutdown.cancelled() => break,
        }
    }
    state.metrics.tcp.forget(port);
    info!(port, "TCP tunnel port closed");
}

/// Carries one public connection through the daemon holding `port`; closes it at once when no
/// daemon does (offline) or the daemon cannot reach its local service.
async fn forward(
    state: Arc<State>,
    mut socket: TcpStream,
    peer: SocketAddr,
    port: u16,
    _slot: OwnedSemaphorePermit,
) {
    let Some(peer) = super::proxied::client_of(&state, &mut socket, peer).await else { return };
    let meter = state.metrics.tcp.connection(port);
    let activity = Activity::default();
    let Some((daemon, guard)) = state.ports.holder(port) else {
        return debug!(port, %peer, "TCP connection closed: the tunnel is offline");
    };
    if guard.is_some_and(|g| !g.allows_ip(peer.ip())) {
        state.metrics.access.denied(crate::ops::metrics::Denial::Ip);
        return debug!(port, %peer, "TCP connection closed: the address is not allowed (allow_ips/deny_ips)");
    }
    let Some((session, _)) = daemon.pick(crate::workers::current()) else {
        return debug!(port, %peer, "TCP connection closed: the daemon has no session");
    };
    let Ok(permit) = session.stream_permit() else {
        return warn!(port, %peer, "TCP connection closed: the tunnel has max_streams_per_session streams");
    };
    let _ = socket.set_nodelay(true);
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{TCP_AUTHORITY}:{port}/"))
        .version(Version::HTTP_2)
        .body(())
        .expect("a valid CONNECT request");
    if let Ok(value) = HeaderValue::from_str(&peer.to_string()) {
        req.headers_mut().insert(HEADER_PEER, value);
    }
    if let Some(value) = socket.local_addr().ok().and_then(|a| HeaderValue::from_str(&a.to_string()).ok()) {
        req.headers_mut().insert(HEADER_PUBLIC_ADDR, value);
    }
    req.extensions_mut().insert(Protocol::from_static(TCP_PROTOCOL));
    let stream = match session.upgrade(req).await {
        Ok(Ok((_, stream))) => stream,
        Ok(Err(resp)) => {
            return debug!(port, %peer, status = %resp.status(), "TCP connection refused by the daemon");
        }
        Err(e) => return debug!(port, %peer, "TCP connection: the tunnel failed: {}", error_chain(&e)),
    };
    let _held = permit;
    let idle_after = state.config().limits.tcp_idle_timeout;
    let spliced = ggrok_proto::splice::splice_socket(stream, socket, Traffic(meter, activity.clone()));
    tokio::select! {
        result = spliced => if let Err(e) = result {
            debug!(port, %peer, "TCP connection ended: {e}");
        },
        () = activity.idle(idle_after) => {
            let secs = idle_after.as_secs_f64();
            super::limit_hit(&state, peer, Limit::TcpIdleTimeout, &format!(
                "TCP connection on port {port} carried nothing for {secs}s: closed (tcp_idle_timeout)"
            ));
        }
    }
}
