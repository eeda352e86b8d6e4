//! 421 Misdirected Request. A browser reuses an HTTPS connection for another host when the
//! certificate it was shown covers that host too (HTTP/2 connection coalescing, RFC 9113 §9.1.1);
//! a request for a host that certificate does not cover reached the server on a connection meant
//! for another name, and gets 421, which tells the client to open a new connection for it. A
//! connection without SNI (a client that dialled an address) is not checked: its client named no
//! host to check against.

use super::proxy::host_of;
use crate::tls::Certificates;
use ggrok_proto::host::normalize_host;
use ggrok_proto::http::{self as body, Body};
use http::{Request, Response, StatusCode};

/// The 421 answer when `req`'s host is not covered by the certificate presented for `sni`.
pub fn check<B>(certificates: &Certificates, sni: &str, req: &Request<B>) -> Option<Response<Body>> {
    // A missing or invalid host is the router's to answer (400).
    let host = host_of(req).and_then(|h| normalize_host(&h).ok())?;
    if host.eq_ignore_ascii_case(sni.trim_end_matches('.')) || certificates.covers(sni, &host) {
        return None;
    }
    Some(body::text(
        StatusCode::MISDIRECTED_REQUEST,
        format!(
            "ggrok: this connection was opened for {sni}, whose certificate does not cover {host}; \
             send the request on a connection of its own"
        ),
    ))
}
