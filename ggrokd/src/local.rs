//! Requests from the tunnel to local services: plain requests over a pool of keep-alive
//! connections, upgrades (WebSocket) over a fresh connection each, spliced to the tunnel stream.

use crate::exchange::{Exchange, RequestBody, TunnelSide};
use crate::pool::{self, Pool};
use crate::tunnels::Tunnel;
use bytes::Bytes;
use ggrok_proto::HEADER_DECLINED_STATUS;
use ggrok_proto::headers::{detach_values, error_chain, strip_hop_by_hop};
use ggrok_proto::http::{self as body, Body};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tracing::debug;

/// The client toward local services: keep-alive connections per local address.
#[derive(Clone, Default)]
pub struct LocalClient {
    pool: Pool<RequestBody>,
}

impl LocalClient {
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
        let local = &tunnel.spec.local.authority;
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
        parts.version = Version::HTTP_11;
        match self.pool.send(local, Request::from_parts(parts, body)).await {
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
        let local = &tunnel.spec.local.authority;
        let stream = match pool::dial(local).await {
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
