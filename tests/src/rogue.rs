//! A hand-made tunnel client that speaks as much of the protocol as a test wants and then
//! misbehaves: the WebSocket handshake with a token, HTTP/2 as the server, and the raw control
//! stream.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Connects to the server's tunnel endpoint with `token` and returns the raw control stream the
/// server opens, once it is open.
pub async fn control_stream(server: SocketAddr, token: &str) -> Upgraded {
    let ws = websocket(server, token).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let tx = tx.clone();
            async move {
                if req.method() == http::Method::CONNECT {
                    let upgrade = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        if let Ok(stream) = upgrade.await {
                            let _ = tx.send(stream);
                        }
                    });
                    return Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()));
                }
                Ok(Response::builder().status(StatusCode::NO_CONTENT).body(Empty::new()).unwrap())
            }
        });
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .enable_connect_protocol()
            .serve_connection(TokioIo::new(ggrok_proto::wsio::ws_io(ws)), service)
            .await;
    });
    rx.recv().await.expect("the server opened no control stream")
}

/// The WebSocket to the tunnel endpoint, authenticated with `token`.
pub async fn websocket(server: SocketAddr, token: &str) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let mut request = format!("ws://{server}/$$ggrok").into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request.headers_mut().insert("ggrok-protocol", "1".parse().unwrap());
    let tcp = TcpStream::connect(server).await.unwrap();
    tokio_tungstenite::client_async(request, tcp).await.expect("tunnel handshake").0
}
