//! ggrok-server: the public side of ggrok.
//!
//! One listener serves public HTTP and, on the tunnel path, ggrokd's WebSocket connections.
//! [`run`] takes a bound listener and a shutdown token, so tests bind port 0.

#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
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
/// How long shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Everything the request handlers share.
pub struct State {
    /// The validated configuration.
    pub config: ServerConfig,
    /// Host → session.
    pub registry: Registry<tunnel::Session>,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
    /// Connection and session tasks, awaited on shutdown.
    pub tasks: TaskTracker,
    next_session: AtomicU64,
}

impl State {
    fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Serves `listener` until `shutdown` is cancelled, then waits up to a grace period for
/// in-flight connections.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state = Arc::new(State {
        config,
        registry: Registry::default(),
        shutdown: shutdown.clone(),
        tasks: TaskTracker::new(),
        next_session: AtomicU64::new(0),
    });
    info!("listening on {} (tunnel endpoint {})", listener.local_addr()?, state.config.tunnel_path);
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
        state.tasks.clone().spawn(serve_connection(state, stream, peer));
    }
    state.tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, state.tasks.wait()).await.is_err() {
        warn!("shutdown grace period over; closing remaining connections");
    }
    info!("stopped");
    Ok(())
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
