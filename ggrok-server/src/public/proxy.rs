//! Public requests: find the tunnel by `Host` (HTTP/1.1) or `:authority` (HTTP/2), send the
//! request through it as one HTTP/2 stream, stream the answer back. Upgrades (WebSocket over an
//! HTTP/1.1 `Upgrade`, or over HTTP/2 extended CONNECT, RFC 8441) cross as extended CONNECT and
//! are then spliced.
//! Every answer is counted in the metrics of the registry entry it was routed to.

use crate::State;
use crate::ops::metrics::{self, HostMeter, Limit, PublicTraffic};
use crate::public::Conn;
use crate::public::paced::Paced;
use crate::public::stall::Progress;
use crate::tunnel::Session;
use crate::tunnel::daemons::Daemon;
use crate::tunnel::registry::Route;
use ggrok_proto::HEADER_DECLINED_STATUS;
use ggrok_proto::headers::{error_chain, strip_hop_by_hop, upgrade_protocol};
use ggrok_proto::host::normalize_host;
use ggrok_proto::http::{self as body, Body, BodyError, Refusal};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, warn};

pub(crate) use super::head::{host_of, redirect_to_https};
use super::head::{prepare, unknown_host};
use super::resend::{Again, resent};

/// Routes one public request that arrived at `started`. Never fails: errors become 4xx/5xx
/// responses that say what failed.
pub async fn forward(
    state: Arc<State>,
    conn: Conn,
    writes: Arc<Progress>,
    mut req: Request<Incoming>,
    started: Instant,
) -> Response<Body> {
    let unrouted = |resp: Response<Body>| metrics::respond(state.metrics.unrouted().clone(), started, resp);
    if req.headers().get_all(header::HOST).iter().count() > 1 {
        return unrouted(body::text(
            StatusCode::BAD_REQUEST,
            "ggrok: the request has more than one Host header",
        ));
    }
    let Some(raw_host) = host_of(&req) else {
        return unrouted(body::text(StatusCode::BAD_REQUEST, "ggrok: the request has no Host header"));
    };
    let host = match normalize_host(&raw_host) {
        Ok(h) => h,
        Err(e) => {
            return unrouted(body::text(
                StatusCode::BAD_REQUEST,
                format!("ggrok: invalid Host header {raw_host:?}: {e}"),
            ));
        }
    };
    let (session, meter, guard, daemon) = match state.registry.lookup(&host) {
        Route::Online(daemon, meter, guard) => match daemon.pick(crate::workers::current()) {
            Some((session, local)) => {
                state.metrics.stream_routed(local);
                (session, meter, guard, daemon)
            }
            // Its last session just ended; the registry marks the hosts offline right after.
            None => {
                let message =
                    format!("ggrok: the tunnel for {host} is offline, reconnecting; try again in a moment");
                return metrics::respond(meter, started, body::text(StatusCode::BAD_GATEWAY, message));
            }
        },
        Route::Offline(meter) => {
            let message =
                format!("ggrok: the tunnel for {host} is offline, reconnecting; try again in a moment");
            return metrics::respond(meter, started, body::text(StatusCode::BAD_GATEWAY, message));
        }
        Route::Unknown => {
            return unrouted(body::text(StatusCode::NOT_FOUND, unknown_host(req.headers(), &host)));
        }
    };
    let to = Routed {
        state: &state,
        daemon,
        session,
        meter,
        conn,
        writes,
        raw_host: &raw_host,
        host: &host,
        started,
    };
    // The tunnel's access rules, before anything is sent through it (upgrades included).
    if let Some(guard) = &guard {
        let policy = state.config().limits.auth_policy();
        let admitted =
            state.access.admit(guard, conn.peer.ip(), &host, req.headers_mut(), &state.metrics, policy).await;
        if let Err(refusal) = admitted {
            return to.respond(refusal);
        }
    }
    let upgrade = if req.method() == Method::CONNECT {
        match req.extensions().get::<hyper::ext::Protocol>() {
            // RFC 8441: an HTTP/2 stream that becomes the upgraded connection once answered 2xx.
            Some(p) => Some(p.as_str().to_owned()),
            None => {
                return to.respond(body::text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "ggrok: CONNECT requests are not forwarded",
                ));
            }
        }
    } else {
        upgrade_protocol(req.headers())
    };
    match upgrade {
        // The tunnel's own protocols: a public client must not open a control stream, nor reach a
        // TCP tunnel of the daemon (past its access rules) by naming its port.
        Some(p)
            if p.eq_ignore_ascii_case(ggrok_proto::CONTROL_PROTOCOL)
                || p.eq_ignore_ascii_case(ggrok_proto::TCP_PROTOCOL) =>
        {
            to.respond(body::text(
                StatusCode::BAD_REQUEST,
                format!("ggrok: upgrading to {p:?} is not allowed"),
            ))
        }
        // Upgrades cross as extended CONNECT, which has no request body: only a bodiless GET can
        // be upgraded. Anything else (a POST offering h2c, say) is forwarded as a plain request,
        // without its Upgrade header, as any proxy that does not speak the protocol would.
        Some(protocol) if req.method() == Method::CONNECT => forward_upgrade(to, req, protocol).await,
        Some(protocol) if is_upgradable(&req, &protocol) => forward_upgrade(to, req, protocol).await,
        _ => forward_plain(to, req).await,
    }
}

