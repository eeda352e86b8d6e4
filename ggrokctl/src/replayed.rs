//! `ggrokctl replay ID`: the local service's answer to a replayed request, as text — a status
//! line, the headers, a blank line and the body (text as it is; binary as a size, since a
//! terminal is no place for it: `--json` has it in base64).

use ggrok_proto::ctl::ReplayInfo;

/// The answer to a replay, for people.
pub fn text(r: &ReplayInfo) -> String {
    let reason = http::StatusCode::from_u16(r.status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    let mut out = format!(
        "replayed request {} as {}: {} {} -> {} {reason} in {:.1}ms\n",
        r.replay_of, r.id, r.method, r.path, r.status, r.duration_ms
    );
    for (name, value) in &r.headers {
        out.push_str(&format!("{name}: {value}\n"));
    }
    out.push('\n');
    if r.body_base64 {
        out.push_str(&format!("[{} bytes of binary body; --json has them in base64]\n", r.size));
    } else {
        out.push_str(&r.body);
        if !r.body.is_empty() && !r.body.ends_with('\n') {
            out.push('\n');
        }
    }
    if r.truncated {
        out.push_str(&format!("[cut at {} of {} bytes: inspect_body_limit]\n", r.body.len(), r.size));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_headers_then_body() {
        let mut r = ReplayInfo {
            id: 7,
            replay_of: 3,
            method: "POST".into(),
            path: "/hook".into(),
            status: 201,
            duration_ms: 1.25,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: "made".into(),
            body_base64: false,
            size: 4,
            truncated: false,
        };
        assert_eq!(
            text(&r),
            "replayed request 3 as 7: POST /hook -> 201 Created in 1.2ms\ncontent-type: text/plain\n\nmade\n"
        );
        (r.body_base64, r.truncated, r.size) = (true, true, 1 << 20);
        let t = text(&r);
        assert!(
            t.contains("[1048576 bytes of binary body;") && t.contains("[cut at 4 of 1048576 bytes"),
            "{t}"
        );
    }
}
