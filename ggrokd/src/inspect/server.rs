//! The inspector's listener: the page (shipped inside the binary) and the API, on a loopback
//! address only. A request whose `Host` is not the inspector's own address is refused (a web page
//! elsewhere cannot reach it through DNS rebinding), and so is a request that changes something
//! (replay, clear) from a page of another origin.

use super::api;
use crate::daemon::Daemon;
use bytes::Bytes;
use ggrok_proto::http::{self as body, Body};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const VIEWS: &str = include_str!("page/views.js");
const STYLE: &str = include_str!("page/style.css");

/// Binds `address`; a failure (the port is busy) is a warning, and ggrokd runs without it.
pub fn bind(address: SocketAddr) -> Option<TcpListener> {
    let bound = std::net::TcpListener::bind(address)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(TcpListener::from_std);
    match bound {
        Ok(listener) => {
            let local = listener.local_addr().ok()?;
            info!("inspector on http://{local}");
            Some(listener)
        }
        Err(e) => {
            warn!(
                "the inspector cannot listen on {address}: {e}; ggrokd runs without it (set `inspect` to another address, or \"off\")"
            );
            None
        }
    }
}

/// Serves the inspector on `listener` until `shutdown`.
pub async fn serve(daemon: Arc<Daemon>, listener: TcpListener, shutdown: CancellationToken) {
    let Ok(local) = listener.local_addr() else { return };
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    debug!("inspector accept: {e}");
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let (daemon, shutdown) = (daemon.clone(), shutdown.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let daemon = daemon.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&daemon, local, req).await) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                r = conn => if let Err(e) = r { debug!("inspector connection: {e}") },
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

/// The `Host` values the inspector at `local` answers to.
pub fn allowed_hosts(local: SocketAddr) -> Vec<String> {
    let port = local.port();
    let mut hosts = vec![format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")];
    hosts.push(local.to_string());
    hosts
}

/// Whether the request's `Host`, and for changes its `Origin`, are the inspector's own.
pub fn allowed(
    local: SocketAddr,
    method: &Method,
    host: Option<&str>,
    origin: Option<&str>,
) -> Result<(), &'static str> {
    let hosts = allowed_hosts(local);
    if !host.is_some_and(|h| hosts.iter().any(|a| a.eq_ignore_ascii_case(h))) {
        return Err(
            "this is ggrokd's inspector: it answers only to its own address (a Host of 127.0.0.1, localhost or [::1] with its port)",
        );
    }
    let changes = !matches!(*method, Method::GET | Method::HEAD);
    if changes
        && let Some(origin) = origin
        && !hosts.iter().any(|a| origin.eq_ignore_ascii_case(&format!("http://{a}")))
    {
        return Err("the inspector refuses changes asked from another origin");
    }
    Ok(())
}

async fn answer(daemon: &Arc<Daemon>, local: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let header = |name| req.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    if let Err(why) = allowed(local, req.method(), header(header::HOST), header(header::ORIGIN)) {
        return body::text(StatusCode::FORBIDDEN, why);
    }
    let path = req.uri().path();
    if path.starts_with("/api/") {
        let mut resp = api::answer(daemon, req).await;
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return resp;
    }
    let (content_type, text) = match path {
        "/" | "/index.html" => ("text/html; charset=utf-8", INDEX),
        "/app.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "/views.js" => ("text/javascript; charset=utf-8", VIEWS),
        "/style.css" => ("text/css; charset=utf-8", STYLE),
        _ => return body::text(StatusCode::NOT_FOUND, "not found: the inspector serves / and /api/"),
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return body::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let mut resp =
        Response::new(Full::new(Bytes::from_static(text.as_bytes())).map_err(|never| match never {}).boxed());
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'"),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_its_own_host_and_origin() {
        let local: SocketAddr = "127.0.0.1:4040".parse().unwrap();
        assert!(allowed(local, &Method::GET, Some("127.0.0.1:4040"), None).is_ok());
        assert!(allowed(local, &Method::GET, Some("localhost:4040"), None).is_ok());
        assert!(allowed(local, &Method::GET, Some("evil.example:4040"), None).is_err(), "DNS rebinding");
        assert!(allowed(local, &Method::GET, None, None).is_err());
        assert!(allowed(local, &Method::POST, Some("localhost:4040"), Some("http://localhost:4040")).is_ok());
        assert!(allowed(local, &Method::POST, Some("localhost:4040"), Some("https://evil.example")).is_err());
        assert!(allowed(local, &Method::POST, Some("localhost:4040"), None).is_ok(), "curl sends no Origin");
    }
}
