//! The public side: accepting connections on the public listeners, the limits on connections
//! that have not sent a request yet ([`pending`], [`prelude`]), and routing each request by its
//! `Host` through a tunnel ([`proxy`]). Requests on the tunnel path go to [`crate::tunnel`].
//! Connections that start with the HTTP/2 preface (ALPN `h2`, or h2c with prior knowledge) are
//! served by [`h2`]; the others by hyper's HTTP/1.1 server.

pub mod h2;
mod head;
pub mod misdirected;
mod paced;
pub mod pending;
pub mod prelude;
pub mod proxied;
pub mod proxy;
mod resend;
pub mod stall;
pub mod tcp;
pub mod tcp_idle;

use crate::State;
use crate::ops::metrics::{self, Limit, Rejection};
use futures_util::FutureExt;
use ggrok_proto::budget::{LARGE_READ_BUFFER, ReadBuffer};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use pending::{Over, Slot};
use prelude::NoHead;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// How long ggrok's own error answer may take to write before the connection is dropped.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// Once shutdown has begun, how long a keep-alive connection may still bring requests (each
/// answered with `Connection: close`) before the server closes it (at most `shutdown_grace`).
/// A client sends its next request on a connection the moment the last answer is in: closing
/// the connections idle at that instant would drop those requests on their way, unanswered (the
/// keep-alive race), and a client that does not retry would see them fail.
const LAME_DUCK: Duration = Duration::from_secs(1);

/// Accepts connections on `listener` (over TLS with `tls`) until shutdown; each is served on the
/// current worker.
pub async fn accept(state: Arc<State>, listener: TcpListener, tls: Option<TlsAcceptor>) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the connections we have.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = state.shutdown.cancelled() => {
                // Connections the kernel has already completed would be reset when the listener
                // closes, after a load balancer took them as established: serve them too.
                while let Some(Ok((stream, peer))) = listener.accept().now_or_never() {
                    serve(&state, stream, peer, &tls);
                }
                return;
            }
        };
        serve(&state, stream, peer, &tls);
    }
}

fn serve(state: &Arc<State>, stream: TcpStream, peer: SocketAddr, tls: &Option<TlsAcceptor>) {
    let _ = stream.set_nodelay(true);
    state.public.clone().spawn(open_connection(state.clone(), stream, peer, tls.clone()));
}

/// A new connection: counted as pending until its first request head has arrived (TLS handshake
/// included), which must happen within `header_read_timeout` (408) and `max_header_bytes` (431).
async fn open_connection(
    state: Arc<State>,
    mut stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
) {
    let Some(peer) = proxied::client_of(&state, &mut stream, peer).await else { return };
    let slot = match state.pending.enter(peer.ip()) {
        Ok(slot) => slot,
        Err(over) => return refuse_pending(&state, stream, peer, over, tls.is_some()).await,
    };
    let deadline = Instant::now() + state.config().limits.header_read_timeout;
    match tls {
        None => serve_io(state, stream, peer, None, deadline, slot).await,
        Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
            // A CA's TLS-ALPN-01 validation ends with the handshake.
            Ok(Ok(stream)) if stream.get_ref().1.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN) => {
                debug!(%peer, "acme-tls/1 handshake done");
            }
            Ok(Ok(stream)) => {
                let sni = stream.get_ref().1.server_name().map(Arc::from);
                serve_io(state, stream, peer, Some(Tls { sni }), deadline, slot).await
            }
            Ok(Err(e)) => debug!(%peer, "TLS handshake failed: {e}"),
            Err(_) => limit_hit(
                &state,
                peer,
                Limit::HeaderReadTimeout,
                "TLS handshake not completed within header_read_timeout",
            ),
        },
    }
}

async fn refuse_pending(state: &State, mut stream: TcpStream, peer: SocketAddr, over: Over, secure: bool) {
    let (status, reason, what, limit) = match over {
        Over::PerIp => (
            429,
            "Too Many Requests",
            "too many connections from your address are waiting",
            Limit::MaxPendingPerIp,
        ),
        Over::Total => (
            503,
            "Service Unavailable",
            "too many connections are waiting; try again shortly",
            Limit::MaxPendingConnections,
        ),
    };
    let key = limit.key();
    limit_hit(state, peer, limit, &format!("connection refused with {status}: {what} ({key})"));
    if !secure {
        // Over TLS a plain answer would be garbage to the client, and the handshake is what we
        // are saving: just close.
        let _ = tokio::time::timeout(
            ANSWER_TIMEOUT,
            stream.write_all(&prelude::canned(status, reason, &format!("ggrok: {what}"))),
        )
        .await;
    }
}

/// Counts a limit hit and logs it (at most once a second for each limit).
fn limit_hit(state: &State, peer: SocketAddr, limit: Limit, what: &str) {
    state.metrics.limit_hit(limit);
    if let Some(held_back) = state.limit_log.allow(limit.key()) {
        warn!(%peer, held_back, "limit: {what}");
    }
}

/// What the TLS handshake of a connection told.
#[derive(Debug, Clone)]
struct Tls {
    /// The name the client asked for (SNI), which chose the certificate presented.
    sni: Option<Arc<str>>,
}

