//! Many requests at once over the one tunnel connection; slow or unread responses hold up nobody.

use futures_util::future::join_all;
use ggrok_tests::TEST_TOKEN;
use ggrok_tests::client::{Public, full};
use ggrok_tests::cluster::{ClientDef, Cluster, Server};
use ggrok_tests::upstream::Upstream;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_over_three_tunnels() {
    let ups = [Upstream::start().await, Upstream::start().await, Upstream::start().await];
    let ports: Vec<String> = ups.iter().map(|u| u.port()).collect();
    let hosts = ["one.test", "two.test", "three.test"];
    // A thousand connections from one address at once: more than the default per-address cap on
    // connections still waiting for their first request (tested in limits.rs).
    let tunnels = [(hosts[0], ports[0].as_str()), (hosts[1], &ports[1]), (hosts[2], &ports[2])];
    // On one worker thread per core (`threads = 0`): the default is one thread, so this test is
    // where the multi-threaded runtime carries a heavy load.
    let cluster = Cluster::start_full(&tunnels, "threads = 0\n[limits]\nmax_pending_per_ip = 2000", "");
    let public = Public::new(cluster.addr());

    let requests = (0..1000usize).map(|i| {
        let public = public.clone();
        let host = hosts[i % 3];
        tokio::spawn(async move {
            let body = format!("request {i} for {host}").repeat(i % 50 + 1);
            let req = Request::post(format!("/req/{i}?n={i}")).body(full(body.clone())).unwrap();
            let reply = public.fetch(host, req).await;
            assert_eq!(reply.status, StatusCode::OK, "request {i}: {}", reply.text());
            let report = reply.json();
            assert_eq!(report["path"], format!("/req/{i}"));
            assert_eq!(report["query"], format!("n={i}"));
            assert_eq!(report["body_sha256"], hex::encode(Sha256::digest(body.as_bytes())));
            i % 3
        })
    });
    let mut per_tunnel = [0; 3];
    for done in join_all(requests).await {
        per_tunnel[done.expect("request task")] += 1;
    }
    assert_eq!(per_tunnel, [334, 333, 333]);
    for (up, expected) in ups.iter().zip(per_tunnel) {
        assert_eq!(up.served.load(std::sync::atomic::Ordering::SeqCst), expected as u64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_unread_responses_do_not_hold_up_the_others() {
    let (slow_up, fast_up) = (Upstream::start().await, Upstream::start().await);
    let cluster = Cluster::start_full(
        &[("slow.test", &slow_up.port()), ("fast.test", &fast_up.port())],
        "[limits]\nmax_pending_per_ip = 2000",
        "",
    );
    let public = Public::new(cluster.addr());

    // Ten requests that will not be answered until released.
    let slow: Vec<_> = (0..10)
        .map(|_| {
            let public = public.clone();
            tokio::spawn(async move { public.get("slow.test", "/slow").await })
        })
        .collect();
    // A large download nobody reads: it fills its own stream window, not the connection's.
    let unread = public.send("fast.test", Request::get("/bytes/268435456").body(full("")).unwrap()).await;
    assert_eq!(unread.status(), StatusCode::OK);

    // Meanwhile other requests, on both tunnels, complete.
    let others = (0..200).map(|i| {
        let public = public.clone();
        let host = if i % 2 == 0 { "fast.test" } else { "slow.test" };
        async move { public.get(host, &format!("/quick/{i}")).await.status }
    });
    let statuses =
        tokio::time::timeout(Duration::from_secs(60), join_all(others)).await.expect("others were held up");
    assert!(statuses.iter().all(|s| *s == StatusCode::OK));
    assert!(slow.iter().all(|t| !t.is_finished()), "slow requests finished before release");

    slow_up.release_slow();
    for t in slow {
        let reply = t.await.unwrap();
        assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "slow done"));
    }
    // The unread download is still intact when finally read.
    let body = unread.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 268_435_456);
}

/// Worker threads of `pid` besides the main one (which is worker 0).
fn worker_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("ggrok-worker-") || name.starts_with("tokio-r"))
        .count()
}

#[test]
fn the_server_runs_on_one_thread_unless_threads_says_otherwise() {
    let clients = [ClientDef { name: "test", token: TEST_TOKEN, hosts: &["a.test"] }];
    let single = Server::start_extra(&clients, "");
    assert_eq!(worker_threads(single.process.pid()), 0, "default: one thread, the main one");
    // Every worker listens before the server says it is listening.
    let three = Server::start_extra(&clients, "threads = 3");
    assert_eq!(worker_threads(three.process.pid()), 2, "threads = 3: the main thread and two workers");
}
