//! The admin listener (`[admin] listen`), separate from the public port:
//!
//! - `GET /metrics`: every metric, in the Prometheus text format;
//! - `GET /healthz`: `200 ok` while the server serves, `503 stopping` once shutdown has begun (so a
//!   load balancer stops sending traffic while requests in flight finish), and, with
//!   `[cluster] wait_for_sessions`, `503 waiting for tunnel sessions` after a start until a daemon
//!   has claimed a host or that many seconds have passed;
//! - `GET /certificates`: the certificates in use (source, names, issuer, expiry) and ACME's
//!   state of each name (pending, valid, failed with the last error, next attempt), as JSON;
//! - any other path: 404; any method but GET and HEAD: 405.
//!
//! It keeps answering during the shutdown grace period and stops when the server does.

use crate::State;
use crate::ops::metrics::Scrape;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// How long a scraper may take to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the admin listener until `done` is cancelled.
pub async fn serve(state: Arc<State>, listener: TcpListener, done: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!("admin accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = done.cancelled() => return,
        };
        let state = state.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&state, &req)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = conn => if let Err(e) = result {
                    debug!(%peer, "admin connection ended: {e}");
                },
                _ = done.cancelled() => {}
            }
        });
    }
}

/// The answer to one admin request.
pub fn answer<B>(state: &State, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed: use GET\n");
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match req.uri().path() {
        "/metrics" => {
            state.metrics.set_budget(&state.budget);
            let daemons = state.daemons.sessions_per_daemon();
            let scrape = Scrape {
                hosts_online: state.registry.online(),
                daemons: &daemons,
                replica: &state.config().cluster.replica,
            };
            if let Some(certificates) = &state.certificates {
                let names = state.acme.as_ref().map(|a| a.counts());
                state
                    .metrics
                    .certificates
                    .set(&certificates.in_use(), names.as_ref().map_or(&[], |n| &n[..]));
            }
            let body = state.metrics.encode(&scrape);
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(crate::ops::metrics::CONTENT_TYPE));
            resp
        }
        "/certificates" => {
            let report = crate::acme::report::json(
                &state.config(),
                state.certificates.as_deref(),
                state.acme.as_deref(),
            );
            let mut resp = Response::new(Full::new(Bytes::from(format!("{report:#}\n"))));
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        "/healthz" if state.shutdown.is_cancelled() => text(StatusCode::SERVICE_UNAVAILABLE, "stopping\n"),
        "/healthz" if !state.readiness.ready() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "waiting for tunnel sessions\n")
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: this is ggrok-server's admin port (/metrics, /healthz, /certificates)\n",
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}