async fn serve_io<S>(
    state: Arc<State>,
    mut io: S,
    peer: SocketAddr,
    tls: Option<Tls>,
    deadline: Instant,
    slot: Slot,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max = state.config().limits.max_header_bytes;
    let head = match tokio::time::timeout_at(deadline, prelude::first_head(&mut io, max)).await {
        Ok(Ok(head)) => head,
        Ok(Err(NoHead::Closed)) => return,
        Ok(Err(NoHead::TooLarge)) => {
            limit_hit(&state, peer, Limit::MaxHeaderBytes, &format!("request head over {max} bytes: 431"));
            let answer = prelude::canned(
                431,
                "Request Header Fields Too Large",
                "ggrok: the request head is too large",
            );
            let _ = tokio::time::timeout(ANSWER_TIMEOUT, io.write_all(&answer)).await;
            return;
        }
        Err(_) => {
            limit_hit(
                &state,
                peer,
                Limit::HeaderReadTimeout,
                "no request head within header_read_timeout: 408",
            );
            let answer =
                prelude::canned(408, "Request Timeout", "ggrok: the request head did not arrive in time");
            let _ = tokio::time::timeout(ANSWER_TIMEOUT, io.write_all(&answer)).await;
            return;
        }
    };
    drop(slot);
    let (io, progress) = stall::WriteWatch::new(io);
    let conn = Conn { peer, secure: tls.is_some() };
    let sni = tls.and_then(|t| t.sni);
    let service = {
        let (state, writes) = (state.clone(), progress.clone());
        service_fn(move |req| handle(state.clone(), conn, sni.clone(), writes.clone(), req))
    };
    if h2::is_preface(&head) {
        let io = prelude::Prefixed::new(head, io);
        return h2::serve(state, io, progress, peer, service).await;
    }
    // hyper's read and write buffer limit: 256 KiB while few connections hold one that large,
    // else 64 KiB (`Budget::read_buffer`, held while the connection lives, idle or not). It
    // also bounds the request heads after the first (the first is checked exactly against
    // `max_header_bytes`, so no smaller). An upload waiting for window holds about two of these
    // (the piece read, the next read): hyper's default, 400 KiB, made a thousand uploads to a
    // local service that stopped reading cost 900 KiB each (`tests/tests/uploads.rs`). How much of
    // an answer hyper may queue for a client is bounded apart from it, by `paced`.
    let read_buffer = (max < LARGE_READ_BUFFER).then(|| state.budget.read_buffer());
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(state.config().limits.header_read_timeout)
        .max_buf_size(max.max(read_buffer.as_ref().map_or(0, ReadBuffer::size)))
        .serve_connection(TokioIo::new(prelude::Prefixed::new(head, io)), service)
        .with_upgrades();
    tokio::pin!(conn);
    let stalled_after = state.config().limits.stalled_read_timeout;
    let stalled = stall::stalled(&progress, stalled_after);
    tokio::pin!(stalled);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = &mut stalled => {
            let secs = stalled_after.as_secs_f64();
            limit_hit(&state, peer, Limit::StalledReadTimeout, &format!("the client read nothing for {secs}s: connection closed (stalled_read_timeout)"));
            return;
        }
        _ = state.shutdown.cancelled() => {
            // Answers from now on say `Connection: close`, so the connection usually ends after
            // its next one; idle ones are closed after the lame-duck time.
            let lame_duck = tokio::time::sleep(LAME_DUCK.min(state.config().shutdown_grace));
            tokio::select! {
                r = conn.as_mut() => r,
                _ = &mut stalled => return,
                _ = lame_duck => {
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        r = conn => r,
                        _ = stalled => return,
                    }
                }
            }
        }
    };
    if let Err(e) = result {
        debug!(%peer, "connection ended: {e}");
    }
}

/// Where a request came from.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    /// The client's address.
    pub peer: SocketAddr,
    /// Whether it came over TLS.
    pub secure: bool,
}

async fn handle(
    state: Arc<State>,
    conn: Conn,
    sni: Option<Arc<str>>,
    writes: Arc<stall::Progress>,
    req: http::Request<Incoming>,
) -> Result<http::Response<ggrok_proto::http::Body>, std::convert::Infallible> {
    let http1 = req.version() < http::Version::HTTP_2;
    let mut resp = route(state.clone(), conn, sni, writes, req).await;
    // Shutting down: this connection ends after this answer, and the client knows it (no request
    // of its own goes on this connection and is lost when it closes). HTTP/2 says it by GOAWAY.
    if http1 && state.shutdown.is_cancelled() && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        resp.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    Ok(resp)
}

async fn route(
    state: Arc<State>,
    conn: Conn,
    sni: Option<Arc<str>>,
    writes: Arc<stall::Progress>,
    req: http::Request<Incoming>,
) -> http::Response<ggrok_proto::http::Body> {
    let started = std::time::Instant::now();
    // ACME's HTTP-01 validations, before routing and before any redirect to HTTPS.
    if let Some(acme) = &state.acme
        && let Some(answer) = acme.answer_http(req.uri().path())
    {
        use http_body_util::BodyExt;
        let body = http_body_util::Full::new(bytes::Bytes::from(answer)).map_err(|never| match never {});
        let mut resp = http::Response::new(body.boxed());
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/octet-stream"));
        return metrics::respond(state.metrics.unrouted().clone(), started, resp);
    }
    let redirect = !conn.secure && state.config().tls.as_ref().is_some_and(|t| t.redirect_http);
    if req.uri().path() == state.config().tunnel_path {
        if redirect {
            state.metrics.rejected(Rejection::TlsRequired);
            return ggrok_proto::http::text(
                http::StatusCode::FORBIDDEN,
                "ggrok: this server takes tunnels over TLS only; use wss:// in ggrokd's server setting",
            );
        }
        return crate::tunnel::accept(&state, conn.peer, req);
    }
    if redirect {
        let resp = proxy::redirect_to_https(&state, &req);
        return metrics::respond(state.metrics.unrouted().clone(), started, resp);
    }
    if let (Some(sni), Some(certificates)) = (&sni, &state.certificates)
        && let Some(resp) = misdirected::check(certificates, sni, &req)
    {
        return metrics::respond(state.metrics.unrouted().clone(), started, resp);
    }
    proxy::forward(state, conn, writes, req, started).await
}
