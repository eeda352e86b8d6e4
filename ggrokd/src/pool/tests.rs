//! The pool against real local services on 127.0.0.1: a hyper server that counts the
//! connections it accepts, and raw TCP services for the cases hyper would not produce.

use super::*;
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1 as server;
use hyper::service::service_fn;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Body = Full<Bytes>;

/// A local HTTP service: `/n` answers n bytes, `/wait` answers once `waiting` requests are waiting.
/// Returns its address and the number of connections accepted so far.
async fn service(waiting: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(waiting.max(1)));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, SeqCst);
            let barrier = barrier.clone();
            let answer = service_fn(move |req: Request<Incoming>| {
                let barrier = barrier.clone();
                async move {
                    if req.uri().path() == "/wait" {
                        barrier.wait().await;
                    }
                    let size = req.uri().path()[1..].parse().unwrap_or(2);
                    Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(vec![b'x'; size]))))
                }
            });
            tokio::spawn(server::Builder::new().serve_connection(TokioIo::new(stream), answer));
        }
    });
    (address, accepted)
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).header("host", "local.test").body(Body::default()).unwrap()
}

async fn fetch(pool: &Pool<Body>, address: &str, req: Request<Body>) -> Bytes {
    let resp = pool.send(address, req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn sequential_requests_reuse_one_connection() {
    let (address, accepted) = service(1).await;
    let pool = Pool::default();
    for size in [5, 70_000, 0, 3] {
        assert_eq!(fetch(&pool, &address, get(&format!("/{size}"))).await.len(), size);
        assert_eq!(pool.idle(&address), 1, "the connection is back once the body has ended");
    }
    assert_eq!(accepted.load(SeqCst), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_requests_get_a_connection_each_and_all_come_back() {
    let (address, accepted) = service(4).await;
    let pool = Pool::default();
    let requests = (0..4).map(|_| fetch(&pool, &address, get("/wait")));
    let all = tokio::time::timeout(Duration::from_secs(10), futures_util::future::join_all(requests));
    let bodies = all.await.expect("the four requests did not get a connection each");
    assert!(bodies.iter().all(|b| b.len() == 2));
    assert_eq!((accepted.load(SeqCst), pool.idle(&address)), (4, 4));
    fetch(&pool, &address, get("/1")).await;
    assert_eq!(accepted.load(SeqCst), 4, "an idle connection was reused");
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() {
    let (address, accepted) = service(1).await;
    let pool = Pool::default();
    let mut body = pool.send(&address, get("/4000000")).await.unwrap().into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    assert_eq!(pool.idle(&address), 0);
    assert_eq!(fetch(&pool, &address, get("/7")).await.len(), 7);
    assert_eq!(accepted.load(SeqCst), 2);
}

#[tokio::test]
async fn an_answer_without_a_body_returns_its_connection_unread() {
    let (address, accepted) = service(1).await;
    let pool = Pool::default();
    let head = Request::head("/9").header("host", "local.test").body(Body::default()).unwrap();
    let resp = pool.send(&address, head).await.unwrap();
    assert!(resp.body().is_end_stream());
    drop(resp);
    assert_eq!(pool.idle(&address), 1);
    assert_eq!(fetch(&pool, &address, get("/9")).await.len(), 9);
    assert_eq!(accepted.load(SeqCst), 1);
}

#[tokio::test]
async fn request_bodies_are_sent_whole() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let echo = service_fn(|req: Request<Incoming>| async move {
            let body = req.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>(Response::new(Full::new(body)))
        });
        server::Builder::new().serve_connection(TokioIo::new(stream), echo).await.unwrap();
    });
    let pool = Pool::default();
    let payload = Bytes::from((0..1_000_000u32).map(|i| i as u8).collect::<Vec<_>>());
    let req = Request::post("/").header("host", "l").body(Full::new(payload.clone())).unwrap();
    assert_eq!(fetch(&pool, &address, req).await, payload);
}

/// A raw service that answers each connection's first request (`ok`), then reports to `events`
/// when the client closes the connection, or closes it itself, without a word, on `close`.
struct RawService {
    address: String,
    accepted: Arc<AtomicUsize>,
    close: tokio::sync::mpsc::Sender<()>,
    events: tokio::sync::mpsc::Receiver<&'static str>,
}

async fn raw_service() -> RawService {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (close, mut close_rx) = tokio::sync::mpsc::channel::<()>(8);
    let (events_tx, events) = tokio::sync::mpsc::channel(8);
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, SeqCst);
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                stream.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.unwrap();
            let mut rest = [0u8; 1];
            let event = tokio::select! {
                read = stream.read(&mut rest) => {
                    assert_eq!(read.unwrap(), 0, "nothing more was sent");
                    "closed by the client"
                }
                _ = close_rx.recv() => "closed by the service",
            };
            drop(stream);
            events_tx.send(event).await.unwrap();
        }
    });
    RawService { address, accepted, close, events }
}

#[tokio::test]
async fn a_connection_the_service_closed_while_idle_is_not_used() {
    let mut service = raw_service().await;
    let (pool, address) = (Pool::default(), service.address.clone());
    assert_eq!(&fetch(&pool, &address, get("/")).await[..], b"ok");
    assert_eq!(pool.idle(&address), 1);
    service.close.send(()).await.unwrap();
    assert_eq!(service.events.recv().await, Some("closed by the service"));
    // The close has reached this side of the loopback: the check at checkout sees it.
    assert_eq!(&fetch(&pool, &address, get("/")).await[..], b"ok");
    assert_eq!(service.accepted.load(SeqCst), 2);
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let mut service = raw_service().await;
    let pool: Pool<Body> = Pool::with_idle_timeout(Duration::from_millis(50));
    fetch(&pool, &service.address, get("/")).await;
    assert_eq!(pool.idle(&service.address), 1);
    let closed = tokio::time::timeout(Duration::from_secs(10), service.events.recv()).await;
    assert_eq!(closed.expect("the idle connection was never closed"), Some("closed by the client"));
    assert_eq!(pool.idle(&service.address), 0);
    // The reaper stops once nothing is idle (bounded wait: it has just dropped the last one).
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.shared.lock().unwrap().reaping {
        assert!(Instant::now() < deadline, "the reaper kept running with nothing idle");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn an_unreachable_service_is_an_error_naming_the_cause() {
    let address = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let pool: Pool<Empty<Bytes>> = Pool::default();
    let req = Request::get("/").body(Empty::new()).unwrap();
    let Err(error) = pool.send(&address, req).await else { panic!("a closed port answered") };
    assert!(error.to_string().contains("refused"), "{error}");
}
