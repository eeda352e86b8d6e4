//! Names under a client's domain: `[[client]] domain` on the server, told to ggrokd in the hello;
//! `ggrokctl add myapp PORT` and `ggrokctl add PORT` (a random name, saved and stable); a taken
//! name refused, never replaced; the public URL in `add`, `list`, `status` and the systemd status
//! line.

use ggrok_tests::client::Public;
use ggrok_tests::cluster::{Daemon, Server};
use ggrok_tests::notify::NotifySocket;
use ggrok_tests::upstream::Upstream;
use http::StatusCode;
use std::process::Output;

const ALICE: &str = "alice-token-0123456789abcdef";
const CAROL: &str = "carol-token-0123456789abcdef";

fn stdout(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "ggrokctl failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

fn stderr(out: &Output, code: i32) -> String {
    assert_eq!(out.status.code(), Some(code), "{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// alice's domain is alice.test; carol may claim any name under it too (so one can be taken).
fn server() -> Server {
    Server::start_with(&format!(
        "listen = \"127.0.0.1:0\"\n\
         [[client]]\nname = \"alice\"\ntoken = {ALICE:?}\ndomain = \"alice.test\"\n\
         [[client]]\nname = \"carol\"\ntoken = {CAROL:?}\nhosts = [\"*.alice.test\", \"*.carol.test\"]\n"
    ))
}

fn config(daemon: &Daemon) -> String {
    std::fs::read_to_string(&daemon.config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_and_random_names_go_under_the_domain_and_stay() {
    let up = Upstream::start().await;
    let server = server();
    let public = Public::new(server.addr);
    let port = server.addr.port();
    let notify = NotifySocket::bind();
    let mut daemon = Daemon::start_env(&server.ws_url(), ALICE, &[], "", &[("NOTIFY_SOCKET", notify.env())]);
    let mut notify = notify;
    notify.wait_line("READY=1");
    daemon.wait_status("connected", |s| s["connection"] == "connected");

    // A bare name: myapp.alice.test, with the URL the server gave.
    let text = stdout(&daemon.ctl(&["add", "myapp", &up.port()]));
    let url = format!("http://myapp.alice.test:{port}");
    assert!(text.contains(&format!("{url} is online")), "{text}");
    assert!(config(&daemon).contains("host = \"myapp.alice.test\""), "{}", config(&daemon));
    assert_eq!(public.get("myapp.alice.test", "/").await.status, StatusCode::OK);
    notify.wait_status(&[&format!("1/1 tunnels online: {url}")]);

    // No name: a random one under the domain, saved.
    let text = stdout(&daemon.ctl(&["add", &up.port()]));
    let random = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://").and_then(|h| h.split(':').next()))
        .unwrap_or_else(|| panic!("no URL in {text:?}"))
        .to_owned();
    let label =
        random.strip_suffix(".alice.test").unwrap_or_else(|| panic!("{random} is not under alice.test"));
    assert!(label.len() == 8 && label.bytes().all(|b| b.is_ascii_alphanumeric()), "{label}");
    assert!(config(&daemon).contains(&format!("host = \"{random}\"")), "{}", config(&daemon));
    assert_eq!(public.get(&random, "/").await.status, StatusCode::OK);

    // list and status show the URLs.
    let list = stdout(&daemon.ctl(&["list"]));
    assert!(list.contains(&url) && list.contains(&format!("http://{random}:{port}")), "{list}");
    let status: serde_json::Value =
        serde_json::from_str(&stdout(&daemon.ctl(&["status", "--json"]))).unwrap();
    let urls: Vec<&str> =
        status["tunnels"].as_array().unwrap().iter().filter_map(|t| t["url"].as_str()).collect();
    assert!(urls.contains(&url.as_str()), "{urls:?}");

    // Stable: after a restart the same names come back.
    daemon.restart();
    daemon.wait_online("myapp.alice.test");
    daemon.wait_online(&random);
    assert_eq!(public.get(&random, "/").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_name_is_refused_and_no_other_is_taken_instead() {
    let up = Upstream::start().await;
    let server = server();
    let carol = Daemon::start(&server.ws_url(), CAROL, &[("taken.alice.test", &up.port())], "");
    carol.wait_online("taken.alice.test");
    let alice = Daemon::start(&server.ws_url(), ALICE, &[], "");
    alice.wait_status("connected", |s| s["connection"] == "connected");
    let before = config(&alice);

    let err = stderr(&alice.ctl(&["add", "taken", &up.port()]), 1);
    assert!(err.contains("taken.alice.test") && err.contains("already served by another client"), "{err}");
    assert_eq!(config(&alice), before, "nothing saved");
    let list = stdout(&alice.ctl(&["list"]));
    assert!(list.starts_with("no tunnels"), "no other name was taken instead: {list}");

    // A bare name that is not a DNS label, and a client without a domain.
    let err = stderr(&alice.ctl(&["add", "not_a_label", &up.port()]), 1);
    assert!(err.contains("one DNS label"), "{err}");
    let err = stderr(&carol.ctl(&["add", "mine", &up.port()]), 1);
    assert!(err.contains("bare name") && err.contains("domain"), "{err}");
    let err = stderr(&carol.ctl(&["add", &up.port()]), 1);
    assert!(err.contains("random name") && err.contains("give the full host name"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_name_the_balancer_when_public_url_says_so() {
    let up = Upstream::start().await;
    // The server listens on a free port; users reach it through a balancer on 443 with TLS.
    let clients = format!("[[client]]\nname = \"alice\"\ntoken = {ALICE:?}\ndomain = \"alice.test\"\n");
    let server = Server::start_with(&format!(
        "listen = \"127.0.0.1:0\"\npublic_url = \"https://{{host}}\"\n{clients}"
    ));
    let daemon = Daemon::start(&server.ws_url(), ALICE, &[], "");
    daemon.wait_status("connected", |s| s["connection"] == "connected");
    let text = stdout(&daemon.ctl(&["add", "myapp", &up.port()]));
    assert!(text.contains("https://myapp.alice.test is online"), "{text}");
    let list = stdout(&daemon.ctl(&["list"]));
    assert!(list.contains("https://myapp.alice.test") && !list.contains("http://"), "{list}");
    // The tunnel itself is served where the server listens, as always; the balancer ends TLS, so
    // the local service is told the user came over HTTPS.
    let public = Public::new(server.addr);
    assert_eq!(forwarded_proto(&public, "myapp.alice.test").await, ["https"]);

    // A reload moves it: a plain balancer on 8080. The daemon is told the tunnel's new URL at
    // once, and new claims get it.
    let path = server.dir.path().join("server.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace("https://{host}", "http://{host}:8080");
    std::fs::write(&path, text).unwrap();
    server.process.signal("HUP");
    server.process.wait_for(&["config reloaded"]);
    let moved = |s: &serde_json::Value| s["tunnels"][0]["url"] == "http://myapp.alice.test:8080";
    daemon.wait_status("the new URL", moved);
    daemon.process.wait_for(&["the tunnel's public URL changed"]);
    let list = stdout(&daemon.ctl(&["list"]));
    assert!(list.contains("http://myapp.alice.test:8080") && !list.contains("https://"), "{list}");
    let text = stdout(&daemon.ctl(&["add", "other", &up.port()]));
    assert!(text.contains("http://other.alice.test:8080 is online"), "{text}");
    assert_eq!(forwarded_proto(&public, "other.alice.test").await, ["http"]);
}

/// The `X-Forwarded-Proto` values the local service got for a request to `host`.
async fn forwarded_proto(public: &Public, host: &str) -> Vec<String> {
    let reply = public.get(host, "/report").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let report = reply.json();
    let pairs = report["headers"].as_array().unwrap().iter();
    pairs.filter(|h| h[0] == "x-forwarded-proto").map(|h| h[1].as_str().unwrap().to_owned()).collect()
}
