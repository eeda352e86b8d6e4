//! Tests of `output`.

use super::*;

fn tunnel(host: &str, state: &str) -> TunnelInfo {
    TunnelInfo {
        host: host.into(),
        local: "localhost:8080".into(),
        host_header: ggrok_proto::ctl::HostHeader::Keep,
        state: serde_json::from_value(serde_json::Value::String(state.into())).unwrap(),
        reason: None,
        requests: 12,
        errors: 0,
        status_4xx: 3,
        status_5xx: 1,
        bytes_in: 2048,
        bytes_out: 5_000_000,
        active: 2,
        p50_ms: Some(1.234),
        p99_ms: Some(250.0),
        last_error: None,
        saved: true,
        access: None,
        url: None,
    }
}

#[test]
fn list_shows_the_public_url_when_the_server_gave_one() {
    let mut online = tunnel("myapp.alice.test", "online");
    online.url = Some("https://myapp.alice.test".into());
    let text = tunnel_table(&[online, tunnel("b.test", "connecting")], 0.0);
    assert!(text.lines().nth(1).unwrap().starts_with("https://myapp.alice.test "), "{text}");
    assert!(text.lines().nth(2).unwrap().starts_with("b.test "), "{text}");
}

#[test]
fn table_is_aligned() {
    let mut refused = tunnel("b.example.com", "refused");
    refused.reason = Some("held by another client".into());
    refused.last_error = Some(TimedError { at: 940, message: "boom".into() });
    let text = tunnel_table(&[tunnel("api.test", "online"), refused], 1000.0);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("HOST           LOCAL           STATE"), "{text}");
    assert!(lines[2].contains("refused: held by another client"));
    assert!(lines[2].ends_with("1m 0s ago: boom"), "{text}");
    let col = lines[0].find("LOCAL").unwrap();
    assert_eq!(&lines[1][col..col + 9], "localhost");
}

#[test]
fn list_shows_the_compact_counters() {
    let text = tunnel_table(&[tunnel("api.test", "online")], 0.0);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("REQUESTS  4XX  5XX  ACTIVE  LAST ERROR"), "{text}");
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(cells, ["api.test", "localhost:8080", "online", "12", "3", "1", "2", "-"]);
    assert!(!text.contains("ACCESS"), "no access column while no tunnel has rules");
}

#[test]
fn protected_tunnels_say_so_without_secrets() {
    let mut locked = tunnel("api.test", "online");
    locked.access = Some(ggrok_proto::ctl::AccessInfo {
        basic_auth: vec!["alice".into()],
        allow_ips: vec!["127.0.0.2/32".into()],
        deny_ips: vec![],
    });
    let text = tunnel_table(&[locked, tunnel("open.test", "online")], 0.0);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("HOST       LOCAL           ACCESS                STATE"), "{text}");
    assert!(lines[1].contains("basic auth, ip rules  online"), "{text}");
    assert!(lines[2].contains("localhost:8080  -                     online"), "{text}");
}

#[test]
fn status_shows_every_counter() {
    let status = StatusInfo {
        daemon_version: "0.1.0".into(),
        pid: 7,
        uptime_secs: 60,
        config: "ggrokd.toml".into(),
        server: "ws://t:80/$$ggrok".into(),
        connection: LinkState::Connected,
        since: 0,
        attempt: 0,
        last_error: None,
        next_retry: None,
        connections: Vec::new(),
        servers: Vec::new(),
        tunnels_online: 1,
        tunnels_total: 1,
        tunnels: vec![tunnel("api.test", "online")],
        buffers: None,
        inspector: Some("http://127.0.0.1:4040".into()),
    };
    let text = status_text(&status, 60.0);
    assert!(text.contains("\ninspector:   http://127.0.0.1:4040\n"), "{text}");
    let header = text.lines().find(|l| l.starts_with("HOST")).expect(&text);
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["HOST", "REQUESTS", "4XX", "5XX", "UNREACHABLE", "IN", "OUT", "ACTIVE", "P50", "P99"]
    );
    let row = text.lines().last().unwrap();
    assert!(row.starts_with("api.test") && row.contains("2.0 KiB") && row.contains("4.8 MiB"), "{text}");
    assert!(row.contains("1.23ms") && row.ends_with("250.0ms"), "{text}");
}

fn connection(index: u32, state: LinkState) -> ConnectionInfo {
    ConnectionInfo {
        replica: Some("eu-1".into()),
        address: Some("192.0.2.1:443".into()),
        worker: Some(index),
        transport: Some("raw".into()),
        protocol: Some(2),
        session: Some(10 + u64::from(index)),
        requests: 42,
        ..ConnectionInfo::new(index, "wss://t.example.com:443/$$ggrok", state)
    }
}

