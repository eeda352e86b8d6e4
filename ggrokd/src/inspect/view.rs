//! The JSON the inspector's API answers with (and its page reads): a summary per request for the
//! list, the detail of one, and the filters of the list.

use super::store::{BodyCopy, Entry, Live};
use base64::Engine;
use serde::Serialize;

/// One request in the list.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Its id.
    pub id: u64,
    /// Unix time (ms) it arrived.
    pub time_ms: u64,
    /// Public host.
    pub host: String,
    /// The tunnel it went to (a host or pattern).
    pub tunnel: String,
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The answer's status; 0 while unknown.
    pub status: u16,
    /// From arrival to the end of the answer; none while in flight.
    pub duration_ms: Option<f64>,
    /// Request body bytes (for an upgraded connection: bytes from the public client).
    pub request_size: u64,
    /// Answer body bytes (for an upgraded connection: bytes to the public client).
    pub response_size: u64,
    /// The public client's address.
    pub client: Option<String>,
    /// The upgrade protocol (`websocket`).
    pub upgrade: Option<String>,
    /// The id of the request this one replayed.
    pub replay_of: Option<u64>,
    /// `in_flight` or `done`.
    pub state: &'static str,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// A body as the API shows it.
#[derive(Debug, Serialize)]
pub struct BodyView {
    /// Its whole size.
    pub size: u64,
    /// Bytes kept (the first ones).
    pub captured: usize,
    /// Whether bytes beyond the limit were left out.
    pub truncated: bool,
    /// The bytes kept as text, when they are UTF-8.
    pub text: Option<String>,
    /// The bytes kept, base64, when they are not UTF-8.
    pub base64: Option<String>,
}

/// Headers and body of one side.
#[derive(Debug, Serialize)]
pub struct Message {
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: BodyView,
}

/// One request in full.
#[derive(Debug, Serialize)]
pub struct Detail {
    /// What the list shows.
    #[serde(flatten)]
    pub summary: Summary,
    /// The request.
    pub request: Message,
    /// The answer.
    pub response: Message,
}

/// A summary of `entry` with `live` (its state now).
pub fn summary(entry: &Entry, live: &Live) -> Summary {
    let (request_size, response_size) =
        live.upgraded_bytes.unwrap_or((live.request_body.size, live.response_body.size));
    Summary {
        id: entry.id,
        time_ms: entry.time_ms,
        host: entry.host.clone(),
        tunnel: entry.tunnel.clone(),
        method: entry.method.clone(),
        path: entry.path.clone(),
        status: live.status,
        duration_ms: live.duration_us.map(|us| us as f64 / 1000.0),
        request_size,
        response_size,
        client: entry.client.map(|c| c.to_string()),
        upgrade: entry.upgrade.clone(),
        replay_of: entry.replay_of,
        state: if live.duration_us.is_some() { "done" } else { "in_flight" },
        error: live.error.clone(),
    }
}

/// `body` as the API shows it.
pub fn body(body: &BodyCopy) -> BodyView {
    let (text, base64) = match std::str::from_utf8(&body.data) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(e) if body.truncated && e.error_len().is_none() => {
            // Cut inside a character at the limit: the text up to it.
            let valid = &body.data[..e.valid_up_to()];
            (Some(String::from_utf8_lossy(valid).into_owned()), None)
        }
        Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(&body.data))),
    };
    BodyView { size: body.size, captured: body.data.len(), truncated: body.truncated, text, base64 }
}

/// `entry` in full.
pub fn detail(entry: &Entry) -> Detail {
    let live = entry.live.lock().expect("entry lock").clone();
    Detail {
        summary: summary(entry, &live),
        request: Message { headers: entry.request_headers.pairs(), body: body(&live.request_body) },
        response: Message { headers: live.response_headers.pairs(), body: body(&live.response_body) },
    }
}

/// The list's filters: `host`, `status` (`404`, or a class `4xx`), `method`, `q` (text in the
/// path), `limit` (the newest N).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct Filter {
    /// Host, exactly (case-insensitive).
    pub host: Option<String>,
    /// A status (`404`) or a class (`4xx`).
    pub status: Option<String>,
    /// Method (case-insensitive).
    pub method: Option<String>,
    /// Text the path contains.
    pub q: Option<String>,
    /// At most this many, the newest.
    pub limit: Option<usize>,
}

impl Filter {
    /// Whether `s` passes.
    pub fn keeps(&self, s: &Summary) -> bool {
        let host = self.host.as_deref().is_none_or(|h| h.is_empty() || h.eq_ignore_ascii_case(&s.host));
        let method = self.method.as_deref().is_none_or(|m| m.is_empty() || m.eq_ignore_ascii_case(&s.method));
        let q = self.q.as_deref().is_none_or(|q| s.path.contains(q));
        let status = match self.status.as_deref().map(str::trim) {
            None | Some("") => true,
            Some(class) if class.len() == 3 && class[1..].eq_ignore_ascii_case("xx") => {
                class.as_bytes()[0] == b'0' + (s.status / 100) as u8 && s.status != 0
            }
            Some(exact) => exact.parse::<u16>().is_ok_and(|n| n == s.status),
        };
        host && method && q && status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(status: u16, method: &str, path: &str) -> Summary {
        Summary {
            id: 1,
            time_ms: 0,
            host: "a.test".into(),
            tunnel: "a.test".into(),
            method: method.into(),
            path: path.into(),
            status,
            duration_ms: None,
            request_size: 0,
            response_size: 0,
            client: None,
            upgrade: None,
            replay_of: None,
            state: "done",
            error: None,
        }
    }

    #[test]
    fn filters_by_host_status_class_method_and_text() {
        let f = |q: &str| -> Filter { serde_json::from_str(q).unwrap() };
        assert!(f(r#"{"status":"4xx"}"#).keeps(&s(404, "GET", "/")));
        assert!(!f(r#"{"status":"4xx"}"#).keeps(&s(500, "GET", "/")));
        assert!(f(r#"{"status":"404"}"#).keeps(&s(404, "GET", "/")));
        assert!(!f(r#"{"status":"2xx"}"#).keeps(&s(0, "GET", "/")));
        assert!(f(r#"{"method":"post"}"#).keeps(&s(200, "POST", "/")));
        assert!(f(r#"{"q":"hook"}"#).keeps(&s(200, "POST", "/webhook?x=1")));
        assert!(!f(r#"{"host":"b.test"}"#).keeps(&s(200, "POST", "/")));
        assert!(f(r#"{"host":"A.test"}"#).keeps(&s(200, "POST", "/")));
    }

    #[test]
    fn text_bodies_are_text_and_binary_base64() {
        let copy = |data: &[u8], truncated| BodyCopy { data: data.into(), size: 99, truncated };
        assert_eq!(body(&copy(b"{\"a\":1}", false)).text.as_deref(), Some("{\"a\":1}"));
        let binary = body(&copy(&[0xff, 0x00, 0x10], false));
        assert_eq!((binary.text, binary.base64.as_deref()), (None, Some("/wAQ")));
        let cut = body(&copy("é".as_bytes()[..1].as_ref(), true));
        assert_eq!(cut.text.as_deref(), Some(""), "a character cut at the limit");
    }
}
