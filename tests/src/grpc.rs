//! gRPC with tonic's own client and server halves, without code generation: a codec that passes
//! messages as raw bytes, and an `Echo` service written by hand, served over h2c (HTTP/2 with
//! prior knowledge) as a gRPC server without TLS is. The client sends over any HTTP/2 connection
//! (through ggrok's TLS listener in the tests).
//!
//! Methods of `/ggrok.test.Echo/`:
//! - `Unary`: answers the message, upper-cased;
//! - `Count`: server streaming, answers `N` messages `0`..`N-1` for the decimal `N` it gets;
//! - `Chat`: bidirectional, answers each message as it comes, prefixed with `echo: `;
//! - `Fail`: answers status `NOT_FOUND` with the message as its text (in the trailers).

use bytes::{Buf, BufMut, Bytes};
use futures_util::{Stream, StreamExt};
use http::uri::PathAndQuery;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::net::TcpListener;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder, Streaming};
use tonic::{Request, Response, Status};

/// Messages as raw bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

type BoxStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

/// `Unary` and `Fail`.
#[derive(Clone)]
struct Unary {
    fail: bool,
}

impl tower_service::Service<Request<Bytes>> for Unary {
    type Response = Response<Bytes>;
    type Error = Status;
    type Future = Ready<Result<Response<Bytes>, Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let text = String::from_utf8_lossy(req.get_ref()).into_owned();
        ready(if self.fail {
            Err(Status::not_found(text))
        } else {
            Ok(Response::new(text.to_uppercase().into()))
        })
    }
}

/// `Count`.
#[derive(Clone)]
struct Count;

impl tower_service::Service<Request<Bytes>> for Count {
    type Response = Response<BoxStream>;
    type Error = Status;
    type Future = Ready<Result<Response<BoxStream>, Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let n: u32 = String::from_utf8_lossy(req.get_ref()).parse().unwrap_or(0);
        let stream = futures_util::stream::iter((0..n).map(|i| Ok(Bytes::from(i.to_string()))));
        ready(Ok(Response::new(Box::pin(stream) as BoxStream)))
    }
}

/// `Chat`.
#[derive(Clone)]
struct Chat;

impl tower_service::Service<Request<Streaming<Bytes>>> for Chat {
    type Response = Response<BoxStream>;
    type Error = Status;
    type Future = Ready<Result<Response<BoxStream>, Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Streaming<Bytes>>) -> Self::Future {
        let answers = req.into_inner().map(|m| {
            m.map(|m| {
                let mut answer = b"echo: ".to_vec();
                answer.put_slice(&m);
                Bytes::from(answer)
            })
        });
        ready(Ok(Response::new(Box::pin(answers) as BoxStream)))
    }
}

async fn route(req: http::Request<Incoming>) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let mut grpc = tonic::server::Grpc::new(RawCodec);
    Ok(match req.uri().path() {
        "/ggrok.test.Echo/Unary" => grpc.unary(Unary { fail: false }, req).await,
        "/ggrok.test.Echo/Fail" => grpc.unary(Unary { fail: true }, req).await,
        "/ggrok.test.Echo/Count" => grpc.server_streaming(Count, req).await,
        "/ggrok.test.Echo/Chat" => grpc.streaming(Chat, req).await,
        _ => Status::unimplemented("no such method").into_http(),
    })
}

/// A gRPC server over h2c on 127.0.0.1:0, serving on the current runtime; its address.
pub async fn serve_h2c() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(route);
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service);
            tokio::spawn(conn);
        }
    });
    addr
}

/// An HTTP/2 connection as the service tonic's client sends on.
#[derive(Clone)]
pub struct Channel(pub SendRequest<tonic::body::Body>);

impl tower_service::Service<http::Request<tonic::body::Body>> for Channel {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

/// A gRPC client for the `Echo` service at `origin` (`https://host:port`: the `:authority`).
pub struct EchoClient(tonic::client::Grpc<Channel>);

impl EchoClient {
    /// A client sending on `sender`.
    pub fn new(sender: SendRequest<tonic::body::Body>, origin: &str) -> Self {
        Self(tonic::client::Grpc::with_origin(Channel(sender), origin.parse().unwrap()))
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.0.ready().await.map_err(|e| Status::unavailable(e.to_string()))
    }

    /// `Unary`, or `Fail` with `fail`.
    pub async fn unary(&mut self, message: &str, fail: bool) -> Result<String, Status> {
        self.ready().await?;
        let path = if fail { "/ggrok.test.Echo/Fail" } else { "/ggrok.test.Echo/Unary" };
        let message = Bytes::copy_from_slice(message.as_bytes());
        let answer = self.0.unary(Request::new(message), PathAndQuery::from_static(path), RawCodec).await?;
        Ok(String::from_utf8_lossy(answer.get_ref()).into_owned())
    }

    /// `Count`: the messages of the answer.
    pub async fn count(&mut self, n: u32) -> Result<Vec<String>, Status> {
        self.ready().await?;
        let path = PathAndQuery::from_static("/ggrok.test.Echo/Count");
        let answer =
            self.0.server_streaming(Request::new(Bytes::from(n.to_string())), path, RawCodec).await?;
        collect(answer.into_inner()).await
    }

    /// `Chat`: sends `messages` one by one, each after the answer to the one before.
    pub async fn chat(&mut self, messages: &[&str]) -> Result<Vec<String>, Status> {
        self.ready().await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let outgoing =
            futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        let path = PathAndQuery::from_static("/ggrok.test.Echo/Chat");
        let mut answers = Vec::new();
        tx.send(Bytes::copy_from_slice(messages[0].as_bytes())).await.unwrap();
        let mut incoming = self.0.streaming(Request::new(outgoing), path, RawCodec).await?.into_inner();
        for next in messages.iter().skip(1).map(Some).chain([None]) {
            let answer =
                incoming.message().await?.ok_or_else(|| Status::internal("the stream ended early"))?;
            answers.push(String::from_utf8_lossy(&answer).into_owned());
            match next {
                Some(m) => tx.send(Bytes::copy_from_slice(m.as_bytes())).await.unwrap(),
                None => break,
            }
        }
        drop(tx);
        if let Some(extra) = incoming.message().await? {
            return Err(Status::internal(format!("unexpected message {extra:?}")));
        }
        Ok(answers)
    }
}

async fn collect(mut stream: Streaming<Bytes>) -> Result<Vec<String>, Status> {
    let mut all = Vec::new();
    while let Some(m) = stream.message().await? {
        all.push(String::from_utf8_lossy(&m).into_owned());
    }
    Ok(all)
}
