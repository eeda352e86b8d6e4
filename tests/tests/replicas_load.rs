//! Three ggrok-server replicas behind HAProxy (health checks on `/healthz`, retries and
//! redispatch), one ggrokd holding all three (`replicas = "all"`), and a steady load of 32
//! clients whose every answer is checked byte for byte: 10,000 requests without a failure; one
//! replica killed under load (failures only for the requests it held, none once the balancer
//! marked it down, never a wrong body or a hang); a rolling restart of all three (SIGTERM, wait,
//! start on the same port, wait until held and balanced again, next) without a failed request.
//! The figures are printed (`cargo test -p ggrok-tests --test replicas_load -- --nocapture`) and
//! recorded in docs/benchmarks.md.

use ggrok_tests::load::{Load, Outcome, Report};
use ggrok_tests::replicas::{HOST, Replicas};
use std::time::{Duration, Instant};

/// Clients sending at once.
const CONCURRENCY: usize = 32;

/// 32 clients, answers up to 16 KiB, `limit` requests (or until stopped); `retry_closed`: see
/// [`Load::retry_closed`].
fn load(limit: Option<u64>, retry_closed: bool) -> Load {
    Load { concurrency: CONCURRENCY, limit, max_len: 16 * 1024, retry_closed }
}
/// The longest any phase of a test waits for requests to complete.
const PHASE: Duration = Duration::from_secs(60);

/// No wrong body and no hung request, whatever else happened.
fn assert_sound(report: &Report, summary: &str) {
    assert_eq!(report.count(|o| matches!(o, Outcome::WrongBody(_))), 0, "{summary}");
    assert_eq!(report.count(|o| *o == Outcome::Hung), 0, "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_through_three_replicas_all_arrive_whole() {
    let replicas = Replicas::start(3).await;
    let report = load(Some(10_000), true).start(replicas.haproxy.addr, HOST).join().await;
    let summary = report.summary("3 replicas, 10,000 requests");
    println!("{summary}");
    assert_sound(&report, &summary);
    assert_eq!(report.records.len(), 10_000, "{summary}");
    assert!(report.failures().is_empty(), "{summary}");
    for i in 0..3 {
        let served = report.records.iter().filter(|r| replicas.replica_of(r.replica) == Some(i)).count();
        assert!(served > 0, "r{i} served none: {summary}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_fails_only_the_requests_it_held() {
    let mut replicas = Replicas::start(3).await;
    let running = load(None, false).start(replicas.haproxy.addr, HOST);
    assert!(running.wait_more(1_000, PHASE).await, "the load did not get going");
    let killed_at = Instant::now();
    replicas.kill(1);
    let down = tokio::task::block_in_place(|| {
        replicas.wait_balanced(1, false);
        Instant::now()
    });
    assert!(running.wait_more(2_000, PHASE).await, "the load stalled after the kill");
    let report = running.finish().await;
    let summary = report.summary("3 replicas, r1 killed under load");
    println!("{summary}");
    println!(
        "the balancer marked r1 down {:.0} ms after the kill",
        down.duration_since(killed_at).as_secs_f64() * 1e3
    );
    assert_sound(&report, &summary);
    let killed = replicas.source(1);
    let failures = report.failures();
    for f in &failures {
        // On a connection r1 served, or a new one (which the balancer may still have sent to r1).
        assert!(f.replica.is_none_or(|ip| ip == killed), "a failure on another replica: {f:?}\n{summary}");
        assert!(f.started < down, "a request sent after r1 was marked down failed: {f:?}\n{summary}");
    }
    assert!(failures.len() <= CONCURRENCY, "more failures than requests in flight: {summary}");
    let after: Vec<_> = report.records.iter().filter(|r| r.started > down).collect();
    assert!(after.len() >= 1_000, "{} requests after r1 was marked down: {summary}", after.len());
    for i in [0, 2] {
        let served = after.iter().filter(|r| replicas.replica_of(r.replica) == Some(i)).count();
        assert!(served > 0, "r{i} served none after the kill: {summary}");
    }
    assert!(after.iter().all(|r| r.replica != Some(killed)), "r1 answered after it was killed: {summary}");
}

/// A client that retries like a browser (see [`Load::retry_closed`]); with the server's drain
/// (answers say `Connection: close` once it stops, idle connections get a moment before they
/// are closed), the balancer's health checks and redispatch, and `wait_for_sessions`, none of its
/// requests fails and none needs the retry (docs/benchmarks.md has the figures of a client that
/// never retries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_fails_no_request() {
    let mut replicas = Replicas::start(3).await;
    let running = load(None, true).start(replicas.haproxy.addr, HOST);
    assert!(running.wait_more(1_000, PHASE).await, "the load did not get going");
    let started = Instant::now();
    for i in 0..3 {
        let (drained, balanced, held) = tokio::task::block_in_place(|| {
            let stopping = Instant::now();
            replicas.terminate(i);
            replicas.wait_balanced(i, false);
            let drained = stopping.elapsed();
            let starting = Instant::now();
            replicas.respawn(i);
            replicas.wait_balanced(i, true);
            let balanced = starting.elapsed();
            replicas.wait_held();
            (drained, balanced, starting.elapsed())
        });
        println!(
            "r{i}: stopped and marked down {:.2} s after SIGTERM; after its start, balanced again in \
             {:.2} s, every replica held by the daemon in {:.2} s",
            drained.as_secs_f64(),
            balanced.as_secs_f64(),
            held.as_secs_f64()
        );
        assert!(running.wait_more(1_000, PHASE).await, "the load stalled after r{i} came back");
    }
    let restart = started.elapsed();
    let report = running.finish().await;
    let summary = report.summary("3 replicas, rolling restart under load");
    println!("{summary}");
    println!("the rolling restart took {:.1} s", restart.as_secs_f64());
    assert_sound(&report, &summary);
    assert!(report.failures().is_empty(), "{summary}");
    assert!(report.retried() <= CONCURRENCY, "{summary}");
    for i in 0..3 {
        let served = report.records.iter().filter(|r| replicas.replica_of(r.replica) == Some(i)).count();
        assert!(served > 0, "r{i} served none: {summary}");
    }
}
