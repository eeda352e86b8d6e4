//! A stream window that shrinks while a body is on its way never strands the body: the budget
//! shrinks every connection's stream window when answers pile up (a SETTINGS change that applies
//! to the open streams too), and a stream whose reader had taken and released all it received
//! must still be given window again. h2 before 0.4.21 did not send that WINDOW_UPDATE (#976): the
//! sender's window stayed below zero and the answer hung with nothing left to read, so its public
//! reader was never found stalled either.

use bytes::Bytes;
use ggrok_proto::h2io::{RecvBody, Windows, pump};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

const FULL: u32 = 4 << 20;
const SHRUNK: u32 = 16 << 10;
/// Only catches a hang; nothing here asserts how long anything took.
const HANG: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_shrunk_window_does_not_strand_a_body_already_read() {
    let (near, far) = tokio::io::duplex(1 << 20);
    let (windows_tx, windows_rx) = watch::channel(FULL);
    let windows = Windows::new(windows_rx);

    // The sending end (ggrokd's side): answers with a body whose first 1 MiB comes at once and
    // whose other 3 MiB come when `more` says so.
    let (more_tx, mut more_rx) = mpsc::channel::<()>(1);
    let sender = tokio::spawn(async move {
        let mut connection = h2::server::handshake(far).await.unwrap();
        let (_request, mut respond) = connection.accept().await.unwrap().unwrap();
        let stream = respond.send_response(http::Response::new(()), false).unwrap();
        let body = async_stream(move |tx| async move {
            tx.send(Bytes::from(vec![1u8; 1 << 20])).await.ok();
            more_rx.recv().await;
            for _ in 0..3 {
                tx.send(Bytes::from(vec![2u8; 1 << 20])).await.ok();
            }
        });
        tokio::spawn(pump(body, stream));
        while let Some(Ok(_)) = connection.accept().await {}
    });

    // The receiving end (ggrok-server's side), driven as h2c::drive drives it.
    let (client, mut connection) = h2::client::Builder::new()
        .initial_window_size(windows.initial())
        .initial_connection_window_size(256 << 20)
        .handshake::<_, Bytes>(near)
        .await
        .unwrap();
    let mut pings = connection.ping_pong().unwrap();
    tokio::spawn(async move {
        let mut windows = windows;
        loop {
            tokio::select! {
                done = &mut connection => return done,
                () = windows.changed() => {}
            }
            windows.apply(|size| connection.set_initial_window_size(size));
        }
    });
    let mut client = client.ready().await.unwrap();
    let (response, _) = client.send_request(http::Request::new(()), true).unwrap();
    let mut body = RecvBody::new(response.await.unwrap().into_body());

    // Read (and so release) the first 1 MiB: less than half the window, so no WINDOW_UPDATE yet.
    let mut read = 0usize;
    while read < 1 << 20 {
        let frame = tokio::time::timeout(HANG, body.frame()).await.expect("the first MiB hung");
        read += frame.unwrap().unwrap().into_data().unwrap().len();
    }
    // Shrink the window below what was read, and wait until the other end has seen it: it answers
    // a PING only after the SETTINGS frame sent before it.
    windows_tx.send(SHRUNK).unwrap();
    // The first PING may leave before the connection turns to the change; the second leaves after
    // the first PONG, so after the SETTINGS, which the other end acknowledges (and applies) in the
    // same turn as it answers the PING.
    for _ in 0..2 {
        tokio::time::timeout(HANG, pings.ping(h2::Ping::opaque())).await.expect("no PONG").unwrap();
    }
    more_tx.send(()).await.unwrap();

    // The rest must come, in pieces of the shrunk window.
    while read < 4 << 20 {
        let frame = tokio::time::timeout(HANG, body.frame())
            .await
            .unwrap_or_else(|_| panic!("stranded after {read} bytes with a shrunk window"));
        match frame {
            Some(Ok(frame)) => read += frame.into_data().map_or(0, |d| d.len()),
            other => panic!("the body ended early after {read} bytes: {other:?}"),
        }
    }
    assert_eq!(read, 4 << 20);
    drop(client);
    sender.abort();
}

/// A body fed by `produce` through a channel.
fn async_stream<F, Fut>(
    produce: F,
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Unpin>
where
    F: FnOnce(mpsc::Sender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(produce(tx));
    let frames = futures_util::StreamExt::map(tokio_stream_of(rx), |b| Ok(Frame::data(b)));
    StreamBody::new(frames)
}

fn tokio_stream_of(rx: mpsc::Receiver<Bytes>) -> impl futures_util::Stream<Item = Bytes> + Unpin {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) }))
}
