//! Tests of `commands`: what `add` and `remove` say.

use super::*;

fn status(connection: &str, last_error: Option<&str>) -> StatusInfo {
    let mut status = serde_json::json!({
        "daemon_version": "0", "pid": 1, "uptime_secs": 0, "config": "ggrokd.toml",
        "server": "ws://s/$$ggrok", "connection": connection, "since": 0, "attempt": 3,
        "tunnels_online": 0, "tunnels_total": 1,
    });
    if let Some(message) = last_error {
        status["last_error"] = serde_json::json!({ "at": 0, "message": message });
    }
    serde_json::from_value(status).unwrap()
}

#[test]
fn remove_says_what_became_of_the_config_in_one_sentence() {
    let say = |from_file, in_file| removed_message("tcp:36205", Removed { from_file, in_file });
    assert_eq!(say(true, true), "tcp:36205 is offline and removed from the config");
    assert_eq!(
        say(false, true),
        "tcp:36205 is offline until ggrokd restarts or reloads; the config still has it (--no-save)"
    );
    assert_eq!(say(false, false), "tcp:36205 is offline and removed (it was not in the config)");
}

#[test]
fn a_pending_add_says_why_when_no_connection_is_up() {
    let unauthorized = "unauthorized: the server rejected the token, or wants one (401)";
    let text = pending("a.test", "saved to the config", &status("disconnected", Some(unauthorized)));
    assert!(text.starts_with("a.test added (saved to the config), but ggrokd is not connected"), "{text}");
    assert!(text.contains(unauthorized), "{text}");
    let text = pending("a.test", "not saved", &status("connecting", None));
    assert_eq!(text, "a.test added (not saved); it goes online when the connection to the server is up");
    // Connected (an old error aside): the server has yet to answer.
    let text = pending("a.test", "not saved", &status("connected", Some("old")));
    assert!(text.contains("the server has not answered yet") && !text.contains("old"), "{text}");
}
