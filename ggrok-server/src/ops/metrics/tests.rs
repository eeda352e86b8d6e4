use super::*;
use bytes::Bytes;
use ggrok_proto::tally::Counted;
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The value of one series (`name{labels}` exactly as encoded), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.rsplit_once(' ').filter(|(s, _)| *s == series))
        .map(|(_, v)| v.parse().unwrap())
}

/// A scrape with `hosts_online` hosts and these daemons, on replica `r1`.
fn scrape<'a>(hosts_online: usize, daemons: &'a [(String, String, usize)]) -> Scrape<'a> {
    Scrape { hosts_online, daemons, replica: "r1" }
}

#[test]
fn sessions_are_counted_per_daemon_and_replica_and_gone_daemons_leave() {
    let m = Metrics::new();
    let two = [("alice".to_owned(), "d1".to_owned(), 3), ("bob".to_owned(), "d2".to_owned(), 1)];
    let text = m.encode(&scrape(0, &two));
    let series = |client: &str, daemon: &str| {
        format!("ggrok_daemon_sessions{{client=\"{client}\",daemon=\"{daemon}\",replica=\"r1\"}}")
    };
    assert_eq!(sample(&text, &series("alice", "d1")), Some(3.0), "{text}");
    assert_eq!(sample(&text, &series("bob", "d2")), Some(1.0), "{text}");
    assert_eq!(sample(&text, "ggrok_tunnel_daemons"), Some(2.0), "{text}");
    let info = format!("ggrok_server_info{{replica=\"r1\",version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
    assert_eq!(sample(&text, &info), Some(1.0), "{text}");
    let text = m.encode(&scrape(0, &two[..1]));
    assert_eq!(sample(&text, &series("bob", "d2")), None, "a daemon gone leaves no series: {text}");
    assert_eq!(sample(&text, "ggrok_tunnel_daemons"), Some(1.0), "{text}");
}

fn requests(host: &str, class: &str) -> String {
    format!("ggrok_http_requests_total{{host=\"{host}\",status_class=\"{class}\"}}")
}

#[test]
fn every_metric_is_exported_from_zero() {
    let m = Metrics::new();
    let _session = m.session_connected();
    let text = m.encode(&scrape(3, &[]));
    assert_eq!(sample(&text, "ggrok_tunnel_sessions"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "ggrok_hosts_online"), Some(3.0));
    for limit in Limit::ALL {
        assert_eq!(sample(&text, &format!("ggrok_limit_hits_total{{limit=\"{}\"}}", limit.key())), Some(0.0));
    }
    for why in Rejection::ALL {
        let series = format!("ggrok_tunnel_handshakes_rejected_total{{reason=\"{}\"}}", why.label());
        assert_eq!(sample(&text, &series), Some(0.0), "{series}");
    }
    for class in STATUS_CLASSES {
        assert_eq!(sample(&text, &requests("", class)), Some(0.0));
    }
    for name in [
        "ggrok_http_received_bytes_total",
        "ggrok_http_sent_bytes_total",
        "ggrok_http_request_duration_seconds_count",
    ] {
        assert_eq!(sample(&text, &format!("{name}{{host=\"\"}}")), Some(0.0), "{name}");
    }
    for ty in [
        "# TYPE ggrok_http_requests_total counter",
        "# TYPE ggrok_http_request_duration_seconds histogram",
        "# TYPE ggrok_tunnel_sessions gauge",
    ] {
        assert!(text.contains(ty), "{ty} missing");
    }
    drop(_session);
    assert_eq!(sample(&m.encode(&scrape(0, &[])), "ggrok_tunnel_sessions"), Some(0.0));
}

#[test]
fn counts_land_under_the_host_and_its_status_class() {
    let m = Metrics::new();
    let meter = m.meter("*.test");
    for status in [101, 200, 204, 302, 404, 404, 500, 503, 999] {
        meter.answered(StatusCode::from_u16(status).unwrap());
    }
    m.limit_hit(Limit::MaxHostsPerClient);
    m.rejected(Rejection::Unauthorized);
    m.rejected(Rejection::Unauthorized);
    let text = m.encode(&scrape(1, &[]));
    let expected = [("1xx", 1.0), ("2xx", 2.0), ("3xx", 1.0), ("4xx", 2.0), ("5xx", 3.0)];
    for (class, n) in expected {
        assert_eq!(sample(&text, &requests("*.test", class)), Some(n), "{class}");
    }
    assert_eq!(sample(&text, "ggrok_limit_hits_total{limit=\"max_hosts_per_client\"}"), Some(1.0));
    assert_eq!(sample(&text, "ggrok_tunnel_handshakes_rejected_total{reason=\"unauthorized\"}"), Some(2.0));
}

#[test]
fn a_host_meter_is_shared_and_its_series_leave_with_the_last_user() {
    let m = Metrics::new();
    let registry_entry = m.meter("api.test");
    let in_flight = m.meter("api.test");
    assert!(Arc::ptr_eq(&registry_entry, &in_flight));
    in_flight.answered(StatusCode::OK);
    // The registry forgets the host; a request in flight still counts, and a new claim in the
    // meantime gets the same series.
    drop(registry_entry);
    let again = m.meter("api.test");
    assert!(Arc::ptr_eq(&again, &in_flight));
    drop((again, in_flight));
    let text = m.encode(&scrape(0, &[]));
    assert!(!text.contains("api.test"), "{text}");
    // Claimed anew: fresh series.
    let fresh = m.meter("api.test");
    assert_eq!(sample(&m.encode(&scrape(1, &[])), &requests("api.test", "2xx")), Some(0.0));
    drop(fresh);
    assert!(m.series.meters.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_metered_body_counts_bytes_and_records_its_duration_once_when_it_ends() {
    let m = Metrics::new();
    let meter = m.meter("api.test");
    let histogram = meter.duration.clone();
    let body = Full::new(Bytes::from_static(b"hello")).map_err(|never| match never {});
    let resp = respond(meter.clone(), Instant::now(), http::Response::new(body));
    let mut body = resp.into_body();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "hello");
    // The end was known with the last frame: counted before hyper could write it.
    assert_eq!(histogram.count(), 1);
    assert!(body.is_end_stream());
    drop(body);
    assert_eq!(histogram.count(), 1, "recorded once");
    assert_eq!(meter.sent.get(), 5);
    assert_eq!(meter.requests[1].get(), 1);

    // An empty body is done without being polled; an abandoned one when dropped.
    let empty = respond(meter.clone(), Instant::now(), http::Response::new(ggrok_proto::http::empty()));
    assert!(empty.body().is_end_stream());
    assert_eq!(histogram.count(), 2);
    let abandoned = respond(
        meter.clone(),
        Instant::now(),
        http::Response::new(Full::new(Bytes::from("x")).map_err(|never| match never {})),
    );
    drop(abandoned);
    assert_eq!(histogram.count(), 3);
    assert_eq!(meter.sent.get(), 5);
}

#[tokio::test]
async fn counted_io_counts_both_directions() {
    let m = Metrics::new();
    let meter = m.meter("ws.test");
    let (public, mut peer) = tokio::io::duplex(64);
    let mut counted = Counted::new(public, PublicTraffic(meter.clone()));
    peer.write_all(b"from the client").await.unwrap();
    let mut buf = [0u8; 15];
    counted.read_exact(&mut buf).await.unwrap();
    counted.write_all(b"back").await.unwrap();
    assert_eq!((meter.received.get(), meter.sent.get()), (15, 4));
}
