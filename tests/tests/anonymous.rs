//! `allow_anonymous`: clients without a token may claim the anonymous hosts, each as a client of
//! its own, so none can take over another's host; a wrong token is still refused.

use ggrok_tests::client::Public;
use ggrok_tests::cluster::{Daemon, Server};
use ggrok_tests::upstream::Upstream;
use http::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_clients_share_the_playground_but_not_hosts() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let server = Server::start_with(
        "listen = \"127.0.0.1:0\"\nallow_anonymous = true\nanonymous_hosts = [\"*.try.test\"]\n",
    );
    let first = Daemon::start(&server.ws_url(), "", &[("a.try.test", &a.port())], "");
    first.wait_online("a.try.test");
    let second = Daemon::start(
        &server.ws_url(),
        "",
        &[("a.try.test", &b.port()), ("b.try.test", &b.port()), ("x.other.test", &b.port())],
        "",
    );
    second.wait_online("b.try.test");
    let line = second.process.wait_for(&["tunnel refused", "a.try.test"]);
    assert!(line.contains("already served by another client"), "{line}");
    let line = second.process.wait_for(&["tunnel refused", "x.other.test"]);
    assert!(line.contains("may not claim"), "{line}");

    let public = Public::new(server.addr);
    assert_eq!(public.get("a.try.test", "/").await.status, StatusCode::OK);
    assert_eq!(a.served.load(std::sync::atomic::Ordering::SeqCst), 1, "a.try.test was taken over");
    assert_eq!(public.get("b.try.test", "/").await.status, StatusCode::OK);

    // A token that is given is checked, even here.
    let wrong = Daemon::start(&server.ws_url(), "not-a-known-token-123", &[("c.try.test", "1")], "");
    wrong.process.wait_for(&["unauthorized"]);
}