/// A request whose tunnel is known.
pub(super) struct Routed<'a> {
    pub(super) state: &'a State,
    /// The daemon that held the host when the request was admitted under its access rules.
    pub(super) daemon: Arc<Daemon>,
    pub(super) session: Arc<Session>,
    meter: Arc<HostMeter>,
    conn: Conn,
    /// The public connection's writes, which pace the answer.
    writes: Arc<Progress>,
    raw_host: &'a str,
    pub(super) host: &'a str,
    started: Instant,
}

impl Routed<'_> {
    /// The answer, counted.
    fn respond<B>(self, resp: Response<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Unpin + Send + Sync + 'static,
        B::Error: Into<BodyError>,
    {
        metrics::respond(self.meter, self.started, resp)
    }
}

fn is_upgradable(req: &Request<Incoming>, protocol: &str) -> bool {
    let headers = req.headers();
    let no_body = !headers.contains_key(header::TRANSFER_ENCODING)
        && headers.get(header::CONTENT_LENGTH).is_none_or(|v| v.as_bytes() == b"0");
    req.method() == Method::GET && no_body && !protocol.eq_ignore_ascii_case("h2c")
}

async fn forward_plain(mut to: Routed<'_>, req: Request<Incoming>) -> Response<Body> {
    let mut permit = match stream_permit(to.state, &to.session, to.conn, to.host) {
        Ok(p) => p,
        Err(refusal) => return to.respond(refusal.into_response()),
    };
    let (mut parts, body) = req.into_parts();
    if let Err(refusal) = prepare(&mut parts, to.conn, to.raw_host, to.state) {
        return to.respond(refusal.into_response());
    }
    // Without a body, the request can be sent again as it is.
    let again = hyper::body::Body::is_end_stream(&body).then(|| Again::of(&parts));
    let meter = to.meter.clone();
    let body = body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            meter.received(data.len());
        }
        frame
    });
    let request = Request::from_parts(parts, body.map_err(BodyError::from).boxed());
    let sent = to.session.send(request).await;
    let sent = match &again {
        Some(again) => {
            resent(&mut to, &mut permit, sent, |s| async move { s.send(again.request()).await }).await
        }
        None => sent,
    };
    match sent {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            parts.version = Version::HTTP_11;
            // The stream counts against the session, and its window against the buffer budget,
            // until its response body is done.
            let body = body.counted(&to.state.budget).map_frame(move |frame| {
                let _held = &permit;
                frame
            });
            let body = Paced::new(body, to.writes.clone(), to.state.budget.clone());
            to.respond(Response::from_parts(parts, body))
        }
        Err(e) => {
            let failed = tunnel_failed(to.host, &e);
            to.respond(failed)
        }
    }
}

