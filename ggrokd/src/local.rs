//! Requests from the tunnel to local services: plain requests over a pool of keep-alive
//! HTTP/1.1 connections, or one multiplexed HTTP/2 connection per service that speaks it (h2c,
//! `app_protocol = "http2"`, or an `https://` service that picks `h2`); upgrades (WebSocket) over
//! a fresh HTTP/1.1 connection each, spliced to the tunnel stream. `https://` services are
//! reached over TLS ([`crate::tls`]); see [`crate::config::LocalHttp`] for which protocol when.

use crate::config::{AppProtocol, LocalScheme, TunnelSpec};
use crate::exchange::{Exchange, RequestBody, TunnelSide};
use crate::pool::{self, LocalStream, Pool, h2::Multiplexed};
use crate::tls::Alpn;
use crate::tunnels::Tunnel;
use bytes::Bytes;
use ggrok_proto::HEADER_DECLINED_STATUS;
use ggrok_proto::headers::{detach_values, error_chain, strip_hop_by_hop};
use ggrok_proto::http::{self as body, Body};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::{Either, Empty};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tracing::debug;

/// The client toward local services: keep-alive HTTP/1.1 connections per local address, one
/// HTTP/2 connection per local address that speaks it.
#[derive(Clone, Default)]
pub struct LocalClient {
    pool: Pool<RequestBody>,
    h2: Multiplexed<RequestBody>,
    /// What each `https://` service without `app_protocol` picked by ALPN: whether `h2`.
    picked: Arc<Mutex<HashMap<String, bool>>>,
}

/// Which HTTP a request to a local service goes by.
enum Route {
    Http1,
    Http2,
    /// An `https://` service whose ALPN choice is not known yet: connect, then see.
    Ask,
}

/// The key a local service's connections are kept under: its address, and for `https://` the
/// certificate check, so one tunnel's settings never reuse a connection checked by another's.
fn pool_key(spec: &TunnelSpec) -> String {
    match &spec.local_http.tls {
        None if spec.local.scheme == LocalScheme::Http => spec.local.authority.clone(),
        None => spec.local.to_string(),
        Some(tls) => format!("{}|{:?}|{}", spec.local, tls.ca_file, tls.skip_verify),
    }
}

async fn connect(spec: &TunnelSpec, alpn: Alpn) -> Result<LocalStream, pool::Error> {
    LocalStream::connect(&spec.local, spec.local_http.tls.as_ref(), alpn).await
}

/// A request head made ready for HTTP/2 to the local service: the host as `:authority`.
fn to_h2(spec: &TunnelSpec, parts: &mut http::request::Parts) -> Result<(), http::Error> {
    let host = parts.headers.remove(header::HOST);
    let authority = host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or(&spec.local.authority);
    let scheme = if spec.local_http.tls.is_some() { "https" } else { "http" };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = Uri::builder().scheme(scheme).authority(authority).path_and_query(path).build()?;
    parts.version = Version::HTTP_2;
    Ok(())
}

impl LocalClient {
    /// A client whose HTTP/1.1 connections' read buffers `budget` sizes (by default they read
    /// 64 KiB at most).
    pub fn new(budget: Arc<ggrok_proto::budget::Budget>) -> Self {
        Self { pool: Pool::with_budget(budget), h2: Multiplexed::default(), picked: Arc::default() }
    }

    fn route(&self, spec: &TunnelSpec, key: &str) -> Route {
        match (spec.local_http.app_protocol, &spec.local_http.tls) {
            (AppProtocol::Http2, _) => Route::Http2,
            (AppProtocol::Auto, Some(_)) => match self.picked.lock().expect("picked lock").get(key) {
                Some(true) => Route::Http2,
                Some(false) => Route::Http1,
                None => Route::Ask,
            },
            _ => Route::Http1,
        }
    }

