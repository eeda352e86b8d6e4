//! Tests of `ctl`.

use super::*;

#[test]
fn requests_have_a_stable_json_form() {
    let add = CtlRequest {
        version: 1,
        command: Command::Add {
            host: "a.test".into(),
            local: "8080".into(),
            host_header: None,
            save: true,
            basic_auth: vec![],
            allow_ips: vec![],
            deny_ips: vec![],
            proxy_protocol: false,
            ca_file: None,
            tls_skip_verify: false,
        },
    };
    assert_eq!(
        serde_json::to_string(&add).unwrap(),
        r#"{"version":1,"cmd":"add","host":"a.test","local":"8080","save":true}"#
    );
    let parsed: CtlRequest = serde_json::from_str(r#"{"version":1,"cmd":"remove","host":"a.test"}"#).unwrap();
    assert_eq!(parsed.command, Command::Remove { host: "a.test".into(), save: true });
    let list: CtlRequest = serde_json::from_str(r#"{"version":1,"cmd":"list"}"#).unwrap();
    assert_eq!(list.command, Command::List);
}

#[test]
fn unknown_and_malformed_commands_do_not_parse() {
    for bad in [
        r#"{"version":1,"cmd":"explode"}"#,
        r#"{"version":1,"cmd":"add","host":"a.test"}"#,
        r#"{"cmd":"list"}"#,
        r#"[1,2]"#,
    ] {
        assert!(serde_json::from_str::<CtlRequest>(bad).is_err(), "{bad}");
    }
}

#[test]
fn responses_round_trip() {
    let r = CtlResponse::error(ErrorCode::Exists, "a.test already has a tunnel");
    let text = serde_json::to_string(&r).unwrap();
    assert_eq!(
        text,
        r#"{"version":1,"kind":"error","code":"exists","message":"a.test already has a tunnel"}"#
    );
    assert_eq!(serde_json::from_str::<CtlResponse>(&text).unwrap(), r);
}

#[test]
fn logs_requests_and_their_answers() {
    let parsed: CtlRequest =
        serde_json::from_str(r#"{"version":1,"cmd":"logs","follow":true,"host":"a.test"}"#).unwrap();
    assert_eq!(parsed.command, Command::Logs { follow: true, host: Some("a.test".into()), last: None });
    let plain: CtlRequest = serde_json::from_str(r#"{"version":1,"cmd":"logs"}"#).unwrap();
    assert_eq!(plain.command, Command::Logs { follow: false, host: None, last: None });
    let missed = CtlResponse::new(Reply::Missed { count: 3 });
    assert_eq!(serde_json::to_string(&missed).unwrap(), r#"{"version":1,"kind":"missed","count":3}"#);
    let entry = LogEntry {
        time: 1_700_000_000.25,
        host: "a.test".into(),
        method: "GET".into(),
        path: "/x?y=1".into(),
        status: 200,
        duration_ms: 1.5,
        bytes_in: 0,
        bytes_out: 10,
        client: Some("127.0.0.1".into()),
        upgrade: None,
    };
    let text = serde_json::to_string(&CtlResponse::new(Reply::Request(entry.clone()))).unwrap();
    assert!(text.starts_with(r#"{"version":1,"kind":"request","time":1700000000.25,"host":"a.test""#));
    assert_eq!(serde_json::from_str::<CtlResponse>(&text).unwrap().reply, Reply::Request(entry));
}

/// An older daemon's answer, without the traffic counters, still reads.
#[test]
fn tunnel_info_without_the_newer_counters_parses() {
    let old = r#"{"host":"a.test","local":"localhost:1","host_header":"keep","state":"online",
        "requests":3,"errors":1,"saved":true}"#;
    let info: TunnelInfo = serde_json::from_str(old).unwrap();
    assert_eq!((info.requests, info.status_5xx, info.active, info.p50_ms), (3, 0, 0, None));
    assert_eq!((info.state, info.host_header), (TunnelStatus::Online, HostHeader::Keep));
    let newer = old.replace("online", "hibernating");
    assert_eq!(serde_json::from_str::<TunnelInfo>(&newer).unwrap().state, TunnelStatus::Unknown);
}

#[test]
fn explicit_socket_path_wins() {
    assert_eq!(socket_path(Some("/x/y.sock".into())), PathBuf::from("/x/y.sock"));
}
