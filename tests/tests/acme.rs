//! `[acme]` against a real ACME CA (Pebble, `tests/src/pebble.rs`), with real validation: names
//! at start by HTTP-01 (answered before the redirect to HTTPS) and by TLS-ALPN-01, names added by
//! a reload, the cache
//! reused after a restart (no new order), on-demand certificates for hosts a ggrokd claims and
//! none for a stranger's SNI or a wildcard, and the renewal of short-lived certificates.

use ggrok_tests::TEST_TOKEN;
use ggrok_tests::admin::Admin;
use ggrok_tests::bins::bin;
use ggrok_tests::cluster::{Daemon, Server};
use ggrok_tests::pebble::{Options, Pebble, free_ports};
use ggrok_tests::process::Process;
use ggrok_tests::tls::https_get;
use ggrok_tests::upstream::Upstream;
use http::{Method, StatusCode};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// A server for `pebble` on its validation ports, with an admin listener on `ports[2]`, `[acme]` with `acme`
/// lines, and one client that may claim `*.acme.test`, `app.acme.test` and `*.wild.acme.test`.
fn server_toml(pebble: &Pebble, ports: &[u16], cache: &Path, redirect: bool, acme: &str) -> String {
    format!(
        "listen = \"127.0.0.1:{}\"\n\n[tls]\nlisten = \"127.0.0.1:{}\"\nredirect_http = {redirect}\n\n\
         [admin]\nlisten = \"127.0.0.1:{}\"\n\n{}\n\
         [[client]]\nname = \"t\"\ntoken = \"{TEST_TOKEN}\"\n\
         hosts = [\"*.acme.test\", \"app.acme.test\", \"*.wild.acme.test\"]\n",
        ports[0],
        ports[1],
        ports[2],
        pebble.acme_config(cache, acme)
    )
}

async fn start(validity: Option<u64>) -> (Pebble, Vec<u16>, tempfile::TempDir) {
    let ports = free_ports(3);
    let pebble = Pebble::start(Options { http_port: ports[0], tls_port: ports[1], validity }).await;
    (pebble, ports, tempfile::tempdir().unwrap())
}

fn tls_addr(ports: &[u16]) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], ports[1]))
}

/// The value of the first sample of `metrics` whose line starts with `series`.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
}

