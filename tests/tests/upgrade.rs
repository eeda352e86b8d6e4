//! WebSocket and other upgrades through the tunnel (extended CONNECT inside).

use futures_util::{SinkExt, StreamExt};
use ggrok_tests::client::Public;
use ggrok_tests::cluster::Cluster;
use ggrok_tests::upstream::Upstream;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_text_binary_and_clean_close() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("ws.test", &up.port())]);
    let tcp = TcpStream::connect(cluster.addr()).await.unwrap();
    let (mut ws, resp) =
        tokio_tungstenite::client_async("ws://ws.test/ws", tcp).await.expect("handshake through the tunnel");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);

    for i in 0..50 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(format!("hello {i}")));
    }
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    ws.send(Message::binary(blob.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(blob));

    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })).await.unwrap();
    // The echo server answers the close; the stream then ends without error.
    let mut saw_close = false;
    while let Some(msg) = ws.next().await {
        match msg.expect("clean close") {
            Message::Close(frame) => {
                saw_close = true;
                assert_eq!(frame.map(|f| f.code), Some(CloseCode::Normal));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_close, "no close frame came back");

    // The tunnel still serves plain requests afterwards.
    assert_eq!(Public::new(cluster.addr()).get("ws.test", "/after").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_websockets_at_once() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("ws.test", &up.port())]);
    let addr = cluster.addr();
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            tokio::spawn(async move {
                let tcp = TcpStream::connect(addr).await.unwrap();
                let (mut ws, _) = tokio_tungstenite::client_async("ws://ws.test/ws", tcp).await.unwrap();
                for i in 0..20 {
                    let text = format!("{n}:{i}");
                    ws.send(Message::text(text.clone())).await.unwrap();
                    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(text));
                }
                ws.close(None).await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// A local service that does not upgrade answers as it likes, and that answer reaches the client
/// unchanged, whether an error or a plain 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_upgrades_pass_the_local_answer_through() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("ws.test", &up.port())]);

    // The echo handler ignores Upgrade and answers 200 with its report.
    let mut conn = TcpStream::connect(cluster.addr()).await.unwrap();
    conn.write_all(b"GET /plain HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
        .await
        .unwrap();
    let text = read_some(&mut conn).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"path\":\"/plain\""), "{text}");
    assert!(!text.contains("ggrok-declined-status"), "{text}");

    // /ws without a WebSocket key is refused by the echo server with 400.
    let mut conn = TcpStream::connect(cluster.addr()).await.unwrap();
    conn.write_all(b"GET /ws HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let text = read_some(&mut conn).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_to_a_down_local_service_is_a_502() {
    let (_held, port) = ggrok_tests::upstream::closed_port();
    let cluster = Cluster::start(&[("ws.test", &port)]);
    let mut conn = TcpStream::connect(cluster.addr()).await.unwrap();
    conn.write_all(
        b"GET /ws HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let (head, body) = ggrok_tests::client::read_response(&mut conn).await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains(&format!("localhost:{port}")), "{body}");
}

async fn read_some(conn: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 8192];
    let mut text = String::new();
    // Read until the head and the start of the body are in.
    while !text.contains("\r\n\r\n") || text.ends_with("\r\n\r\n") {
        let n = conn.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    text
}

/// Only a bodiless GET is upgraded; other requests offering an upgrade keep their method and body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_bodies_offering_upgrades_are_forwarded_as_they_are() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("ws.test", &up.port())]);
    let mut conn = TcpStream::connect(cluster.addr()).await.unwrap();
    conn.write_all(
        b"POST /submit HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
          HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await
    .unwrap();
    let text = read_some(&mut conn).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"method\":\"POST\"") && text.contains("\"body_start\":\"hello\""), "{text}");
    assert!(!text.contains("http2-settings"), "a header named in Connection was forwarded: {text}");
}

/// Some clients send `Content-Length: 0` with a WebSocket handshake; it must still upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_handshake_with_content_length_zero() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("ws.test", &up.port())]);
    let tcp = TcpStream::connect(cluster.addr()).await.unwrap();
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request("ws://ws.test/ws")
            .unwrap();
    request.headers_mut().insert("content-length", "0".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp).await.expect("handshake");
    ws.send(Message::text("still works")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("still works"));
}

/// A public client must not be able to open a control stream to the daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_clients_cannot_open_the_control_stream() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("ws.test", &up.port())]);
    let mut conn = TcpStream::connect(cluster.addr()).await.unwrap();
    conn.write_all(
        b"GET / HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: ggrok-control\r\n\r\n",
    )
    .await
    .unwrap();
    let text = read_some(&mut conn).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert_eq!(cluster.daemon.process.count(&["authenticated with the server"]), 1);
}