async fn forward_upgrade(mut to: Routed<'_>, mut req: Request<Incoming>, protocol: String) -> Response<Body> {
    let mut permit = match stream_permit(to.state, &to.session, to.conn, to.host) {
        Ok(p) => p,
        Err(refusal) => return to.respond(refusal.into_response()),
    };
    let public = hyper::upgrade::on(&mut req);
    let (mut parts, _) = req.into_parts();
    let over_h2 = parts.method == Method::CONNECT;
    if let Err(refusal) = prepare(&mut parts, to.conn, to.raw_host, to.state) {
        return to.respond(refusal.into_response());
    }
    if over_h2 {
        websocket_over_h2::request(&protocol, &mut parts.headers);
    }
    parts.method = Method::CONNECT;
    parts.headers.remove(header::CONTENT_LENGTH);
    let again = Again::of(&parts).with_protocol(&protocol);
    let sent = to.session.upgrade(again.head()).await;
    // An upgrade has no body: it can always be sent again when refused unprocessed.
    let again = &again;
    let sent = resent(&mut to, &mut permit, sent, |s| async move { s.upgrade(again.head()).await }).await;
    let (mut parts, tunnel) = match sent {
        Ok(Ok(upgraded)) => upgraded,
        Ok(Err(resp)) => {
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
            return to.respond(Response::from_parts(parts, body));
        }
        Err(e) => {
            let failed = tunnel_failed(to.host, &e);
            return to.respond(failed);
        }
    };
    let (host, meter) = (to.host.to_owned(), to.meter.clone());
    to.state.public.spawn(async move {
        let _held = permit;
        if let Err(e) = ggrok_proto::tally::splice_with(public, tunnel, PublicTraffic(meter)).await {
            debug!(%host, "upgraded connection ended: {e}");
        }
    });
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::CONTENT_LENGTH);
    if over_h2 {
        // RFC 8441: 200 opens the stream's bytes; no Upgrade, Connection or accept key.
        websocket_over_h2::response(&mut parts.headers);
        parts.status = StatusCode::OK;
        return to.respond(Response::from_parts(parts, body::empty()));
    }
    parts.status = StatusCode::SWITCHING_PROTOCOLS;
    parts.version = Version::HTTP_11;
    parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(value) = HeaderValue::from_str(&protocol) {
        parts.headers.insert(header::UPGRADE, value);
    }
    to.respond(Response::from_parts(parts, body::empty()))
}

/// A WebSocket opened by HTTP/2 extended CONNECT (RFC 8441) reaches the local service as an
/// HTTP/1.1 upgrade, which needs the handshake key HTTP/2 does without: the server makes one up,
/// and drops the local service's answer to it.
mod websocket_over_h2 {
    use base64::Engine as _;
    use http::{HeaderMap, HeaderValue, header};

    pub fn request(protocol: &str, headers: &mut HeaderMap) {
        if protocol.eq_ignore_ascii_case("websocket") && !headers.contains_key(header::SEC_WEBSOCKET_KEY) {
            let nonce: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
            let key = base64::engine::general_purpose::STANDARD.encode(nonce);
            headers.insert(
                header::SEC_WEBSOCKET_KEY,
                HeaderValue::from_str(&key).expect("base64 is a valid value"),
            );
        }
    }

    pub fn response(headers: &mut HeaderMap) {
        headers.remove(header::SEC_WEBSOCKET_ACCEPT);
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

/// A place among the session's streams in flight, or 503 when it has `max_streams_per_session`.
fn stream_permit(
    state: &State,
    session: &Session,
    conn: Conn,
    host: &str,
) -> Result<OwnedSemaphorePermit, Refusal> {
    session.stream_permit().map_err(|_| {
        let max = state.config().limits.max_streams_per_session;
        state.metrics.limit_hit(Limit::MaxStreamsPerSession);
        if let Some(held_back) = state.limit_log.allow(Limit::MaxStreamsPerSession.key()) {
            warn!(peer = %conn.peer, host, held_back, "limit: {max} requests in flight on the tunnel: 503");
        }
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("ggrok: too many requests in flight for {host} (limit {max}); try again shortly"),
        )
    })
}

fn tunnel_failed(host: &str, err: &crate::tunnel::SendError) -> Response<Body> {
    let why = if err.is_offline() { "the tunnel went offline".to_owned() } else { error_chain(err) };
    body::text(StatusCode::BAD_GATEWAY, format!("ggrok: the tunnel for {host} failed: {why}"))
}
