//! The raw upgrade and the WebSocket against a loopback server that plays each kind of answer,
//! and the fallback decision.

use super::*;

fn declined(status: u16) -> RawFailure {
    RawFailure::Declined { status: StatusCode::from_u16(status).unwrap(), text: String::new() }
}

#[test]
fn auto_falls_back_when_the_path_does_not_pass_raw_upgrades() {
    for failure in [
        declined(400),
        declined(404),
        declined(502),
        declined(101),
        RawFailure::Timeout,
        RawFailure::Io("reset".into()),
    ] {
        assert_eq!(after_raw_failure(Transport::Auto, &failure), Step::FallBack, "{failure}");
    }
}

#[test]
fn a_bad_token_or_version_is_an_error_whatever_the_transport() {
    for transport in [Transport::Auto, Transport::Raw] {
        assert_eq!(after_raw_failure(transport, &RawFailure::Unauthorized), Step::Fail);
        assert_eq!(after_raw_failure(transport, &RawFailure::Version("99".into())), Step::Fail);
    }
    assert!(RawFailure::Unauthorized.to_string().contains("401"));
}

use crate::config::DaemonConfig;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A daemon for `transport` toward a server on loopback at `port`.
fn daemon(port: u16, transport: &str) -> Daemon {
    let text =
        format!("server = \"ws://127.0.0.1:{port}\"\ntoken = \"sekrit\"\ntransport = \"{transport}\"\n");
    Daemon::new(&DaemonConfig::parse(Path::new("g.toml"), &text).unwrap(), "d".into())
}

/// The request head on `stream`, peeked (left unread).
async fn peek_head(stream: &TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = stream.peek(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            return text[..end + 4].to_owned();
        }
        tokio::task::yield_now().await;
    }
}

/// A server on loopback that records each request head (lowercased) and hands the connection,
/// its head peeked but unread, to `serve`.
async fn recording<F, Fut>(serve: F) -> (u16, Arc<Mutex<Vec<String>>>)
where
    F: Fn(TcpStream, String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let head = peek_head(&stream).await;
            seen.lock().unwrap().push(head.to_ascii_lowercase());
            tokio::spawn(serve(stream, head));
        }
    });
    (port, heads)
}

/// A server that answers a raw upgrade with `raw_answer` (a whole response head) and then
/// echoes, and accepts WebSockets with version 2; it records each request head.
async fn server(raw_answer: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    recording(move |mut stream, head| async move {
        if head.to_ascii_lowercase().contains("upgrade: ggrok-h2") {
            stream.read_exact(&mut vec![0u8; head.len()]).await.unwrap();
            stream.write_all(raw_answer.as_bytes()).await.unwrap();
            let (mut r, mut w) = stream.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        } else {
            // The callback's type is tungstenite's.
            #[allow(clippy::result_large_err)]
            let add_version = |_: &http::Request<()>, mut resp: http::Response<()>| {
                resp.headers_mut().insert(HEADER_PROTOCOL, HeaderValue::from(2));
                Ok(resp)
            };
            let _ws = tokio_tungstenite::accept_hdr_async(stream, add_version).await.unwrap();
            std::future::pending::<()>().await;
        }
    })
    .await
}

/// The daemon's one endpoint.
fn endpoint(d: &Daemon) -> crate::daemon::Endpoint {
    d.endpoints().remove(0)
}

const RAW_OK: &str = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ggrok-h2\r\nggrok-protocol: 2\r\n\r\n";

#[tokio::test]
async fn raw_upgrades_with_the_token_and_version_range_then_carries_bytes() {
    let (port, heads) = server(RAW_OK).await;
    let d = daemon(port, "auto");
    let dialled = connect(&d, &endpoint(&d), None).await.unwrap();
    assert_eq!((dialled.transport(), dialled.protocol), ("raw", 2));
    let head = heads.lock().unwrap()[0].to_ascii_lowercase();
    assert!(head.starts_with("get /$$ggrok http/1.1\r\n"), "{head}");
    for line in [
        "connection: upgrade",
        "upgrade: ggrok-h2",
        "authorization: bearer sekrit",
        "ggrok-protocol: 1",
        &format!("ggrok-protocol-max: {}", version::newest_from_env()),
        &format!("host: 127.0.0.1:{port}"),
    ] {
        assert!(head.contains(&format!("\r\n{line}\r\n")), "{line:?} missing from {head}");
    }
    // Bytes cross the upgraded connection as they are (the server echoes).
    let Carrier::Raw(mut io) = dialled.carrier else { panic!("not raw") };
    io.write_all(b"PRI * HTTP/2.0").await.unwrap();
    let mut back = [0u8; 14];
    io.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"PRI * HTTP/2.0");
}