    /// Sends a request head and body to the tunnel's local service by the HTTP it speaks.
    async fn send(
        &self,
        spec: &TunnelSpec,
        mut parts: http::request::Parts,
        body: RequestBody,
    ) -> Result<Response<Either<pool::Pooled<RequestBody>, hyper::body::Incoming>>, pool::Error> {
        let key = pool_key(spec);
        let (h2, fresh) = match self.route(spec, &key) {
            Route::Http1 => (false, None),
            Route::Http2 => (true, None),
            Route::Ask => {
                let stream = connect(spec, Alpn::Either).await?;
                let h2 = stream.is_h2();
                self.picked.lock().expect("picked lock").insert(key.clone(), h2);
                (h2, Some(stream))
            }
        };
        let sent = if h2 {
            to_h2(spec, &mut parts)?;
            let alpn =
                if spec.local_http.app_protocol == AppProtocol::Http2 { Alpn::Http2 } else { Alpn::Either };
            let req = Request::from_parts(parts, body);
            self.h2.send(&key, connect(spec, alpn), fresh, req).await.map(|r| r.map(Either::Right))
        } else {
            parts.version = Version::HTTP_11;
            let req = Request::from_parts(parts, body);
            let sent = match fresh {
                Some(stream) => self.pool.send_with(&key, std::future::ready(Ok(stream)), req).await,
                None if spec.local.scheme == LocalScheme::Http => self.pool.send(&key, req).await,
                None => self.pool.send_with(&key, connect(spec, Alpn::Http1), req).await,
            };
            sent.map(|r| r.map(Either::Left))
        };
        if sent.is_err() {
            // The service may have changed what it speaks (restarted with other settings): ask
            // again at the next request.
            self.picked.lock().expect("picked lock").remove(&key);
        }
        sent
    }

    /// Sends `req` (a tunnel stream) to the tunnel's local service and streams back its answer;
    /// 502 naming the local address when it cannot be reached. The `exchange` rides along the
    /// answer's body.
    pub async fn forward(
        &self,
        tunnel: &Tunnel,
        req: Request<RequestBody>,
        exchange: Exchange,
    ) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let host = host_header(tunnel, &parts.uri, parts.headers.get(header::HOST));
        parts.uri = match Uri::builder().path_and_query(path).build() {
            Ok(uri) => uri,
            Err(e) => {
                let refusal =
                    body::text(StatusCode::BAD_REQUEST, format!("ggrokd: invalid request target: {e}"));
                return exchange.respond(refusal);
            }
        };
        prepare(&mut parts.headers, host);
        match self.send(&tunnel.spec, parts, body).await {
            Ok(resp) => {
                tunnel.record_ok();
                let (mut parts, body) = resp.into_parts();
                for_tunnel(&mut parts.headers);
                exchange.respond(Response::from_parts(parts, body))
            }
            Err(e) => exchange.respond(unreachable_local(tunnel, &*e)),
        }
    }

    /// Forwards an extended CONNECT stream as an HTTP/1.1 `Upgrade: <protocol>` request; when the
    /// local service answers 101, answers 200 and splices the local connection with
    /// `tunnel_side`, the stream's bytes once that 200 is sent. The `exchange` rides along the
    /// upgraded connection, or the answer's body when there is no upgrade.
    pub async fn upgrade(
        &self,
        tunnel: &Tunnel,
        protocol: String,
        req: Request<()>,
        tunnel_side: TunnelSide,
        mut exchange: Exchange,
    ) -> Response<Body> {
        let stream = match connect(&tunnel.spec, Alpn::Http1).await {
            Ok(s) => s,
            Err(e) => return exchange.respond(unreachable_local(tunnel, &*e)),
        };
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await {
                Ok(pair) => pair,
                Err(e) => return exchange.respond(unreachable_local(tunnel, &e)),
            };
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                debug!("local upgrade connection: {e}");
            }
        });
        let (mut parts, _) = req.into_parts();
        let host = host_header(tunnel, &parts.uri, None);
        parts.method = Method::GET;
        parts.uri =
            parts.uri.path_and_query().map_or("/", |p| p.as_str()).parse().expect("a path is a valid URI");
        parts.version = Version::HTTP_11;
        prepare(&mut parts.headers, host);
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        match HeaderValue::from_str(&protocol) {
            Ok(v) => parts.headers.insert(header::UPGRADE, v),
            Err(_) => {
                return exchange
                    .respond(body::text(StatusCode::BAD_REQUEST, "ggrokd: invalid upgrade protocol"));
            }
        };
        let mut resp = match sender.send_request(Request::from_parts(parts, Empty::new())).await {
            Ok(r) => r,
            Err(e) => return exchange.respond(unreachable_local(tunnel, &e)),
        };
        tunnel.record_ok();
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let (mut parts, body) = resp.into_parts();
            for_tunnel(&mut parts.headers);
            // The public client gets the local service's status, whatever crosses the tunnel.
            exchange.set_status(parts.status.as_u16());
            if parts.status.is_success() {
                parts.headers.insert(HEADER_DECLINED_STATUS, HeaderValue::from(parts.status.as_u16()));
                parts.status = StatusCode::BAD_GATEWAY;
            }
            return exchange.respond(Response::from_parts(parts, body));
        }
        exchange.upgraded(resp.headers());
        let local_side = hyper::upgrade::on(&mut resp);
        let host = tunnel.spec.host.to_string();
        tokio::spawn(async move {
            if let Err(e) = exchange.splice(tunnel_side, local_side).await {
                debug!(host, "upgraded connection ended: {e}");
            }
        });
        let (mut parts, _) = resp.into_parts();
        for_tunnel(&mut parts.headers);
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.status = StatusCode::OK;
        Response::from_parts(parts, body::empty())
    }
}