#[test]
fn status_lists_every_connection() {
    let mut down = connection(1, LinkState::Disconnected);
    (down.replica, down.worker, down.transport) = (None, None, None);
    (down.attempt, down.next_retry) = (3, Some(62.5));
    down.last_error = Some(TimedError { at: 55, message: "cannot connect: refused".into() });
    let status = StatusInfo {
        daemon_version: "0.1.0".into(),
        pid: 7,
        uptime_secs: 60,
        config: "ggrokd.toml".into(),
        server: "wss://t.example.com:443/$$ggrok".into(),
        connection: LinkState::Connected,
        since: 0,
        attempt: 0,
        last_error: None,
        next_retry: None,
        connections: vec![connection(0, LinkState::Connected), down],
        servers: Vec::new(),
        tunnels_online: 3,
        tunnels_total: 3,
        tunnels: Vec::new(),
        buffers: None,
        inspector: None,
    };
    let text = status_text(&status, 60.0);
    assert!(text.contains("tunnels:     3 of 3 online; connections 1/2 up\n"), "{text}");
    assert!(text.contains("inspector:   not listening (inspect = \"off\""), "{text}");
    let lines: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("CONN")).collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "CONN",
            "SERVER",
            "REPLICA",
            "WORKER",
            "TRANSPORT",
            "STATE",
            "SINCE",
            "REQUESTS",
            "ATTEMPT",
            "RETRY",
            "IN",
            "LAST",
            "ERROR"
        ]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "t.example.com:443", "eu-1", "0", "raw", "connected", "1m", "0s", "42", "-", "-", "-"]
    );
    assert_eq!(
        lines[2].split_whitespace().take(10).collect::<Vec<_>>(),
        ["1", "t.example.com:443", "-", "-", "-", "disconnected", "1m", "0s", "42", "3"]
    );
    assert!(lines[2].contains("2.5s") && lines[2].ends_with("5s ago: cannot connect: refused"), "{text}");
}

#[test]
fn sizes_and_times_read_well() {
    assert_eq!(bytes(0), "0 B");
    assert_eq!(bytes(1023), "1023 B");
    assert_eq!(bytes(1536), "1.5 KiB");
    assert_eq!(bytes(3 << 30), "3.0 GiB");
    assert_eq!(millis(0.4242), "0.42ms");
    assert_eq!(millis(12.34), "12.3ms");
    assert_eq!(millis(1250.0), "1.25s");
    assert_eq!(millis(192_000.0), "3m 12s");
}

#[test]
fn empty_list_says_how_to_add() {
    assert!(tunnel_table(&[], 0.0).contains("ggrokctl add"));
}

#[test]
fn durations_read_well() {
    assert_eq!(duration(5.0), "5s");
    assert_eq!(duration(192.0), "3m 12s");
    assert_eq!(duration(7500.0), "2h 5m");
    assert_eq!(duration(90000.0), "1d 1h");
}

#[test]
fn list_points_at_servers_without_a_connection_up() {
    let down = |server: &str, error: Option<&str>| ServerDown {
        server: server.into(),
        last_error: error.map(|m| TimedError { at: 90, message: m.into() }),
    };
    assert_eq!(down_lines(&[], 100.0), "");
    let text = down_lines(
        &[
            down("wss://t.example.com:443/$$ggrok", Some("unauthorized (401)")),
            down("ws://b:80/$$ggrok", None),
        ],
        100.0,
    );
    assert_eq!(
        text,
        "not connected to t.example.com:443, last error 10s ago: unauthorized (401); see ggrokctl status\n\
         not connected to b:80 yet; see ggrokctl status\n"
    );
}

#[test]
fn hash_password_and_completions_print_json_documents_with_json() {
    assert_eq!(hashed("bob", "bob:$argon2id$x", false), "bob:$argon2id$x");
    let doc: serde_json::Value = serde_json::from_str(&hashed("bob", "bob:$argon2id$x", true)).unwrap();
    assert_eq!(doc, serde_json::json!({ "user": "bob", "entry": "bob:$argon2id$x" }));
    assert_eq!(completions("bash", "complete -F x\n", false), "complete -F x\n");
    let doc: serde_json::Value = serde_json::from_str(&completions("bash", "complete -F x\n", true)).unwrap();
    assert_eq!(doc, serde_json::json!({ "shell": "bash", "script": "complete -F x\n" }));
}
