//! The inspector's JSON API, which its page uses too:
//!
//! - `GET /api/requests?host=&status=&method=&q=&limit=`: the newest first, `{"requests": [...],
//!   "dropped": N}` (dropped: requests let go for room since the last clear);
//! - `GET /api/requests/ID`: one, with headers and captured bodies;
//! - `GET /api/requests/ID/request/body`, `…/response/body`: a captured body as it was, with its
//!   `Content-Type` (for images);
//! - `POST /api/requests/ID/replay`: replay it to the local service, as is or with edits
//!   (`{"method", "path", "headers": [[name, value]], "body" | "body_base64"}`); answers the replay;
//! - `DELETE /api/requests`: forget every request;
//! - `GET /api/har`: a HAR 1.2 export;
//! - `GET /api/events`: server-sent events, `event: request` with a summary when a request
//!   arrives or changes, `event: clear` when the list is cleared.

use super::replay::{self, Edits, ReplayError};
use super::view::{self, Filter, Summary};
use super::{har, store::Side};
use crate::daemon::Daemon;
use bytes::Bytes;
use ggrok_proto::http::{self as body, Body};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use std::sync::Arc;

/// The largest replay edit accepted (a body of up to 16 MiB, base64).
const MAX_EDIT: usize = 24 << 20;

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let text = serde_json::to_vec(value).expect("views serialise");
    let mut resp = Response::new(Full::new(Bytes::from(text)).map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message.into() }))
}

/// Summaries of the kept requests that `filter` keeps, newest first.
pub fn list(daemon: &Daemon, filter: &Filter) -> (Vec<Summary>, u64) {
    let (entries, dropped) = daemon.inspector.store.all();
    let mut out: Vec<Summary> = entries
        .iter()
        .rev()
        .map(|e| view::summary(e, &e.live.lock().expect("entry lock")))
        .filter(|s| filter.keeps(s))
        .collect();
    if let Some(limit) = filter.limit {
        out.truncate(limit);
    }
    (out, dropped)
}

/// Answers `req`, whose path starts with `/api/`.
pub async fn answer(daemon: &Arc<Daemon>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let parts: Vec<&str> = path.trim_start_matches("/api/").split('/').collect();
    let store = &daemon.inspector.store;
    let id = |s: &str| s.parse::<u64>().ok();
    match (req.method().clone(), parts.as_slice()) {
        (Method::GET, ["requests"]) => {
            let filter: Filter = match filter_from_query(req.uri().query().unwrap_or("")) {
                Ok(f) => f,
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            let (requests, dropped) = list(daemon, &filter);
            json(StatusCode::OK, &serde_json::json!({ "requests": requests, "dropped": dropped }))
        }
        (Method::DELETE, ["requests"]) => {
            store.clear();
            Response::builder().status(StatusCode::NO_CONTENT).body(body::empty()).expect("valid")
        }
        (Method::GET, ["requests", n]) => match id(n).and_then(|n| store.get(n)) {
            Some(entry) => json(StatusCode::OK, &view::detail(&entry)),
            None => error(StatusCode::NOT_FOUND, format!("no request {n} is kept")),
        },
        (Method::GET, ["requests", n, side @ ("request" | "response"), "body"]) => {
            let Some(entry) = id(n).and_then(|n| store.get(n)) else {
                return error(StatusCode::NOT_FOUND, format!("no request {n} is kept"));
            };
            let side = if *side == "request" { Side::Request } else { Side::Response };
            raw_body(&entry, side)
        }
        (Method::POST, ["requests", n, "replay"]) => {
            let Some(n) = id(n) else { return error(StatusCode::NOT_FOUND, format!("no request {n}")) };
            let edits = match Limited::new(req.into_body(), MAX_EDIT).collect().await.map(|b| b.to_bytes()) {
                Ok(b) if b.is_empty() => Edits::default(),
                Ok(b) => match serde_json::from_slice(&b) {
                    Ok(edits) => edits,
                    Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid edits: {e}")),
                },
                Err(e) => return error(StatusCode::PAYLOAD_TOO_LARGE, format!("edits: {e}")),
            };
            match replay::replay(daemon, n, edits).await {
                Ok(detail) => json(StatusCode::OK, &detail),
                Err(e @ (ReplayError::NotFound(_) | ReplayError::Off)) => {
                    error(StatusCode::NOT_FOUND, e.to_string())
                }
                Err(e @ (ReplayError::Invalid(_) | ReplayError::NoTunnel(_))) => {
                    error(StatusCode::BAD_REQUEST, e.to_string())
                }
                Err(e @ ReplayError::Truncated { .. }) => error(StatusCode::CONFLICT, e.to_string()),
                Err(e @ ReplayError::Local { .. }) => error(StatusCode::BAD_GATEWAY, e.to_string()),
            }
        }
        (Method::GET, ["har"]) => {
            let (entries, _) = store.all();
            let mut resp = json(StatusCode::OK, &har::document(&entries));
            resp.headers_mut().insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"ggrok.har\""),
            );
            resp
        }
        (Method::GET, ["events"]) => events(daemon),
        (_, ["requests" | "har" | "events", ..]) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, format!("no such API: {path}")),
    }
}

