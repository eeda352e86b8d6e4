//! A GiB each way through the tunnel, checksummed, with the memory of both ggrok processes bounded.
//!
//! `GGROK_TEST_BULK_BYTES` changes the size (default 1 GiB).

use futures_util::StreamExt;
use ggrok_tests::client::Public;
use ggrok_tests::cluster::Cluster;
use ggrok_tests::upstream::{Upstream, pattern, pattern_sha256};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use sha2::{Digest, Sha256};

/// Peak RSS either process may reach while moving the data. Measured at about a tenth of this
/// (see README); the bound catches any buffering of whole bodies.
const RSS_LIMIT_KIB: u64 = 96 * 1024;

fn bulk_bytes() -> u64 {
    std::env::var("GGROK_TEST_BULK_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(1 << 30)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gib_up_and_down_with_bounded_memory() {
    let len = bulk_bytes();
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("bulk.test", &up.port())]);
    let public = Public::new(cluster.addr());
    let expected = pattern_sha256(len);

    // Upload: a streamed body of unknown length (chunked), hashed by the local service as it arrives.
    const CHUNK: u64 = 256 * 1024;
    let chunks = futures_util::stream::unfold(0u64, move |offset| async move {
        (offset < len).then(|| {
            let n = (len - offset).min(CHUNK);
            let frame: Result<_, Box<dyn std::error::Error + Send + Sync>> =
                Ok(Frame::data(pattern(offset, n as usize)));
            (frame, offset + n)
        })
    });
    let req = Request::post("/upload").body(BodyExt::boxed(StreamBody::new(chunks))).unwrap();
    let report = public.fetch("bulk.test", req).await.json();
    assert_eq!(report["body_len"], len);
    assert_eq!(report["body_sha256"], expected.as_str());

    // Download: hashed as it streams.
    let resp = public
        .send("bulk.test", Request::get(format!("/bytes/{len}")).body(ggrok_tests::client::full("")).unwrap())
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut hash = Sha256::new();
    let mut got = 0u64;
    let mut body = resp.into_body().into_data_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("download interrupted");
        got += chunk.len() as u64;
        hash.update(&chunk);
    }
    assert_eq!(got, len);
    assert_eq!(hex::encode(hash.finalize()), expected);

    let server_peak = cluster.server.process.peak_rss_kib();
    let daemon_peak = cluster.daemon.process.peak_rss_kib();
    println!(
        "bulk {len} bytes each way: peak RSS ggrok-server {} MiB, ggrokd {} MiB",
        server_peak / 1024,
        daemon_peak / 1024
    );
    assert!(server_peak < RSS_LIMIT_KIB, "ggrok-server peaked at {server_peak} KiB");
    assert!(daemon_peak < RSS_LIMIT_KIB, "ggrokd peaked at {daemon_peak} KiB");
}
