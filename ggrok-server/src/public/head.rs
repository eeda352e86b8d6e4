//! The public request head: the host it is for, the redirect to HTTPS, and the head a tunnel
//! stream carries (absolute URI, no hop-by-hop headers, `X-Forwarded-*`).

use crate::State;
use crate::public::Conn;
use ggrok_proto::headers::{detach_values, strip_hop_by_hop, upgrade_protocol};
use ggrok_proto::host::normalize_host;
use ggrok_proto::http::{self as body, Body, Refusal};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;

const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_FORWARDED_HOST: &str = "x-forwarded-host";

/// The host a request is for: HTTP/2's `:authority` (RFC 9113 §8.3.1: it wins over a `Host`),
/// else the `Host` header, else an absolute HTTP/1.1 target's authority.
pub(crate) fn host_of<B>(req: &Request<B>) -> Option<String> {
    let authority = || req.uri().authority().map(|a| a.to_string());
    if req.version() >= Version::HTTP_2
        && let Some(authority) = authority()
    {
        return Some(authority);
    }
    match req.headers().get(header::HOST) {
        Some(v) => v.to_str().ok().map(str::to_owned),
        None => authority(),
    }
}

/// What the 404 for a host no tunnel serves says. To what looks like ggrokd's handshake (an
/// upgrade carrying `ggrok-protocol`), at another path than `tunnel_path`, it says that instead
/// (without naming the path).
pub(crate) fn unknown_host(headers: &HeaderMap, host: &str) -> String {
    if headers.contains_key(ggrok_proto::HEADER_PROTOCOL) && upgrade_protocol(headers).is_some() {
        "ggrok: this server takes tunnels at another path (its tunnel_path)".to_owned()
    } else {
        format!("ggrok: no tunnel is online for host {host}")
    }
}

/// The answer to plain HTTP when `[tls] redirect_http` is on: 308 to the same URL over HTTPS.
pub fn redirect_to_https(state: &State, req: &Request<Incoming>) -> Response<Body> {
    let Some(host) = host_of(req).and_then(|h| normalize_host(&h).ok()) else {
        return body::text(StatusCode::BAD_REQUEST, "ggrok: the request has no valid Host header");
    };
    // Behind a balancer, the port users reach HTTPS at, when `public_url` names one.
    let port = match state.config().public_url {
        Some(public) if public.https => public.port.unwrap_or(443),
        _ => state.https_port.unwrap_or(443),
    };
    let authority = if port == 443 { host } else { format!("{host}:{port}") };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{authority}{path}");
    let mut resp = body::text(
        StatusCode::PERMANENT_REDIRECT,
        format!("ggrok: this site is served over HTTPS: {location}"),
    );
    if let Ok(value) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, value);
    }
    resp
}

/// Turns a public request head into the head of a tunnel stream: absolute URI with the public
/// host as authority, no hop-by-hop headers, `X-Forwarded-*` added. The scheme is `https` for a
/// TLS connection, or when `public_url` says users reach the tunnels over HTTPS (a balancer that
/// ends TLS in front).
pub(crate) fn prepare(parts: &mut Parts, conn: Conn, raw_host: &str, state: &State) -> Result<(), Refusal> {
    let secure = conn.secure || state.config().public_url.is_some_and(|p| p.https);
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = Uri::builder()
        .scheme(if secure { "https" } else { "http" })
        .authority(raw_host)
        .path_and_query(path)
        .build()
        .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, format!("ggrok: invalid request target: {e}")))?;
    parts.version = Version::HTTP_2;
    strip_hop_by_hop(&mut parts.headers);
    let headers = &mut parts.headers;
    headers.remove(header::HOST);
    let client_ip = conn.peer.ip().to_string();
    let prior: Vec<&str> = headers.get_all(X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).collect();
    let forwarded_for =
        if prior.is_empty() { client_ip } else { format!("{}, {client_ip}", prior.join(", ")) };
    let value = |s: &str| {
        HeaderValue::from_str(s)
            .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "ggrok: invalid header value"))
    };
    headers.insert(X_FORWARDED_FOR, value(&forwarded_for)?);
    let proto = if secure { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    headers.insert(X_FORWARDED_HOST, value(raw_host)?);
    detach_values(headers);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ggrokd_handshake_at_another_path_is_told_so() {
        let mut headers = HeaderMap::new();
        assert_eq!(unknown_host(&headers, "a.test"), "ggrok: no tunnel is online for host a.test");
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(unknown_host(&headers, "a.test").contains("no tunnel is online"), "a public WebSocket");
        headers.insert(ggrok_proto::HEADER_PROTOCOL, HeaderValue::from_static("1"));
        assert!(unknown_host(&headers, "a.test").contains("tunnel_path"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("ggrok-h2"));
        assert!(unknown_host(&headers, "a.test").contains("tunnel_path"));
    }
}
