//! TLS end to end with a CA made in the test: HTTPS for the public, wss:// for the tunnel,
//! certificates chosen by SNI, HTTP redirected, and untrusted certificates refused by ggrokd.

use ggrok_tests::TEST_TOKEN;
use ggrok_tests::client::Public;
use ggrok_tests::cluster::{Daemon, Server};
use ggrok_tests::tls::{TestCa, https_get};
use ggrok_tests::upstream::Upstream;
use http::StatusCode;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::net::SocketAddr;
use std::path::Path;

struct TlsServer {
    server: Server,
    https: SocketAddr,
    ca: TestCa,
    ca_file: std::path::PathBuf,
    wildcard_cert: std::path::PathBuf,
}

fn start_tls_server(redirect: bool) -> TlsServer {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap().keep();
    let (local_cert, local_key) = ca.issue(&dir, "localhost", &["localhost"]);
    let (wild_cert, wild_key) = ca.issue(&dir, "wildcard", &["*.tls.test"]);
    let ca_file = ca.write_ca(&dir);
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\n[tls]\nlisten = \"127.0.0.1:0\"\nredirect_http = {redirect}\n\n\
         [[tls.certificate]]\ncert = {local_cert:?}\nkey = {local_key:?}\n\n\
         [[tls.certificate]]\ncert = {wild_cert:?}\nkey = {wild_key:?}\n\n\
         [[client]]\nname = \"t\"\ntoken = \"{TEST_TOKEN}\"\nhosts = [\"*.tls.test\"]\n"
    );
    let server = Server::start_with(&config);
    let line = server.process.wait_for(&["listening on", "https"]);
    let https = ggrok_tests::process::listening_address(&line).unwrap();
    TlsServer { server, https, ca, ca_file, wildcard_cert: wild_cert }
}

fn der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_for_the_public_and_wss_for_the_tunnel() {
    let up = Upstream::start().await;
    let tls = start_tls_server(false);
    let daemon = Daemon::start(
        &format!("wss://localhost:{}", tls.https.port()),
        TEST_TOKEN,
        &[("api.tls.test", &up.port())],
        &format!("ca_file = {:?}", tls.ca_file),
    );
    daemon.wait_online("api.tls.test");

    let (status, body, presented) =
        https_get(tls.ca.client_config(), tls.https, "api.tls.test", "api.tls.test", "/hello").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(presented, der(&tls.wildcard_cert), "the wildcard certificate was not chosen by SNI");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    let proto: Vec<&str> = report["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0] == "x-forwarded-proto")
        .map(|h| h[1].as_str().unwrap())
        .collect();
    assert_eq!(proto, ["https"]);

    // Without redirect_http, plain HTTP still serves.
    assert_eq!(Public::new(tls.server.addr).get("api.tls.test", "/").await.status, StatusCode::OK);
    // A name no certificate covers gets the default (first) certificate, which the client rejects.
    let err =
        https_get(tls.ca.client_config(), tls.https, "other.example", "api.tls.test", "/").await.unwrap_err();
    assert!(err.contains("certificate") || err.contains("NotValidForName"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_redirected_and_the_plain_tunnel_endpoint_refused() {
    let tls = start_tls_server(true);
    let public = Public::new(tls.server.addr);
    let reply = public.get("api.tls.test", "/path?q=1").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(reply.headers["location"], format!("https://api.tls.test:{}/path?q=1", tls.https.port()));

    // Behind a balancer that users reach HTTPS through on 8443 (`public_url`, reloaded): there.
    let path = tls.server.dir.path().join("server.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("public_url = \"https://{{host}}:8443\"\n{text}")).unwrap();
    tls.server.process.signal("HUP");
    tls.server.process.wait_for(&["config reloaded"]);
    let reply = public.get("api.tls.test", "/path?q=1").await;
    assert_eq!(reply.headers["location"], "https://api.tls.test:8443/path?q=1");

    let daemon = Daemon::start(&tls.server.ws_url(), TEST_TOKEN, &[("api.tls.test", "1")], "");
    let line = daemon.process.wait_for(&["cannot connect to the server"]);
    assert!(line.contains("403") && line.contains("wss://"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_server_certificate_is_refused() {
    let tls = start_tls_server(false);
    let url = format!("wss://localhost:{}", tls.https.port());
    // The system roots do not know the test CA.
    let daemon = Daemon::start(&url, TEST_TOKEN, &[("api.tls.test", "1")], "");
    let line = daemon.process.wait_for(&["cannot connect to the server"]);
    assert!(line.contains("not trusted") && line.contains("ca_file"), "{line}");
    // Nor does another CA.
    let other = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let other_ca = other.write_ca(dir.path());
    let daemon =
        Daemon::start(&url, TEST_TOKEN, &[("api.tls.test", "1")], &format!("ca_file = {other_ca:?}"));
    let line = daemon.process.wait_for(&["cannot connect to the server"]);
    assert!(line.contains("not trusted"), "{line}");
    assert_eq!(tls.server.process.count(&["tunnel client connected"]), 0);
}

#[test]
fn check_reports_unusable_certificate_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.toml");
    std::fs::write(
        &path,
        "[tls]\nlisten = \"127.0.0.1:0\"\n[[tls.certificate]]\ncert = \"missing.pem\"\nkey = \"missing.key\"\n\
         [[client]]\nname = \"t\"\ntoken = \"0123456789abcdef\"\nhosts = [\"a.test\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(ggrok_tests::bins::bin("ggrok-server"))
        .args(["--check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.pem") && err.contains("[tls]"), "{err}");
}
