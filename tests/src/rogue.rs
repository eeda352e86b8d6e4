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

/// What a [`connection`] does with the public requests it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answers {
    /// Resets each with `REFUSED_STREAM` (as a connection going away does): unprocessed.
    Refuse,
    /// Answers 204 to plain requests and accepts upgrades, echoing their bytes.
    Serve,
}

/// One connection of a hand-made daemon `daemon` (its id), number `index`, claiming `host` with
/// `token` and answering public requests as `answers` says; returns, once the host is claimed, the
/// count of requests it has had (the control stream's excepted).
pub async fn connection(
    server: SocketAddr,
    token: &str,
    daemon: &str,
    index: u32,
    host: &str,
    answers: Answers,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use futures_util::{SinkExt, StreamExt};
    use ggrok_proto::control::{ClientCodec, ClientMessage, ServerMessage, TunnelKey};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut request = format!("ws://{server}/$$ggrok").into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    headers.insert(ggrok_proto::HEADER_PROTOCOL, ggrok_proto::PROTOCOL_VERSION.into());
    let tcp = TcpStream::connect(server).await.unwrap();
    let ws = tokio_tungstenite::client_async(request, tcp).await.expect("tunnel handshake").0;
    let mut h2 = h2::server::Builder::new()
        .enable_connect_protocol()
        .handshake::<_, Bytes>(ggrok_proto::wsio::ws_io(ws))
        .await
        .expect("HTTP/2 handshake");
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = seen.clone();
    let claimed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let serving = claimed.clone();
    let (control_tx, control_rx) = tokio::sync::oneshot::channel();
    let mut control_tx = Some(control_tx);
    tokio::spawn(async move {
        while let Some(Ok((req, mut respond))) = h2.accept().await {
            let protocol = req.extensions().get::<h2::ext::Protocol>().map(|p| p.as_str().to_owned());
            if protocol.as_deref() == Some(ggrok_proto::CONTROL_PROTOCOL) {
                let Ok(send) = respond.send_response(Response::new(()), false) else { continue };
                if let Some(tx) = control_tx.take() {
                    let _ = tx.send((send, req.into_body()));
                }
                continue;
            }
            // Before the claim, what the server asks is not a public request: answered.
            let answers = if serving.load(Ordering::SeqCst) { answers } else { Answers::Serve };
            if serving.load(Ordering::SeqCst) {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            match answers {
                Answers::Refuse => respond.send_reset(h2::Reason::REFUSED_STREAM),
                Answers::Serve if req.method() == http::Method::CONNECT => {
                    let Ok(send) = respond.send_response(Response::new(()), false) else { continue };
                    let mut io = ggrok_proto::h2io::StreamIo::new(send, req.into_body());
                    tokio::spawn(async move {
                        let (mut from, mut to) = tokio::io::split(&mut io);
                        let _ = tokio::io::copy(&mut from, &mut to).await;
                    });
                }
                Answers::Serve => {
                    let answer = Response::builder().status(StatusCode::NO_CONTENT).body(()).unwrap();
                    let _ = respond.send_response(answer, true);
                }
            }
        }
    });
    let (send, recv) = control_rx.await.expect("the control stream");
    let io = ggrok_proto::h2io::StreamIo::new(send, recv);
    let mut control = tokio_util::codec::Framed::new(io, ClientCodec::default());
    let version = match control.next().await {
        Some(Ok(ServerMessage::Hello { version, .. })) => version,
        other => panic!("no hello: {other:?}"),
    };
    let hello = ClientMessage::Hello {
        version,
        agent: "rogue".into(),
        daemon: Some(daemon.into()),
        connection: Some(index),
    };
    control.send(hello).await.unwrap();
    let tunnel = TunnelKey::Http { host: host.into() };
    let claim = ClientMessage::Claim { tunnel: tunnel.clone(), takeover: false, access: Default::default() };
    control.send(claim).await.unwrap();
    loop {
        match control.next().await {
            Some(Ok(ServerMessage::Claimed { tunnel: claimed, .. })) if claimed == tunnel => break,
            Some(Ok(_)) => {}
            other => panic!("{host} not claimed: {other:?}"),
        }
    }
    claimed.store(true, Ordering::SeqCst);
    // The control stream stays open as long as the connection.
    tokio::spawn(async move { while control.next().await.is_some() {} });
    seen
}
