//! A certificate file replaced on disk is presented to new connections after a reload; open
//! connections keep theirs; an unusable certificate refuses the whole reload.

use ggrok_tests::TEST_TOKEN;
use ggrok_tests::cluster::{Daemon, Server};
use ggrok_tests::tls::{HttpsConnection, TestCa, https_get};
use ggrok_tests::upstream::Upstream;
use http::StatusCode;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_file_swapped_is_presented_to_new_connections_after_a_reload() {
    let up = Upstream::start().await;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.issue(dir.path(), "site", &["localhost", "*.tls.test"]);
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\n[tls]\nlisten = \"127.0.0.1:0\"\n\n\
         [[tls.certificate]]\ncert = {cert:?}\nkey = {key:?}\n\n\
         [[client]]\nname = \"t\"\ntoken = \"{TEST_TOKEN}\"\nhosts = [\"*.tls.test\"]\n"
    );
    let server = Server::start_with(&config);
    let https = ggrok_tests::process::listening_address(&server.process.wait_for(&["listening on", "https"]))
        .expect("https address");
    let daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, &[("api.tls.test", &up.port())], "");
    daemon.wait_online("api.tls.test");
    let first = CertificateDer::from_pem_file(&cert).unwrap();
    let mut open = HttpsConnection::open(ca.client_config(), https, "api.tls.test").await.unwrap();
    assert_eq!(open.presented, first);

    // A renewed certificate for the same names, written over the files.
    ca.issue(dir.path(), "site", &["localhost", "*.tls.test"]);
    let second = CertificateDer::from_pem_file(&cert).unwrap();
    assert_ne!(first, second);
    server.process.signal("HUP");
    let line = server.process.wait_for(&["config reloaded"]);
    assert!(line.contains("certificates=true"), "{line}");
    let (status, _, presented) =
        https_get(ca.client_config(), https, "api.tls.test", "api.tls.test", "/").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(presented, second, "a new connection gets the new certificate");
    // The connection opened before the reload goes on.
    assert_eq!(open.get("api.tls.test", "/").await.unwrap().0, StatusCode::OK);

    // A key that does not match: the reload is refused and the second certificate stays.
    let (_, other_key) = ca.issue(dir.path(), "other", &["localhost"]);
    std::fs::copy(&other_key, &key).unwrap();
    server.process.signal("HUP");
    let line = server.process.wait_for(&["config not reloaded"]);
    assert!(line.contains("[tls]") && line.contains("do not make a usable pair"), "{line}");
    let (_, _, presented) =
        https_get(ca.client_config(), https, "api.tls.test", "api.tls.test", "/").await.unwrap();
    assert_eq!(presented, second);
}
