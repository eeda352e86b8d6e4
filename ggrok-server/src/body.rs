//! The body type every response and tunnelled request uses, and plain-text error responses.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// A streaming body: a public request's, a tunnel response's, or a short text.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// A body with nothing in it.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A plain-text response made by ggrok itself (not by a tunnel). The text should say what failed
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