/// The query string as a [`Filter`].
fn filter_from_query(query: &str) -> Result<Filter, String> {
    let mut filter = Filter::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = value.into_owned();
        match key.as_ref() {
            "host" => filter.host = Some(value),
            "status" => filter.status = Some(value),
            "method" => filter.method = Some(value),
            "q" => filter.q = Some(value),
            "limit" => {
                filter.limit = Some(value.parse().map_err(|_| format!("limit: {value:?} is not a number"))?)
            }
            other => return Err(format!("unknown filter {other:?}: use host, status, method, q or limit")),
        }
    }
    Ok(filter)
}

/// A captured body as it was, with its content type; sandboxed, never sniffed.
fn raw_body(entry: &super::Entry, side: Side) -> Response<Body> {
    let live = entry.live.lock().expect("entry lock");
    let (bytes, headers) = match side {
        Side::Request => (live.request_body.bytes(), &entry.request_headers),
        Side::Response => (live.response_body.bytes(), &live.response_headers),
    };
    let content_type = headers
        .get("content-type")
        .and_then(|v| HeaderValue::from_str(v).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut resp = Response::new(Full::new(bytes).map_err(|never| match never {}).boxed());
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'; img-src 'self'"),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

/// Server-sent events: each request as it arrives or changes.
fn events(daemon: &Arc<Daemon>) -> Response<Body> {
    let receiver = daemon.inspector.store.subscribe();
    let daemon = daemon.clone();
    let stream =
        futures_util::stream::unfold((receiver, daemon, true), |(mut rx, daemon, first)| async move {
            if first {
                // Tells the page the stream is up (and makes the browser show it at once).
                let hello = Bytes::from_static(b"retry: 1000\nevent: hello\ndata: {}\n\n");
                return Some((Ok::<_, std::convert::Infallible>(Frame::data(hello)), (rx, daemon, false)));
            }
            let text = match rx.recv().await {
                Ok(0) => "event: clear\ndata: {}\n\n".to_owned(),
                Ok(id) => match daemon.inspector.store.get(id) {
                    Some(e) => {
                        let summary = view::summary(&e, &e.live.lock().expect("entry lock"));
                        format!(
                            "event: request\ndata: {}\n\n",
                            serde_json::to_string(&summary).expect("serialises")
                        )
                    }
                    None => ": gone\n\n".to_owned(),
                },
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    format!("event: lagged\ndata: {{\"missed\":{n}}}\n\n")
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok(Frame::data(Bytes::from(text))), (rx, daemon, false)))
        });
    let mut resp = Response::new(StreamBody::new(stream).map_err(|never| match never {}).boxed());
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_into_filters() {
        let f = filter_from_query("host=a.test&status=4xx&method=post&q=%2Fhook+x&limit=5").unwrap();
        assert_eq!(
            (f.host.as_deref(), f.status.as_deref(), f.method.as_deref(), f.q.as_deref(), f.limit),
            (Some("a.test"), Some("4xx"), Some("post"), Some("/hook x"), Some(5))
        );
        assert!(filter_from_query("colour=red").unwrap_err().contains("unknown filter"));
        assert!(filter_from_query("limit=x").is_err());
        assert_eq!(filter_from_query("q=100%").unwrap().q.as_deref(), Some("100%"));
        assert_eq!(filter_from_query("q=%zz%41").unwrap().q.as_deref(), Some("%zzA"));
    }
}
