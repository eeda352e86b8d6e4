//! Tests of `control`.

use super::*;
use futures_util::{SinkExt, StreamExt};
use tokio_util::codec::{FramedRead, FramedWrite};

#[tokio::test]
async fn messages_round_trip_over_a_stream() {
    let (a, b) = tokio::io::duplex(4096);
    let mut client = FramedWrite::new(a, ClientCodec::default());
    let server = FramedRead::new(b, ServerCodec::default());
    let sent = vec![
        ClientMessage::Hello {
            version: 2,
            agent: "ggrokd/test".into(),
            daemon: Some("d1".into()),
            connection: Some(1),
        },
        ClientMessage::Register { host: "*.example.com".into() },
        ClientMessage::Unregister { host: "api.example.com".into() },
        ClientMessage::Claim {
            tunnel: TunnelKey::Http { host: "a.test".into() },
            takeover: false,
            access: AccessRules::default(),
        },
        ClientMessage::Claim {
            tunnel: TunnelKey::Tcp { port: 22 },
            takeover: true,
            access: AccessRules { allow_ips: vec!["10.0.0.0/8".parse().unwrap()], ..Default::default() },
        },
        ClientMessage::Release { tunnel: TunnelKey::Http { host: "a.test".into() } },
    ];
    for m in &sent {
        client.send(m.clone()).await.unwrap();
    }
    drop(client);
    let got: Vec<_> = server.map(|m| m.unwrap()).collect().await;
    assert_eq!(got, sent);
}

#[test]
fn server_messages_have_a_stable_json_form() {
    let m = ServerMessage::Refused { host: "a.com".into(), reason: "held".into() };
    assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"type":"refused","host":"a.com","reason":"held"}"#);
    let hello: ServerMessage =
        serde_json::from_str(r#"{"type":"hello","version":1,"client":"alice","session":7}"#).unwrap();
    let v1 = ServerMessage::Hello {
        version: 1,
        client: "alice".into(),
        session: 7,
        worker: None,
        workers: None,
        replica: None,
        domain: None,
    };
    assert_eq!(hello, v1);
    // What a version-1 daemon (which rejects unknown fields) reads: no version-2 fields.
    assert_eq!(
        serde_json::to_string(&v1).unwrap(),
        r#"{"type":"hello","version":1,"client":"alice","session":7}"#
    );
    let claimed =
        ServerMessage::Claimed { tunnel: TunnelKey::Http { host: "a.com".into() }, port: None, url: None };
    assert_eq!(
        serde_json::to_string(&claimed).unwrap(),
        r#"{"type":"claimed","tunnel":{"kind":"http","host":"a.com"}}"#
    );
    let tcp = ServerMessage::Claimed { tunnel: TunnelKey::Tcp { port: 0 }, port: Some(20005), url: None };
    assert_eq!(
        serde_json::to_string(&tcp).unwrap(),
        r#"{"type":"claimed","tunnel":{"kind":"tcp","port":0},"port":20005}"#
    );
}

#[test]
fn a_version_one_hello_reads_as_version_two_without_its_fields() {
    let hello: ClientMessage =
        serde_json::from_str(r#"{"type":"hello","version":1,"agent":"ggrokd/0.1.0"}"#).unwrap();
    assert_eq!(
        hello,
        ClientMessage::Hello { version: 1, agent: "ggrokd/0.1.0".into(), daemon: None, connection: None }
    );
    let claim: ClientMessage =
        serde_json::from_str(r#"{"type":"claim","tunnel":{"kind":"http","host":"a.com"}}"#).unwrap();
    assert_eq!(
        claim,
        ClientMessage::Claim {
            tunnel: TunnelKey::Http { host: "a.com".into() },
            takeover: true,
            access: AccessRules::default()
        }
    );
}

#[test]
fn unknown_fields_and_message_types_are_tolerated() {
    let mut codec = ServerCodec::default();
    let extra = br#"{"type":"register","host":"a.com","from_the_future":1}"#;
    assert_eq!(
        codec.decode(&mut frame(extra)).unwrap(),
        Some(ClientMessage::Register { host: "a.com".into() })
    );
    let unknown = br#"{"type":"launch_missiles","at":"dawn"}"#;
    assert_eq!(codec.decode(&mut frame(unknown)).unwrap(), Some(ClientMessage::Unknown));
    let mut client = ClientCodec::default();
    let news = br#"{"type":"news","text":"hi"}"#;
    assert_eq!(client.decode(&mut frame(news)).unwrap(), Some(ServerMessage::Unknown));
}

fn frame(json: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&(json.len() as u32).to_be_bytes());
    buf.extend_from_slice(json);
    buf
}

#[test]
fn malformed_messages_are_errors() {
    let mut codec = ServerCodec::default();
    for bad in [&b"{not json"[..], br#"{"type":"register"}"#, br#"{"host":"a.com"}"#] {
        let err = codec.decode(&mut frame(bad)).unwrap_err();
        assert!(matches!(err, ControlError::Malformed(_)), "{err}");
    }
}

#[test]
fn oversized_frames_are_refused_before_buffering() {
    let mut codec = ServerCodec::default();
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&((MAX_CONTROL_MESSAGE as u32) + 1).to_be_bytes());
    buf.extend_from_slice(b"{");
    assert!(matches!(codec.decode(&mut buf), Err(ControlError::Io(_))));
}

#[test]
fn partial_frames_wait_for_more() {
    let mut codec = ClientCodec::default();
    let full = frame(br#"{"type":"registered","host":"a.com"}"#);
    let mut part = BytesMut::from(&full[..10]);
    assert!(codec.decode(&mut part).unwrap().is_none());
    part.extend_from_slice(&full[10..]);
    assert_eq!(codec.decode(&mut part).unwrap(), Some(ServerMessage::Registered { host: "a.com".into() }));
}
