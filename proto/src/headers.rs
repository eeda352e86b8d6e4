//! Header handling shared by both ends of the tunnel.

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

/// Headers that describe one hop of an HTTP/1.1 connection and must not be forwarded (RFC 9110 §7.6.1).
/// (`Trailer` is end-to-end: it names the trailer fields, which hyper only sends when listed.)
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers, the headers named in `Connection`, and `Upgrade` (which crosses the
/// tunnel as the extended CONNECT `:protocol` instead). `TE: trailers`, the one value that says
/// something end to end (the client accepts trailers), is kept.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let accepts_trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
    if accepts_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Gives every header value a buffer of its own, for headers about to be HPACK-encoded.
///
/// hyper parses header values as slices of the connection's read buffer, which grows to 400 KiB
/// while a large body streams through, and HPACK's dynamic table keeps the values it indexes (a
/// new `Date` every second) for as long as the tunnel connection lives. Each indexed slice kept a
/// whole read buffer alive: ggrokd grew by about 0.4 MiB every 80 downloads of 8 MiB, until the
/// table would have held tens of MiB. A copy of a few short values costs far less.
pub fn detach_values(headers: &mut HeaderMap) {
    for value in headers.values_mut() {
        let mut own = HeaderValue::from_bytes(value.as_bytes()).expect("a valid value stays valid");
        own.set_sensitive(value.is_sensitive());
        *value = own;
    }
}

/// The protocol a request asks to upgrade to (`websocket`), if it is a valid upgrade request:
/// `Connection` lists `upgrade` and `Upgrade` names a protocol.
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<String> {
    let wants_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if !wants_upgrade {
        return None;
    }
    let protocol = headers.get(header::UPGRADE)?.to_str().ok()?.trim();
    (!protocol.is_empty()).then(|| protocol.to_owned())
}

/// An error with all its causes, `outer: inner: root`, for messages people read.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_values_keep_no_part_of_the_buffer_they_were_parsed_from() {
        let read_buffer = bytes::Bytes::from(b"Date: Wed, 25 Nov 2026 01:02:03 GMTsecret".repeat(10_000));
        let slice = |range| HeaderValue::from_maybe_shared(read_buffer.slice(range)).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::DATE, slice(6..35));
        let mut token = slice(35..41);
        token.set_sensitive(true);
        headers.append(header::AUTHORIZATION, token);
        assert!(!read_buffer.is_unique(), "the values share the read buffer");
        detach_values(&mut headers);
        assert!(read_buffer.is_unique(), "a value still holds the read buffer");
        assert_eq!(headers[header::DATE], "Wed, 25 Nov 2026 01:02:03 GMT");
        assert_eq!(headers[header::AUTHORIZATION], "secret");
        assert!(headers[header::AUTHORIZATION].is_sensitive());
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("te", "gzip, trailers"),
            ("upgrade", "websocket"),
            ("trailer", "x-checksum"),
            ("x-kept", "a"),
            ("x-kept", "b"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 4, "{h:?}");
        assert_eq!(h.get_all("x-kept").iter().count(), 2);
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["trailer"], "x-checksum");
    }

    #[test]
    fn detects_upgrade_requests() {
        let h = map(&[("connection", "keep-alive, Upgrade"), ("upgrade", "websocket")]);
        assert_eq!(upgrade_protocol(&h).as_deref(), Some("websocket"));
        assert_eq!(upgrade_protocol(&map(&[("upgrade", "websocket")])), None);
        assert_eq!(upgrade_protocol(&map(&[("connection", "upgrade")])), None);
    }

    #[test]
    fn error_chain_lists_causes_once() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let outer = std::io::Error::other(inner);
        assert_eq!(error_chain(&outer), "connection refused");
    }
}
