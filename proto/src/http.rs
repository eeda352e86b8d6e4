//! The body type of every message crossing the tunnel, and plain-text error responses.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Why a body stopped short: hyper's error on a public or local connection, the HTTP/2 stream's
/// on the tunnel.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming body: a request's, a response's, or a short text made here.
pub type Body = BoxBody<Bytes, BodyError>;

/// A body with nothing in it.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A plain-text response made by ggrok itself (not by a local service), marked `x-ggrok-error`. The text should say what failed
/// and for which host.
pub fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut message = message.into();
    message.push('\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header("x-ggrok-error", status.as_u16())
        .body(Full::new(Bytes::from(message)).map_err(|never| match never {}).boxed())
        .expect("static response parts are valid")
}

/// A request ggrok answers itself with an error: the status and the sentence for [`text`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status to answer with.
    pub status: StatusCode,
    /// What failed, for whom.
    pub message: String,
}

impl Refusal {
    /// A refusal with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    /// The plain-text response.
    pub fn into_response(self) -> Response<Body> {
        text(self.status, self.message)
    }
}
