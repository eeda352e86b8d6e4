//! Public requests: find the tunnel by `Host`, send the request through it as one HTTP/2 stream,
//! stream the answer back. Upgrades (WebSocket) cross as extended CONNECT and are then spliced.

use crate::State;
use crate::registry::Route;
use crate::tunnel::Session;
use ggrok_proto::HEADER_DECLINED_STATUS;
use ggrok_proto::headers::{error_chain, strip_hop_by_hop, upgrade_protocol};
use ggrok_proto::host::normalize_host;
use ggrok_proto::http::{self as body, Body, Refusal};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::ext::Protocol;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::debug;

const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_FORWARDED_HOST: &str = "x-forwarded-host";

/// Routes one public request. Never fails: errors become 4xx/5xx responses that say what failed.
pub async fn forward(state: Arc<State>, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    if req.headers().get_all(header::HOST).iter().count() > 1 {
        return body::text(StatusCode::BAD_REQUEST, "ggrok: the request has more than one Host header");
    }
    let Some(raw_host) = host_of(&req) else {
        return body::text(StatusCode::BAD_REQUEST, "ggrok: the request has no Host header");
    };
    let host = match normalize_host(&raw_host) {
        Ok(h) => h,
        Err(e) => {
            return body::text(
                StatusCode::BAD_REQUEST,
                format!("ggrok: invalid Host header {raw_host:?}: {e}"),
            );
        }
    };
    let session = match state.registry.lookup(&host) {
        Route::Online(session) => session,
        Route::Offline => {
            return body::text(
                StatusCode::BAD_GATEWAY,
                format!("ggrok: the tunnel for {host} is offline, reconnecting; try again in a moment"),
            );
        }
        Route::Unknown => {
            return body::text(StatusCode::NOT_FOUND, format!("ggrok: no tunnel is online for host {host}"));
        }
    };
    if req.method() == Method::CONNECT {
        return body::text(StatusCode::METHOD_NOT_ALLOWED, "ggrok: CONNECT requests are not forwarded");
    }
    match upgrade_protocol(req.headers()) {
        Some(p) if p.eq_ignore_ascii_case(ggrok_proto::CONTROL_PROTOCOL) => {
            body::text(StatusCode::BAD_REQUEST, format!("ggrok: upgrading to {p:?} is not allowed"))
        }
        // Upgrades cross as extended CONNECT, which has no request body: only a bodiless GET can
        // be upgraded. Anything else (a POST offering h2c, say) is forwarded as a plain request,
        // without its Upgrade header, as any proxy that does not speak the protocol would.
        Some(protocol) if is_upgradable(&req, &protocol) => {
            forward_upgrade(&state, session, peer, req, &raw_host, &host, protocol).await
        }
        _ => forward_plain(session, peer, req, &raw_host, &host).await,
    }
}

fn is_upgradable(req: &Request<Incoming>, protocol: &str) -> bool {
    let headers = req.headers();
    let no_body = !headers.contains_key(header::TRANSFER_ENCODING)
        && headers.get(header::CONTENT_LENGTH).is_none_or(|v| v.as_bytes() == b"0");
    req.method() == Method::GET && no_body && !protocol.eq_ignore_ascii_case("h2c")
}

fn host_of(req: &Request<Incoming>) -> Option<String> {
    match req.headers().get(header::HOST) {
        Some(v) => v.to_str().ok().map(str::to_owned),
        None => req.uri().authority().map(|a| a.to_string()),
    }
}

async fn forward_plain(
    session: Arc<Session>,
    peer: SocketAddr,
    req: Request<Incoming>,
    raw_host: &str,
    host: &str,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    if let Err(refusal) = prepare(&mut parts, peer, raw_host) {
        return refusal.into_response();
    }
    let request = Request::from_parts(parts, body.boxed());
    match session.sender.clone().send_request(request).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            parts.version = Version::HTTP_11;
            Response::from_parts(parts, body.boxed())
        }
        Err(e) => tunnel_failed(host, &e),
    }
}

async fn forward_upgrade(
    state: &State,
    session: Arc<Session>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
    raw_host: &str,
    host: &str,
    protocol: String,
) -> Response<Body> {
    let public = hyper::upgrade::on(&mut req);
    let (mut parts, _) = req.into_parts();
    if let Err(refusal) = prepare(&mut parts, peer, raw_host) {
        return refusal.into_response();
    }
    parts.method = Method::CONNECT;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.extensions.insert(Protocol::from(protocol.as_str()));
    let request = Request::from_parts(parts, body::empty());
    let mut resp = match session.sender.clone().send_request(request).await {
        Ok(resp) => resp,
        Err(e) => return tunnel_failed(host, &e),
    };
    if resp.status() != StatusCode::OK {
        // The local service declined the upgrade: pass its answer on as it is.
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts.version = Version::HTTP_11;
        if let Some(declined) = parts.headers.remove(HEADER_DECLINED_STATUS) {
            let status = declined.to_str().ok().and_then(|s| s.parse::<u16>().ok());
            if let Some(status) = status.and_then(|s| StatusCode::from_u16(s).ok()) {
                parts.status = status;
            }
        }
        return Response::from_parts(parts, body.boxed());
    }
    let tunnel = hyper::upgrade::on(&mut resp);
    let host_owned = host.to_owned();
    state.public.spawn(async move {
        if let Err(e) = body::splice(public, tunnel).await {
            debug!(host = %host_owned, "upgraded connection ended: {e}");
        }
    });
    let (mut parts, _) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.status = StatusCode::SWITCHING_PROTOCOLS;
    parts.version = Version::HTTP_11;
    parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(value) = HeaderValue::from_str(&protocol) {
        parts.headers.insert(header::UPGRADE, value);
    }
    Response::from_parts(parts, body::empty())
}

/// Turns a public request head into the head of a tunnel stream: absolute URI with the public
/// host as authority, no hop-by-hop headers, `X-Forwarded-*` added.
fn prepare(parts: &mut Parts, peer: SocketAddr, raw_host: &str) -> Result<(), Refusal> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri =
        Uri::builder().scheme("http").authority(raw_host).path_and_query(path).build().map_err(|e| {
            Refusal::new(StatusCode::BAD_REQUEST, format!("ggrok: invalid request target: {e}"))
        })?;
    parts.version = Version::HTTP_2;
    strip_hop_by_hop(&mut parts.headers);
    let headers = &mut parts.headers;
    headers.remove(header::HOST);
    let client_ip = peer.ip().to_string();
    let prior: Vec<&str> = headers.get_all(X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).collect();
    let forwarded_for =
        if prior.is_empty() { client_ip } else { format!("{}, {client_ip}", prior.join(", ")) };
    let value = |s: &str| {
        HeaderValue::from_str(s)
            .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "ggrok: invalid header value"))
    };
    headers.insert(X_FORWARDED_FOR, value(&forwarded_for)?);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    headers.insert(X_FORWARDED_HOST, value(raw_host)?);
    Ok(())
}

fn tunnel_failed(host: &str, err: &hyper::Error) -> Response<Body> {
    let why = if err.is_closed() || err.is_canceled() {
        "the tunnel went offline".to_owned()
    } else {
        error_chain(err)
    };
    body::text(StatusCode::BAD_GATEWAY, format!("ggrok: the tunnel for {host} failed: {why}"))
}