#[tokio::test]
async fn auto_falls_back_to_the_websocket_at_once_and_remembers() {
    let (port, heads) = server("HTTP/1.1 400 Bad Request\r\ncontent-length: 5\r\n\r\nnope\n").await;
    let d = daemon(port, "auto");
    let dialled = connect(&d, &endpoint(&d), None).await.unwrap();
    assert_eq!((dialled.transport(), dialled.protocol), ("websocket", 2));
    assert!(d.raw_fell_back(&endpoint(&d)));
    let dialled = connect(&d, &endpoint(&d), None).await.unwrap();
    assert_eq!(dialled.transport(), "websocket");
    let heads = heads.lock().unwrap();
    let kinds: Vec<bool> =
        heads.iter().map(|h| h.to_ascii_lowercase().contains("upgrade: ggrok-h2")).collect();
    assert_eq!(kinds, [true, false, false], "raw once, then the WebSocket only");
    assert!(heads[1].to_ascii_lowercase().contains("ggrok-protocol-max: "), "{}", heads[1]);
}

#[tokio::test]
async fn raw_alone_reports_the_answer_and_401_never_falls_back() {
    let (port, _) = server("HTTP/1.1 400 Bad Request\r\ncontent-length: 5\r\n\r\nnope\n").await;
    let d = daemon(port, "raw");
    let err = connect(&d, &endpoint(&d), None).await.err().unwrap().to_string();
    assert!(err.contains("raw upgrade") && err.contains("400") && err.contains("nope"), "{err}");
    let (port, heads) = server("HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n").await;
    let d = daemon(port, "auto");
    let err = connect(&d, &endpoint(&d), None).await.err().unwrap().to_string();
    assert!(err.contains("unauthorized"), "{err}");
    assert_eq!(heads.lock().unwrap().len(), 1, "no WebSocket after a 401");
    assert!(!d.raw_fell_back(&endpoint(&d)));
}

const NOT_FOUND: &str = "HTTP/1.1 404 Not Found\r\ncontent-length: 45\r\nconnection: close\r\n\r\n\
                         ggrok: no tunnel is online for host 127.0.0.1\n";

/// A server with nothing at the path: every request, raw or WebSocket, gets [`NOT_FOUND`]; it
/// records each request head.
async fn nothing_there() -> (u16, Arc<Mutex<Vec<String>>>) {
    recording(|mut stream, head| async move {
        stream.read_exact(&mut vec![0u8; head.len()]).await.unwrap();
        stream.write_all(NOT_FOUND.as_bytes()).await.unwrap();
    })
    .await
}

#[tokio::test]
async fn a_404_to_both_upgrades_names_the_path_and_does_not_blame_raw() {
    let (port, heads) = nothing_there().await;
    let d = daemon(port, "auto");
    let err = connect(&d, &endpoint(&d), None).await.err().unwrap();
    let none = err.downcast_ref::<NoEndpoint>().unwrap_or_else(|| panic!("{err:#}"));
    assert_eq!(none.text, "ggrok: no tunnel is online for host 127.0.0.1");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("no ggrok tunnel endpoint at ws://127.0.0.1:{port}/$$ggrok")),
        "{text}"
    );
    assert!(text.contains("tunnel_path (default /$$ggrok)"), "{text}");
    assert!(!d.raw_fell_back(&endpoint(&d)), "a wrong path is no reason to give raw up");
    connect(&d, &endpoint(&d), None).await.err().unwrap();
    let raw: Vec<bool> = heads.lock().unwrap().iter().map(|h| h.contains("upgrade: ggrok-h2")).collect();
    assert_eq!(raw, [true, false, true, false], "raw, then the WebSocket, each time");
}

#[tokio::test]
async fn a_404_names_the_path_whatever_the_transport() {
    for transport in ["raw", "websocket"] {
        let (port, _) = nothing_there().await;
        let d = daemon(port, transport);
        let err = connect(&d, &endpoint(&d), None).await.err().unwrap();
        assert!(err.is::<NoEndpoint>(), "{transport}: {err:#}");
        assert!(err.to_string().contains("tunnel_path"), "{transport}: {err}");
    }
}

#[tokio::test]
async fn a_404_to_raw_alone_is_a_fallback() {
    let (port, _) = server(NOT_FOUND).await;
    let d = daemon(port, "auto");
    let dialled = connect(&d, &endpoint(&d), None).await.unwrap();
    assert_eq!(dialled.transport(), "websocket");
    assert!(d.raw_fell_back(&endpoint(&d)));
}

#[tokio::test]
async fn websocket_alone_never_tries_raw() {
    let (port, heads) = server(RAW_OK).await;
    let d = daemon(port, "websocket");
    let dialled = connect(&d, &endpoint(&d), None).await.unwrap();
    assert_eq!(dialled.transport(), "websocket");
    assert!(!heads.lock().unwrap()[0].to_ascii_lowercase().contains("ggrok-h2"));
}

#[test]
fn raw_never_falls_back() {
    for failure in [declined(400), RawFailure::Timeout, RawFailure::Io("reset".into())] {
        assert_eq!(after_raw_failure(Transport::Raw, &failure), Step::Fail, "{failure}");
    }
}
