//! ggrok-server: the public side of ggrok.
//!
//! One listener serves public HTTP and, on the tunnel path, ggrokd's WebSocket connections; with
//! `[tls]`, a second one does the same over HTTPS. With `[admin]`, a third serves `/metrics` and
//! `/healthz`. [`run`] takes a bound listener and a shutdown token, so tests bind port 0.

#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod cli;
pub mod config;
pub mod metrics;
pub mod notify;
pub mod pending;
pub mod prelude;
pub mod proxy;
pub mod registry;
pub mod tls;
pub mod tunnel;

use anyhow::Context;
use config::ServerConfig;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics::{HostMeter, Limit, Metrics, Rejection};
use pending::{LogLimiter, Over, Pending, Slot};
use prelude::NoHead;
use registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// hyper's read and write buffer limit. It also bounds the request heads after the first on a
/// connection (the first is checked exactly against `max_header_bytes`); smaller values cost
/// throughput.
const HYPER_BUFFER: usize = 400 * 1024;
/// How long ggrok's own error answer may take to write before the connection is dropped.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// How long closing tunnel sessions may take at the end of shutdown.
const SESSION_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often hosts long offline are forgotten.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Everything the request handlers share.
pub struct State {
    /// The validated configuration.
    pub config: ServerConfig,
    /// Host → session, and the host's metrics.
    pub registry: Registry<tunnel::Session, Arc<HostMeter>>,
    /// What flows through the server.
    pub metrics: Arc<Metrics>,
    /// Cancelled on shutdown: stop accepting, finish public requests in flight.
    pub shutdown: CancellationToken,
    /// Cancelled once public requests are done (or the grace period is over): close sessions.
    pub close_sessions: CancellationToken,
    /// Public connections and upgraded streams, awaited on shutdown.
    pub public: TaskTracker,
    /// Tunnel sessions.
    pub sessions: TaskTracker,
    /// The port the HTTPS listener is bound to, for redirects.
    pub https_port: Option<u16>,
    /// Connections that have not yet sent a request head.
    pub pending: Arc<Pending>,
    /// Keeps limit-hit log lines to one a second.
    pub limit_log: LogLimiter,
    next_session: AtomicU64,
    next_anonymous: AtomicU64,
}

impl State {
    fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn next_anonymous_id(&self) -> u64 {
        self.next_anonymous.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The tunnel protocol versions this server accepts: normally every version this build
    /// speaks; `GGROK_PROTOCOL_MAX` lowers the newest, so tests can play an older server.
    pub fn protocol_versions(&self) -> std::ops::RangeInclusive<u32> {
        let newest = ggrok_proto::version::newest_from_env();
        *ggrok_proto::version::SUPPORTED.start()..=newest
    }
}

/// Serves `listener` (plain HTTP) and, when the config has `[tls]`, an HTTPS listener it binds
/// itself, until `shutdown` is cancelled. Then it stops accepting, lets requests in flight finish
/// for up to the configured grace period, and closes the tunnel sessions (HTTP/2 GOAWAY), so
/// daemons reconnect on their own to the next server.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let https = match &config.tls {
        Some(t) => {
            let acceptor = tls::acceptor(&t.certificates)?;
            let listener = TcpListener::bind(t.listen)
                .await
                .with_context(|| format!("cannot listen on {} (tls.listen)", t.listen))?;
            Some((listener, acceptor))
        }
        None => None,
    };
    let admin = match &config.admin {
        Some(a) => Some(
            TcpListener::bind(a.listen)
                .await
                .with_context(|| format!("cannot listen on {} (admin.listen)", a.listen))?,
        ),
        None => None,
    };
    let limits = &config.limits;
    let pending = Pending::new(limits.max_pending_connections, limits.max_pending_per_ip);
    let metrics = Metrics::new();
    let meters = metrics.clone();
    let state = Arc::new(State {
        config,
        registry: Registry::with_meters(registry::OFFLINE_GRACE, move |host| meters.meter(host)),
        metrics,
        shutdown: shutdown.clone(),
        close_sessions: CancellationToken::new(),
        public: TaskTracker::new(),
        sessions: TaskTracker::new(),
        https_port: https.as_ref().and_then(|(l, _)| l.local_addr().ok()).map(|a| a.port()),
        pending,
        limit_log: LogLimiter::default(),
        next_session: AtomicU64::new(0),
        next_anonymous: AtomicU64::new(0),
    });
    tokio::spawn(purge_offline_hosts(state.clone()));
    let path = &state.config.tunnel_path;
    info!("listening on {} (http, tunnel endpoint {path})", listener.local_addr()?);
    notify::ready(state.clone(), listener.local_addr()?);
    let https = match https {
        Some((listener, acceptor)) => {
            info!("listening on {} (https, tunnel endpoint {path})", listener.local_addr()?);
            Some(accept(state.clone(), listener, Some(acceptor)))
        }
        None => None,
    };
    // Logged after the public addresses, which tools read from the first "listening on" line.
    let admin_done = CancellationToken::new();
    if let Some(listener) = admin {
        info!("admin listening on {} (/metrics, /healthz)", listener.local_addr()?);
        tokio::spawn(admin::serve(state.clone(), listener, admin_done.clone()));
    }
    let _stop_admin = admin_done.drop_guard();
    let plain = accept(state.clone(), listener, None);
    match https {
        Some(https) => {
            tokio::join!(plain, https);
        }
        None => plain.await,
    }
    state.public.close();
    let grace = state.config.shutdown_grace;
    if !state.public.is_empty() {
        info!("waiting up to {:.1}s for requests in flight", grace.as_secs_f64());
    }
    if tokio::time::timeout(grace, state.public.wait()).await.is_err() {
        warn!("shutdown grace period over; cutting the remaining requests");
    }
    state.close_sessions.cancel();
    state.sessions.close();
    let _ = tokio::time::timeout(SESSION_CLOSE_TIMEOUT, state.sessions.wait()).await;
    info!("stopped");
    Ok(())
}

