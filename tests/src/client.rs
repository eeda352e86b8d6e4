//! Public-side HTTP: requests to the server's address with a chosen `Host`.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::convert::Infallible;
use std::net::SocketAddr;

/// A request body for [`Public`].
pub type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A pooled keep-alive HTTP/1.1 client that sends everything to one server address.
#[derive(Clone)]
pub struct Public {
    addr: SocketAddr,
    client: Client<HttpConnector, Body>,
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (the upstream's echo report).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// A body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never: Infallible| match never {}).boxed()
}

impl Public {
    /// A client for the server at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, client: Client::builder(TokioExecutor::new()).build_http() }
    }

    /// A client for the server at `addr` whose connections come from `local` (another loopback
    /// address such as 127.0.0.2), to play a different client address.
    pub fn from_address(addr: SocketAddr, local: std::net::IpAddr) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(local));
        Self { addr, client: Client::builder(TokioExecutor::new()).build(connector) }
    }

    /// Sends `req` (whose URI is a path) to the server with `Host: host`.
    pub async fn send(&self, host: &str, req: Request<Body>) -> Response<Incoming> {
        self.try_send(host, req).await.unwrap_or_else(|e| panic!("request to {host} failed: {e:?}"))
    }

    /// Like [`Public::send`], with the client's error when the server gave no answer.
    pub async fn try_send(
        &self,
        host: &str,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        *req.uri_mut() = format!("http://{}{}", self.addr, path).parse().unwrap();
        req.headers_mut().insert(header::HOST, host.parse().unwrap());
        self.client.request(req).await
    }

    /// Sends a request and reads the whole response.
    pub async fn fetch(&self, host: &str, req: Request<Body>) -> Reply {
        let (parts, body) = self.send(host, req).await.into_parts();
        let body = body.collect().await.expect("response body").to_bytes();
        Reply { status: parts.status, headers: parts.headers, body }
    }

    /// `GET path` with `Host: host`, read whole.
    pub async fn get(&self, host: &str, path: &str) -> Reply {
        self.fetch(host, Request::builder().method(Method::GET).uri(path).body(full("")).unwrap()).await
    }
}

/// Reads one response with a Content-Length body.
pub async fn read_response(conn: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(
            tokio::io::AsyncReadExt::read(conn, &mut byte).await.unwrap(),
            1,
            "connection closed mid-head"
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0u8; len];
    tokio::io::AsyncReadExt::read_exact(conn, &mut body).await.unwrap();
    (head, body)
}
