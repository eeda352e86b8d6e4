//! Requests a daemon's connection refused without processing them (RFC 9113, section 8.7: a
//! graceful GOAWAY that came before their stream, or a `REFUSED_STREAM` reset), as when ggrokd
//! closes a spare connection or shuts down: another connection of the same daemon serves them.
//! Only what can be sent again as it is, is: requests without a body, and upgrades.

use super::proxy::Routed;
use crate::tunnel::SendError;
use crate::tunnel::Session;
use crate::tunnel::registry::Route;
use ggrok_proto::http::{self as body, Body};
use h2::ext::Protocol;
use http::request::Parts;
use http::{Method, Request, Uri, Version};
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;
use tracing::debug;

/// How many times a request refused unprocessed is sent again, each time on another connection.
const MAX_RESENDS: usize = 2;

/// What `sent` answered, or, when the connection refused it unprocessed, what `again` answers on
/// another connection of the daemon (at most [`MAX_RESENDS`] times). `to` and `permit` follow the
/// request to the connection it went to last.
pub(super) async fn resent<T, F>(
    to: &mut Routed<'_>,
    permit: &mut OwnedSemaphorePermit,
    mut sent: Result<T, SendError>,
    again: impl Fn(Arc<Session>) -> F,
) -> Result<T, SendError>
where
    F: Future<Output = Result<T, SendError>>,
{
    let mut refused = Vec::with_capacity(MAX_RESENDS + 1);
    for _ in 0..MAX_RESENDS {
        let Err(e) = &sent else { break };
        if !e.is_unprocessed() {
            break;
        }
        refused.push(to.session.id);
        // Only to the daemon the request was admitted for: one that took the host over since
        // may have other access rules, which this request has not been checked against.
        let Route::Online(now, ..) = to.state.registry.lookup(to.host) else { break };
        if !Arc::ptr_eq(&now, &to.daemon) {
            break;
        }
        let Some(session) = now.pick_other(crate::workers::current(), to.session.id) else { break };
        if refused.contains(&session.id) {
            break;
        }
        let Ok(p) = session.stream_permit() else { break };
        debug!(
            host = to.host,
            refused = to.session.id,
            session = session.id,
            "sending a refused request again: {e}"
        );
        (to.session, *permit) = (session.clone(), p);
        sent = again(session).await;
    }
    sent
}

/// The head of a request that can be sent again: one without a body, or an upgrade.
pub(super) struct Again {
    method: Method,
    uri: Uri,
    headers: http::HeaderMap,
    /// An upgrade's `:protocol`.
    protocol: Option<String>,
}

impl Again {
    pub(super) fn of(parts: &Parts) -> Self {
        Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            protocol: None,
        }
    }

    /// The same, as an extended CONNECT for `protocol`.
    pub(super) fn with_protocol(self, protocol: &str) -> Self {
        Self { protocol: Some(protocol.to_owned()), ..self }
    }

    /// The request again, without a body.
    pub(super) fn request(&self) -> Request<Body> {
        self.head().map(|()| body::empty())
    }

    /// The request's head again.
    pub(super) fn head(&self) -> Request<()> {
        let mut req = Request::new(());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = Version::HTTP_2;
        *req.headers_mut() = self.headers.clone();
        if let Some(protocol) = &self.protocol {
            req.extensions_mut().insert(Protocol::from(protocol.as_str()));
        }
        req
    }
}