async fn accept(state: Arc<State>, listener: TcpListener, tls: Option<TlsAcceptor>) {
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
            _ = state.shutdown.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        state.public.clone().spawn(open_connection(state.clone(), stream, peer, tls.clone()));
    }
}

async fn purge_offline_hosts(state: Arc<State>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PURGE_INTERVAL) => state.registry.purge_offline(),
            _ = state.shutdown.cancelled() => return,
        }
    }
}

/// A new connection: counted as pending until its first request head has arrived (TLS handshake
/// included), which must happen within `header_read_timeout` (408) and `max_header_bytes` (431).
async fn open_connection(state: Arc<State>, stream: TcpStream, peer: SocketAddr, tls: Option<TlsAcceptor>) {
    let slot = match state.pending.enter(peer.ip()) {
        Ok(slot) => slot,
        Err(over) => return refuse_pending(&state, stream, peer, over, tls.is_some()).await,
    };
    let deadline = Instant::now() + state.config.limits.header_read_timeout;
    match tls {
        None => serve_io(state, stream, peer, false, deadline, slot).await,
        Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => serve_io(state, stream, peer, true, deadline, slot).await,
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

async fn serve_io<S>(
    state: Arc<State>,
    mut io: S,
    peer: SocketAddr,
    secure: bool,
    deadline: Instant,
    slot: Slot,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max = state.config.limits.max_header_bytes;
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
    let service = {
        let state = state.clone();
        service_fn(move |req| handle(state.clone(), Conn { peer, secure }, req))
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.limits.header_read_timeout)
        .max_buf_size(max.max(HYPER_BUFFER))
        .serve_connection(TokioIo::new(prelude::Prefixed::new(head, io)), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = state.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
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
    req: http::Request<Incoming>,
) -> Result<http::Response<ggrok_proto::http::Body>, std::convert::Infallible> {
    let started = std::time::Instant::now();
    let redirect = !conn.secure && state.config.tls.as_ref().is_some_and(|t| t.redirect_http);
    if req.uri().path() == state.config.tunnel_path {
        if redirect {
            state.metrics.rejected(Rejection::TlsRequired);
            return Ok(ggrok_proto::http::text(
                http::StatusCode::FORBIDDEN,
                "ggrok: this server takes tunnels over TLS only; use wss:// in ggrokd's server setting",
            ));
        }
        return Ok(tunnel::accept(&state, conn.peer, req));
    }
    if redirect {
        let resp = proxy::redirect_to_https(&state, &req);
        return Ok(metrics::respond(state.metrics.unrouted().clone(), started, resp));
    }
    Ok(proxy::forward(state, conn, req, started).await)
}
