//! What ggrokctl says, and with which exit code: a wrong command line (caught before ggrokd is
//! asked), `remove`, empty `logs` listings, `--json` of the commands that need no ggrokd, and a
//! connection the server refuses, shown by `add`, `ready` and `list`.

use ggrok_tests::TEST_TOKEN;
use ggrok_tests::client::Public;
use ggrok_tests::cluster::{ClientDef, Cluster, Daemon, Server, ctl, ctl_given};
use ggrok_tests::upstream::Upstream;
use serde_json::Value;
use std::process::Output;

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "ggrokctl failed ({}): {:?}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_wrong_local_is_exit_2_quoted_once_whether_or_not_ggrokd_runs() {
    let dir = tempfile::tempdir().unwrap();
    // No ggrokd behind this socket: the command line is checked first all the same.
    let socket = dir.path().join("nobody.sock");
    let cases = [
        ("99999", "\"99999\" is not a port number (1-65535)"),
        ("0", "\"0\" is not a port number (1-65535)"),
        ("abc", "\"abc\" is not a local address"),
        ("ftp://x:21", "\"ftp://x:21\": a local service is http://, https:// or h2c://"),
    ];
    for (local, expected) in cases {
        let out = ctl(&socket, &["add", "foo.alice.test", local]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{local}: {err}");
        assert!(err.starts_with(&format!("error: {expected}")), "{local}: {err}");
        assert_eq!(err.matches(&format!("{local:?}")).count(), 1, "quoted once: {err}");
        assert!(err.contains("Usage: ggrokctl add"), "{err}");
    }
}

#[test]
fn remove_without_an_argument_shows_both_forms() {
    let dir = tempfile::tempdir().unwrap();
    let out = ctl(&dir.path().join("nobody.sock"), &["remove"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("ggrokctl remove [OPTIONS] <HOST>") && err.contains("--tcp <PORT>"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_says_what_became_of_the_config() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("first.test", &up.port())]);
    let daemon = &cluster.daemon;
    ok(&daemon.ctl(&["add", "saved.test", &up.port()]));
    assert_eq!(
        ok(&daemon.ctl(&["remove", "saved.test"])),
        "saved.test is offline and removed from the config\n"
    );
    ok(&daemon.ctl(&["add", "temp.test", &up.port(), "--no-save"]));
    let text = ok(&daemon.ctl(&["remove", "temp.test"]));
    assert_eq!(text, "temp.test is offline and removed (it was not in the config)\n");
    let text = ok(&daemon.ctl(&["remove", "first.test", "--no-save"]));
    assert_eq!(
        text,
        "first.test is offline until ggrokd restarts or reloads; the config still has it (--no-save)\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_listings_say_what_they_looked_for() {
    let up = Upstream::start().await;
    let cluster = Cluster::start(&[("api.test", &up.port())]);
    let socket = &cluster.daemon.socket;
    Public::new(cluster.addr()).get("api.test", "/").await;
    ggrok_tests::logs::poll("the request in the log", || {
        (!ggrok_tests::logs::entries(socket, &[]).is_empty()).then_some(())
    });
    // Requests are kept, and none was asked for: nothing to say.
    assert_eq!(ok(&ctl(socket, &["logs", "-n", "0"])), "");
    let text = ok(&ctl(socket, &["logs", "nope.test"]));
    assert!(text.starts_with("no requests for nope.test among those ggrokd keeps"), "{text}");
    let text = ok(&ctl(socket, &["logs"]));
    assert!(text.contains("api.test/") && !text.contains("no requests"), "{text}");
}

#[test]
fn commands_without_ggrokd_print_json_documents_too() {
    let out = ctl_given(&["--json", "hash-password", "bob"], "pw");
    let doc: Value = serde_json::from_str(&ok(&out)).expect("one JSON document");
    assert_eq!(doc["user"], "bob");
    assert!(doc["entry"].as_str().unwrap().starts_with("bob:$argon2id$"), "{doc}");

    let dir = tempfile::tempdir().unwrap();
    let out = ctl(&dir.path().join("nobody.sock"), &["completions", "bash", "--json"]);
    let doc: Value = serde_json::from_str(&ok(&out)).expect("one JSON document");
    assert_eq!(doc["shell"], "bash");
    assert!(doc["script"].as_str().unwrap().contains("ggrokctl"), "{doc}");
}

#[test]
fn a_token_the_server_refuses_shows_in_add_ready_and_list() {
    let server = Server::start(&[ClientDef { name: "t", token: TEST_TOKEN, hosts: &["*.test"] }]);
    let daemon = Daemon::start(&server.ws_url(), "not-the-right-token", &[("a.test", "1")], "");
    daemon.wait_status("a 401", |s| s["last_error"]["message"].as_str().is_some_and(|m| m.contains("401")));

    let text = ok(&daemon.ctl(&["list"]));
    let line = text.lines().last().unwrap();
    let server_name = server.addr.to_string();
    assert!(line.starts_with(&format!("not connected to {server_name}, last error ")), "{text}");
    assert!(
        line.contains("unauthorized")
            && line.ends_with("(401); check `token` in the config; see ggrokctl status"),
        "{text}"
    );
    let list: Value = serde_json::from_str(&ok(&daemon.ctl(&["list", "--json"]))).unwrap();
    let down = &list["servers_down"][0];
    assert!(down["last_error"]["message"].as_str().unwrap().contains("401"), "{list}");

    let out = daemon.ctl(&["ready"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("; last error: ") && text.contains("(401)"), "{text}");

    let text = ok(&daemon.ctl(&["add", "b.test", "8080"]));
    assert!(text.contains("but ggrokd is not connected to the server: ") && text.contains("(401)"), "{text}");
}
