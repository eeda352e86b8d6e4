//! The captured requests as a HAR 1.2 document (<http://www.softwareishard.com/blog/har-12-spec/>),
//! for browsers' developer tools and other HAR readers. Bodies are those captured: a body cut at
//! `inspect_body_limit` is exported cut, with a comment saying so.

use super::store::Entry;
use super::view;
use serde_json::{Value, json};

/// `unix_ms` as an ISO 8601 date-time in UTC, with milliseconds.
pub fn iso8601(unix_ms: u64) -> String {
    let secs = (unix_ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

fn headers(pairs: &[(String, String)]) -> Value {
    Value::Array(pairs.iter().map(|(n, v)| json!({ "name": n, "value": v })).collect())
}

fn header<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn query(path: &str) -> Value {
    let pairs = path.split_once('?').map_or("", |(_, q)| q);
    Value::Array(
        pairs
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (n, v) = p.split_once('=').unwrap_or((p, ""));
                json!({ "name": n, "value": v })
            })
            .collect(),
    )
}

/// One entry of the HAR log.
fn entry(e: &Entry) -> Value {
    let detail = view::detail(e);
    let s = &detail.summary;
    let scheme = e.request_headers.get("x-forwarded-proto").unwrap_or("http");
    let url = format!("{scheme}://{}{}", e.host, e.path);
    let time = s.duration_ms.unwrap_or(0.0);
    let mut request = json!({
        "method": s.method,
        "url": url,
        "httpVersion": "HTTP/1.1",
        "cookies": [],
        "headers": headers(&detail.request.headers),
        "queryString": query(&e.path),
        "headersSize": -1,
        "bodySize": detail.request.body.size,
    });
    let req_body = &detail.request.body;
    if req_body.size > 0 {
        let mime = e.request_headers.get("content-type").unwrap_or("application/octet-stream");
        let text = req_body.text.clone().or_else(|| req_body.base64.clone()).unwrap_or_default();
        let mut post = json!({ "mimeType": mime, "text": text });
        if req_body.base64.is_some() {
            post["comment"] = json!("base64");
        }
        if req_body.truncated {
            post["comment"] = json!(format!("cut at {} of {} bytes", req_body.captured, req_body.size));
        }
        request["postData"] = post;
    }
    let resp_body = &detail.response.body;
    let mut content = json!({
        "size": resp_body.size,
        "mimeType": header(&detail.response.headers, "content-type").unwrap_or("application/octet-stream"),
    });
    if let Some(text) = &resp_body.text {
        content["text"] = json!(text);
    } else if let Some(b64) = &resp_body.base64 {
        content["text"] = json!(b64);
        content["encoding"] = json!("base64");
    }
    if resp_body.truncated {
        content["comment"] = json!(format!("cut at {} of {} bytes", resp_body.captured, resp_body.size));
    }
    let status_text =
        http::StatusCode::from_u16(s.status).ok().and_then(|c| c.canonical_reason()).unwrap_or("");
    let mut har = json!({
        "startedDateTime": iso8601(e.time_ms),
        "time": time,
        "request": request,
        "response": {
            "status": s.status,
            "statusText": status_text,
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": headers(&detail.response.headers),
            "content": content,
            "redirectURL": header(&detail.response.headers, "location").unwrap_or(""),
            "headersSize": -1,
            "bodySize": resp_body.size,
        },
        "cache": {},
        "timings": { "send": 0, "wait": time, "receive": 0 },
    });
    if let Some(of) = s.replay_of {
        har["comment"] = json!(format!("replay of request {of}"));
    }
    har
}

/// `entries` (oldest first) as a HAR 1.2 document.
pub fn document(entries: &[std::sync::Arc<Entry>]) -> Value {
    json!({
        "log": {
            "version": "1.2",
            "creator": { "name": "ggrokd", "version": env!("CARGO_PKG_VERSION") },
            "pages": [],
            "entries": entries.iter().map(|e| entry(e)).collect::<Vec<_>>(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_iso_8601_in_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601(1_796_558_400_000), "2026-12-06T12:00:00.000Z");
    }

    #[test]
    fn query_strings_are_split() {
        assert_eq!(
            query("/a?x=1&y=&z"),
            json!([{"name":"x","value":"1"},{"name":"y","value":""},{"name":"z","value":""}])
        );
        assert_eq!(query("/a"), json!([]));
    }
}