/// Sends one request (its URI in origin form, its `Host` set) to `spec`'s local service over a
/// connection of its own, by the HTTP the service speaks: replays from the inspector.
pub async fn send_once<B>(
    spec: &TunnelSpec,
    req: Request<B>,
) -> Result<Response<hyper::body::Incoming>, pool::Error>
where
    B: pool::RequestBody,
{
    let alpn = match spec.local_http.app_protocol {
        AppProtocol::Auto => Alpn::Either,
        AppProtocol::Http1 => Alpn::Http1,
        AppProtocol::Http2 => Alpn::Http2,
    };
    let stream = connect(spec, alpn).await?;
    let io = TokioIo::new(stream);
    if spec.local_http.app_protocol == AppProtocol::Http2 || io.inner().is_h2() {
        let (mut parts, body) = req.into_parts();
        to_h2(spec, &mut parts)?;
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        return Ok(sender.send_request(Request::from_parts(parts, body)).await?);
    }
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    Ok(sender.send_request(req).await?)
}

/// The `Host` the local service sees: the public host (from `:authority`), or the local address
/// with `host_header = "rewrite"`.
fn host_header(tunnel: &Tunnel, uri: &Uri, existing: Option<&HeaderValue>) -> Option<HeaderValue> {
    if tunnel.spec.rewrite_host {
        return HeaderValue::from_str(&tunnel.spec.local.authority).ok();
    }
    existing.cloned().or_else(|| uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()))
}

/// The headers of a local answer, made ready to cross the tunnel: no hop-by-hop headers, and
/// values that share no buffer with the local connection (see [`detach_values`]).
fn for_tunnel(headers: &mut http::HeaderMap) {
    strip_hop_by_hop(headers);
    detach_values(headers);
}

fn prepare(headers: &mut http::HeaderMap, host: Option<HeaderValue>) {
    strip_hop_by_hop(headers);
    if let Some(host) = host {
        headers.insert(header::HOST, host);
    }
}

fn unreachable_local(tunnel: &Tunnel, err: &(dyn std::error::Error + 'static)) -> Response<Body> {
    let cause = error_chain(err);
    tunnel.record_error(format!("{}: {cause}", tunnel.spec.local));
    body::text(
        StatusCode::BAD_GATEWAY,
        format!(
            "ggrok: the local service {} for {} is not reachable: {cause}",
            tunnel.spec.local, tunnel.spec.host
        ),
    )
}
