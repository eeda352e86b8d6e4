//! ggrok-server: the public side of ggrok.
//!
//! One listener serves public HTTP and, on the tunnel path, ggrokd's WebSocket connections.
//! [`run`] takes a bound listener and a shutdown token, so tests bind port 0.

#![forbid(unsafe_code)]

pub mod auth;
pub mod cli;
pub mod config;
pub mod notify;
pub mod proxy;
pub mod registry;
pub mod tunnel;

use config::ServerConfig;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// How long a public client may take to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long closing tunnel sessions may take at the end of shutdown.
const SESSION_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often hosts long offline are forgotten.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Everything the request handlers share.
pub struct State {
    /// The validated configuration.
    pub config: ServerConfig,
    /// Host → session.
    pub registry: Registry<tunnel::Session>,
    /// Cancelled on shutdown: stop accepting, finish public requests in flight.
    pub shutdown: CancellationToken,
    /// Cancelled once public requests are done (or the grace period is over): close sessions.
    pub close_sessions: CancellationToken,
    /// Public connections and upgraded streams, awaited on shutdown.
    pub public: TaskTracker,
    /// Tunnel sessions.
    pub sessions: TaskTracker,
    next_session: AtomicU64,
}

impl State {
    fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Serves `listener` until `shutdown` is cancelled. Then it stops accepting, lets requests in
/// flight finish for up to the configured grace period, and closes the tunnel sessions (HTTP/2
/// GOAWAY), so daemons reconnect on their own to the next server.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state = Arc::new(State {
        config,
        registry: Registry::default(),
        shutdown: shutdown.clone(),
        close_sessions: CancellationToken::new(),
        public: TaskTracker::new(),
        sessions: TaskTracker::new(),
        next_session: AtomicU64::new(0),
    });
    tokio::spawn(purge_offline_hosts(state.clone()));
    info!("listening on {} (tunnel endpoint {})", listener.local_addr()?, state.config.tunnel_path);
    notify::ready(state.clone(), listener.local_addr()?);
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
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        state.public.clone().spawn(serve_connection(state, stream, peer));
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

async fn purge_offline_hosts(state: Arc<State>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PURGE_INTERVAL) => state.registry.purge_offline(),
            _ = state.shutdown.cancelled() => return,
        }
    }
}

async fn serve_connection(state: Arc<State>, stream: tokio::net::TcpStream, peer: SocketAddr) {
    let service = {
        let state = state.clone();
        service_fn(move |req| handle(state.clone(), peer, req))
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
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

async fn handle(
    state: Arc<State>,
    peer: SocketAddr,
    req: http::Request<Incoming>,
) -> Result<http::Response<ggrok_proto::http::Body>, std::convert::Infallible> {
    if req.uri().path() == state.config.tunnel_path {
        return Ok(tunnel::accept(&state, peer, req));
    }
    Ok(proxy::forward(state, peer, req).await)
}
