//! Replaying a captured request to its tunnel's local service, as it was or edited; the replay
//! is captured as a request of its own, marked with the id it replays.

use super::store::{Arrival, Entry, Side};
use super::view::{self, Detail};
use crate::config::TunnelSpec;
use crate::daemon::Daemon;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, header};
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use std::time::{Duration, Instant};

/// How long a replay may take, answer body included.
pub const REPLAY_TIMEOUT: Duration = Duration::from_secs(60);

/// Changes to make before replaying; what is absent stays as captured.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edits {
    /// Another method.
    pub method: Option<String>,
    /// Another path and query.
    pub path: Option<String>,
    /// Other headers (all of them, in order).
    pub headers: Option<Vec<(String, String)>>,
    /// Another body, as text.
    pub body: Option<String>,
    /// Another body, base64.
    pub body_base64: Option<String>,
}

/// Why a replay did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The inspector is off.
    #[error("the inspector is off (inspect = \"off\" in ggrokd.toml): no request is captured to replay")]
    Off,
    /// No such request kept.
    #[error("no request {0} is kept (it may have been dropped for room, or cleared)")]
    NotFound(u64),
    /// The edits are invalid.
    #[error("{0}")]
    Invalid(String),
    /// The body was not captured whole.
    #[error(
        "request {id}'s body was cut at {captured} of {size} bytes (inspect_body_limit); replaying it would send another request; send the body as an edit"
    )]
    Truncated {
        /// The request.
        id: u64,
        /// Bytes kept.
        captured: usize,
        /// Its size.
        size: u64,
    },
    /// The tunnel is gone.
    #[error("the tunnel {0} is no longer configured")]
    NoTunnel(String),
    /// The local service failed.
    #[error("the local service {local} did not answer: {cause}")]
    Local {
        /// Its address.
        local: String,
        /// What failed.
        cause: String,
    },
}

/// Replays request `id` with `edits`; returns the replay as captured.
pub async fn replay(daemon: &Daemon, id: u64, edits: Edits) -> Result<Detail, ReplayError> {
    if !daemon.inspector.enabled() {
        return Err(ReplayError::Off);
    }
    let store = &daemon.inspector.store;
    let original = store.get(id).ok_or(ReplayError::NotFound(id))?;
    let tunnel =
        daemon.tunnels.get(&original.tunnel).ok_or_else(|| ReplayError::NoTunnel(original.tunnel.clone()))?;
    let (method, path, headers, body) = request_of(&original, edits)?;
    let local = tunnel.spec.local.to_string();
    let entry = store.begin(&Arrival {
        host: &original.host,
        tunnel: &original.tunnel,
        method: method.as_str(),
        path: &path,
        headers: &headers,
        client: None,
        upgrade: None,
        replay_of: Some(id),
    });
    entry.tap(Side::Request, &body);
    let started = Instant::now();
    let mut outgoing = headers;
    if tunnel.spec.rewrite_host
        && let Ok(v) = HeaderValue::from_str(&tunnel.spec.local.authority)
    {
        outgoing.insert(header::HOST, v);
    }
    ggrok_proto::headers::strip_hop_by_hop(&mut outgoing);
    outgoing.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let mut req = Request::builder().method(method).uri(&path).body(Full::new(body)).map_err(|e| {
        let error = format!("invalid request: {e}");
        entry.finished(0, 0, None, Some(error.clone()));
        ReplayError::Invalid(error)
    })?;
    *req.headers_mut() = outgoing;
    let sent = tokio::time::timeout(REPLAY_TIMEOUT, send(&tunnel.spec, req, &entry)).await;
    let outcome = sent.unwrap_or_else(|_| Err(format!("no answer within {}s", REPLAY_TIMEOUT.as_secs())));
    let duration = started.elapsed().as_micros() as u64;
    match outcome {
        Ok(status) => entry.finished(status, duration, None, None),
        Err(cause) => {
            entry.finished(502, duration, None, Some(cause.clone()));
            return Err(ReplayError::Local { local, cause });
        }
    }
    Ok(view::detail(&entry))
}

/// `detail`, a replay, as `ggrokctl replay` shows it.
pub fn info(detail: &Detail) -> ggrok_proto::ctl::ReplayInfo {
    let body = &detail.response.body;
    let (text, base64) = match (&body.text, &body.base64) {
        (Some(text), _) => (text.clone(), false),
        (None, Some(b64)) => (b64.clone(), true),
        (None, None) => (String::new(), false),
    };
    ggrok_proto::ctl::ReplayInfo {
        id: detail.summary.id,
        replay_of: detail.summary.replay_of.unwrap_or(0),
        method: detail.summary.method.clone(),
        path: detail.summary.path.clone(),
        status: detail.summary.status,
        duration_ms: detail.summary.duration_ms.unwrap_or(0.0),
        headers: detail.response.headers.clone(),
        body: text,
        body_base64: base64,
        size: body.size,
        truncated: body.truncated,
    }
}

/// Method, path, headers and body of `original` after `edits`.
fn request_of(original: &Entry, edits: Edits) -> Result<(Method, String, HeaderMap, Bytes), ReplayError> {
    let invalid = |what: String| ReplayError::Invalid(what);
    let method = edits.method.as_deref().unwrap_or(&original.method);
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| invalid(format!("invalid method {method:?}")))?;
    let path = edits.path.unwrap_or_else(|| original.path.clone());
    if !path.starts_with('/') || path.parse::<http::Uri>().is_err() {
        return Err(invalid(format!("invalid path {path:?}: it must start with /")));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in edits.headers.unwrap_or_else(|| original.request_headers.pairs()) {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("invalid header name {name:?}")))?;
        let value =
            HeaderValue::from_str(&value).map_err(|_| invalid(format!("invalid value for header {name}")))?;
        headers.append(name, value);
    }
    let body = match (edits.body, edits.body_base64) {
        (Some(text), None) => Bytes::from(text),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map(Bytes::from)
            .map_err(|e| invalid(format!("body_base64: {e}")))?,
        (Some(_), Some(_)) => return Err(invalid("give body or body_base64, not both".into())),
        (None, None) => {
            let live = original.live.lock().expect("entry lock");
            let copy = &live.request_body;
            if copy.truncated {
                return Err(ReplayError::Truncated {
                    id: original.id,
                    captured: copy.data.len(),
                    size: copy.size,
                });
            }
            copy.bytes()
        }
    };
    Ok((method, path, headers, body))
}

/// Sends `req` to `local` over a connection of its own and captures the answer into `entry`;
/// returns its status.
async fn send(spec: &TunnelSpec, req: Request<Full<Bytes>>, entry: &Entry) -> Result<u16, String> {
    let resp =
        crate::local::send_once(spec, req).await.map_err(|e| ggrok_proto::headers::error_chain(&*e))?;
    let status = resp.status().as_u16();
    entry.answered(status, resp.headers());
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ggrok_proto::headers::error_chain(&e))?;
        if let Some(data) = frame.data_ref() {
            entry.tap(Side::Response, data);
        }
    }
    Ok(status)
}
