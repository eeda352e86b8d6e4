//! HTTP/2 on the public listener: over TLS when the client chose `h2` by ALPN, and in cleartext
//! with prior knowledge (h2c: the client starts with the HTTP/2 preface, which the first-head
//! prelude reads like any request head). Each public stream is routed by its `:authority` like
//! an HTTP/1.1 request by its `Host`, and goes through the tunnel as one stream of its own.
//!
//! The limits keep their meaning per connection:
//! - `header_read_timeout` and the pending-connection limits cover the TLS handshake and the
//!   preface, as they cover the first request head of HTTP/1.1;
//! - `max_header_bytes` is the largest header list a stream may send (`SETTINGS_MAX_HEADER_LIST_SIZE`);
//! - at most [`MAX_STREAMS`] streams are open at once on one connection; `max_streams_per_session`
//!   still bounds what reaches one tunnel;
//! - `stalled_read_timeout` watches the connection's writes, as for HTTP/1.1: a client that stops
//!   reading the connection is cut. One stream left unread while the others move is held by its
//!   flow-control window (at most [`SEND_BUFFER`] queued in the server per stream), not cut;
//! - a connection whose client stops answering PINGs for [`KEEPALIVE`] twice over is closed.

use super::stall::{self, Progress};
use crate::State;
use crate::ops::metrics::Limit;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::task::TaskTracker;
use tracing::debug;

/// What a client sends first on an HTTP/2 connection, up to the end of its "head" (RFC 9113 §3.4).
const PREFACE_HEAD: &[u8] = b"PRI * HTTP/2.0\r\n\r\n";
/// Streams one public HTTP/2 connection may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`).
pub const MAX_STREAMS: u32 = 128;
/// Bytes of an answer hyper may queue for one stream beyond its flow-control window.
pub const SEND_BUFFER: usize = 64 * 1024;
/// Interval of the server's PINGs, and how long it waits for each answer.
pub const KEEPALIVE: Duration = Duration::from_secs(20);

/// Whether a connection's first head is the HTTP/2 connection preface.
pub fn is_preface(head: &[u8]) -> bool {
    head.starts_with(PREFACE_HEAD)
}

/// Runs streams of a connection as tasks the shutdown waits for.
#[derive(Clone)]
struct Tracked(TaskTracker);

impl<F> hyper::rt::Executor<F> for Tracked
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.0.spawn(fut);
    }
}

/// Serves an HTTP/2 connection (`io` replays the preface) until it ends, its client stalls, or
/// shutdown has let its streams finish.
pub async fn serve<IO, S>(state: Arc<State>, io: IO, progress: Arc<Progress>, peer: SocketAddr, service: S)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = ggrok_proto::http::Body> + Send + 'static,
    S::Future: Send + 'static,
{
    let limits = &state.config().limits;
    let max_header = u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX);
    let conn = http2::Builder::new(Tracked(state.public.clone()))
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(max_header)
        .max_send_buf_size(SEND_BUFFER)
        .keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE)
        // RFC 8441: WebSocket (and other upgrades) as extended CONNECT.
        .enable_connect_protocol()
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let stalled_after = limits.stalled_read_timeout;
    let stalled = stall::stalled(&progress, stalled_after);
    tokio::pin!(stalled);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = &mut stalled => return stalled_out(&state, peer, stalled_after),
        _ = state.shutdown.cancelled() => {
            // GOAWAY says which streams were taken: the client sends the others elsewhere, so
            // there is no keep-alive race to wait out as for HTTP/1.1.
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                r = conn => r,
                _ = stalled => return,
            }
        }
    };
    if let Err(e) = result {
        debug!(%peer, "HTTP/2 connection ended: {e}");
    }
}

fn stalled_out(state: &State, peer: SocketAddr, after: Duration) {
    let secs = after.as_secs_f64();
    super::limit_hit(
        state,
        peer,
        Limit::StalledReadTimeout,
        &format!("the client read nothing for {secs}s: HTTP/2 connection closed (stalled_read_timeout)"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preface_is_told_from_http1_heads() {
        assert!(is_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert!(is_preface(b"PRI * HTTP/2.0\r\n\r\n"));
        assert!(!is_preface(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!is_preface(b"PRI / HTTP/1.1\r\n\r\n"));
    }
}