/// Waits until `process` has logged `n` lines containing all of `parts`, up to `timeout`.
fn wait_count(process: &Process, parts: &[&str], n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while process.count(parts) < n {
        assert!(Instant::now() < deadline, "no {n} lines with {parts:?}; the log:\n{}", process.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The issuer's common name of a DER certificate, roughly: enough to see it is Pebble's.
fn issued_by_pebble(der: &[u8]) -> bool {
    der.windows(b"Pebble Intermediate CA".len()).any(|w| w == b"Pebble Intermediate CA")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_at_start_by_http_01_and_the_cache_after_a_restart() {
    let (pebble, ports, cache) = start(None).await;
    let acme = "names = [\"app.acme.test\"]\nchallenge = [\"http-01\"]";
    let mut server = Server::start_with(&server_toml(&pebble, &ports, cache.path(), true, acme));
    // HTTP-01 on the plain listener, although every other plain request is redirected.
    server.process.wait_for(&["ACME: certificate issued", "app.acme.test"]);
    assert_eq!(
        server.process.count(&["ACME: ordering", "challenge=\"http-01\""]),
        1,
        "{}",
        server.process.log()
    );
    let (status, _, presented) =
        https_get(pebble.client_config(), tls_addr(&ports), "app.acme.test", "app.acme.test", "/")
            .await
            .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND, "no tunnel holds the host, but TLS is trusted");
    assert!(issued_by_pebble(&presented));

    let admin = Admin::of(&server);
    let metrics = admin.metrics().await;
    assert_eq!(sample(&metrics, "ggrok_acme_orders_total{result=\"ok\"}"), 1.0);
    assert_eq!(sample(&metrics, "ggrok_acme_orders_total{result=\"failed\"}"), 0.0);
    assert!(
        sample(
            &metrics,
            "ggrok_certificate_expiry_timestamp_seconds{name=\"app.acme.test\",source=\"acme\"}"
        ) > 0.0
    );
    let report = admin.request(Method::GET, "/certificates").await.json();
    assert_eq!(report["certificates"][0]["source"], "acme", "{report:#}");
    assert_eq!(report["certificates"][0]["names"][0], "app.acme.test", "{report:#}");
    assert!(report["certificates"][0]["issuer"].as_str().unwrap().contains("Pebble"), "{report:#}");
    let name = &report["acme"]["names"]["app.acme.test"];
    assert_eq!(
        (name["status"].as_str(), name["origin"].as_str()),
        (Some("valid"), Some("configured")),
        "{report:#}"
    );
    assert!(name["next_attempt"].is_string(), "{report:#}");

    // The cache: the folder 0700, account, keys and certificates 0600.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let folder = std::fs::read_dir(cache.path()).unwrap().next().unwrap().unwrap().path();
    assert_eq!((mode(cache.path()), mode(&folder)), (0o700, 0o700));
    for file in ["account.json", "app.acme.test.crt", "app.acme.test.key"] {
        assert_eq!(mode(&folder.join(file)), 0o600, "{file}");
    }

    // --check reports the cached certificate.
    let check = std::process::Command::new(bin("ggrok-server"))
        .args(["--config", server.dir.path().join("server.toml").to_str().unwrap(), "--check"])
        .env_clear()
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{out}{}", String::from_utf8_lossy(&check.stderr));
    assert!(out.contains("acme: directory https://127.0.0.1:") && out.contains("(an account)"), "{out}");
    assert!(
        out.contains("acme certificate app.acme.test: app.acme.test; issuer CN=Pebble Intermediate CA"),
        "{out}"
    );

    // After a restart, the same certificate from the cache, at once, without an order.
    server.restart();
    server.process.wait_for(&["ACME: certificate from the cache", "app.acme.test"]);
    let (_, _, again) =
        https_get(pebble.client_config(), tls_addr(&ports), "app.acme.test", "app.acme.test", "/")
            .await
            .unwrap();
    assert_eq!(again, presented);
    let admin = Admin::of(&server);
    assert_eq!(sample(&admin.metrics().await, "ggrok_acme_orders_total{result=\"ok\"}"), 0.0);
    assert_eq!(server.process.count(&["ACME: ordering"]), 0, "{}", server.process.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_at_start_by_tls_alpn_01_and_names_added_by_a_reload() {
    let (pebble, ports, cache) = start(None).await;
    let acme = "names = [\"tls.acme.test\"]\nchallenge = [\"tls-alpn-01\"]";
    let server = Server::start_with(&server_toml(&pebble, &ports, cache.path(), false, acme));
    server.process.wait_for(&["ACME: certificate issued", "tls.acme.test"]);
    assert_eq!(server.process.count(&["ACME: ordering", "challenge=\"tls-alpn-01\""]), 1);
    let (_, _, presented) =
        https_get(pebble.client_config(), tls_addr(&ports), "tls.acme.test", "tls.acme.test", "/")
            .await
            .unwrap();
    assert!(issued_by_pebble(&presented));
    // The challenge certificate is gone with the order: an acme-tls/1 hello gets nothing now.
    let mut config = pebble.client_config();
    config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let err = https_get(config, tls_addr(&ports), "tls.acme.test", "tls.acme.test", "/").await.unwrap_err();
    assert!(!err.is_empty());

    // A reload: a name added is ordered; the account's settings wait for a restart.
    let path = server.dir.path().join("server.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text
        .replace("names = [\"tls.acme.test\"]", "names = [\"tls.acme.test\", \"more.acme.test\"]")
        .replace("ops@acme.test", "other@acme.test");
    std::fs::write(&path, text).unwrap();
    server.process.signal("HUP");
    let line = server.process.wait_for(&["take effect only after a restart"]);
    assert!(line.contains("acme.email"), "{line}");
    server.process.wait_for(&["ACME: certificate issued", "more.acme.test"]);
    let (_, _, presented) =
        https_get(pebble.client_config(), tls_addr(&ports), "more.acme.test", "more.acme.test", "/")
            .await
            .unwrap();
    assert!(issued_by_pebble(&presented));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_for_claimed_hosts_and_never_for_strangers_or_wildcards() {
    let (pebble, ports, cache) = start(None).await;
    let server = Server::start_with(&server_toml(&pebble, &ports, cache.path(), false, "on_demand = true"));
    let admin = Admin::of(&server);
    let client = Pebble::client_config;

    // A stranger's SNI, for a name a client could claim: the handshake fails, nothing is ordered.
    let err = https_get(client(&pebble), tls_addr(&ports), "stranger.acme.test", "stranger.acme.test", "/")
        .await
        .unwrap_err();
    assert!(!err.is_empty());

    let up = Upstream::start().await;
    let daemon = Daemon::start(
        &server.ws_url(),
        TEST_TOKEN,
        &[("app.acme.test", &up.port()), ("*.wild.acme.test", &up.port())],
        "",
    );
    daemon.wait_online("app.acme.test");
    daemon.wait_online("*.wild.acme.test");
    server.process.wait_for(&["ACME: certificate issued", "app.acme.test"]);
    let (status, body, presented) =
        https_get(client(&pebble), tls_addr(&ports), "app.acme.test", "app.acme.test", "/hello")
            .await
            .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(issued_by_pebble(&presented));

    // Still nothing for the stranger nor for a name under the wildcard claim.
    for sni in ["stranger.acme.test", "x.wild.acme.test"] {
        assert!(https_get(client(&pebble), tls_addr(&ports), sni, sni, "/").await.is_err(), "{sni}");
    }
    let metrics = admin.metrics().await;
    assert_eq!(sample(&metrics, "ggrok_acme_orders_total{result=\"ok\"}"), 1.0);
    assert_eq!(sample(&metrics, "ggrok_acme_orders_total{result=\"failed\"}"), 0.0);
    assert_eq!(sample(&metrics, "ggrok_acme_names{status=\"valid\"}"), 1.0);
    assert_eq!(server.process.count(&["ACME: ordering"]), 1, "{}", server.process.log());
    let report = admin.request(Method::GET, "/certificates").await.json();
    let names = report["acme"]["names"].as_object().unwrap();
    assert_eq!(names.keys().collect::<Vec<_>>(), ["app.acme.test"], "{report:#}");
    assert_eq!(names["app.acme.test"]["origin"], "on_demand");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_certificates_are_renewed_in_the_background() {
    // 15-second certificates: renewed when a third of that is left, and each one is close enough
    // to its expiry for a warning.
    let (pebble, ports, cache) = start(Some(15)).await;
    let acme = "names = [\"app.acme.test\"]";
    let server = Server::start_with(&server_toml(&pebble, &ports, cache.path(), false, acme));
    server.process.wait_for(&["ACME: certificate issued", "app.acme.test"]);
    let client = || pebble.client_config();
    let (_, _, first) =
        https_get(client(), tls_addr(&ports), "app.acme.test", "app.acme.test", "/").await.unwrap();
    wait_count(&server.process, &["ACME: certificate issued", "app.acme.test"], 2, Duration::from_secs(40));
    assert!(server.process.count(&["ACME: ordering", "renewal=true"]) >= 1, "{}", server.process.log());
    let (_, _, second) =
        https_get(client(), tls_addr(&ports), "app.acme.test", "app.acme.test", "/").await.unwrap();
    assert_ne!(first, second, "a new connection gets the renewed certificate");
    wait_count(
        &server.process,
        &["certificate expires soon", "ACME certificate of app.acme.test"],
        1,
        Duration::from_secs(5),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_beyond_max_orders_per_day_wait() {
    let (pebble, ports, cache) = start(None).await;
    let acme = "names = [\"a.acme.test\", \"b.acme.test\"]\nmax_orders_per_day = 1";
    let server = Server::start_with(&server_toml(&pebble, &ports, cache.path(), false, acme));
    server.process.wait_for(&["ACME: certificate issued", "a.acme.test"]);
    server.process.wait_for(&["max_orders_per_day reached"]);
    let report = Admin::of(&server).request(Method::GET, "/certificates").await.json();
    let waiting = &report["acme"]["names"]["b.acme.test"];
    assert_eq!(waiting["status"], "pending", "{report:#}");
    assert!(waiting["next_attempt"].is_string(), "{report:#}");
    assert_eq!(report["acme"]["orders_last_24h"], 1, "{report:#}");
    assert_eq!(server.process.count(&["ACME: ordering"]), 1, "{}", server.process.log());
}
