//! The one place where ggrokd's tunnel operations become control messages of the protocol
//! version agreed with the server, and where the server's messages become events. Nothing else
//! builds or matches `Register`, `Claim`, `Registered`, `Claimed` and their kin, so a new version
//! changes this file and its tests.
//!
//! - Version 1: `Hello` without daemon id; `Register{host}` / `Unregister{host}`, answered by
//!   `Registered` / `Refused` / `Unregistered`.
//! - Version 2: `Hello` with the daemon id and connection index; `Claim{tunnel, takeover}` /
//!   `Release{tunnel}`, answered by `Claimed` / `ClaimRefused` / `Released`, and `Displaced` when
//!   another ggrokd of the same client took a tunnel over.
//! - Version 3: TCP tunnels: `Claim{tunnel: Tcp{port}}`, answered by `Claimed` with the port
//!   granted. ggrokd knows a TCP tunnel by the key `tcp:PORT` ([`crate::config::Public`]).
//! - Version 4: access rules in `Claim`. A tunnel with rules is never claimed from an older
//!   server, which would ignore them and serve it to anyone: it is refused here instead.

use ggrok_proto::access::AccessRules;
use ggrok_proto::control::{ClientMessage, ServerMessage, TunnelKey};

/// What ggrokd asks of the server about one tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelOp {
    /// Serve `host` here. `takeover`: take it from another live ggrokd of the same client (only
    /// version 2 carries it; a version-1 server always lets the newest session of a client win).
    Claim {
        /// The host or `*.` pattern.
        host: String,
        /// Whether this claim may displace another ggrokd.
        takeover: bool,
        /// Who may use it (version 4).
        access: AccessRules,
    },
    /// Stop serving `host` here.
    Release {
        /// The host or `*.` pattern.
        host: String,
    },
}

/// What the server's hello says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// The version the server says is in use.
    pub version: u32,
    /// The `[[client]]` name the token matched.
    pub client: String,
    /// The server's id of this session.
    pub session: u64,
    /// Version 2: the worker this connection landed on.
    pub worker: Option<u32>,
    /// Version 2: how many workers the server runs.
    pub workers: Option<u32>,
    /// Version 2: the replica's name.
    pub replica: Option<String>,
    /// The client's domain (`[[client]] domain`), for bare and random names.
    pub domain: Option<String>,
}

/// A server message, as ggrokd acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The greeting.
    Hello(ServerHello),
    /// A claim was accepted.
    Claimed {
        /// The host or pattern, or `tcp:PORT` as claimed.
        host: String,
        /// TCP tunnels: the port granted.
        port: Option<u16>,
        /// HTTP tunnels: the public URL, when the server says it.
        url: Option<String>,
    },
    /// A claim was refused.
    Refused {
        /// The host or pattern.
        host: String,
        /// Why.
        reason: String,
    },
    /// A release was done.
    Released {
        /// The host or pattern.
        host: String,
    },
    /// Another ggrokd took the tunnel over (version 2).
    Displaced {
        /// The host or pattern.
        host: String,
        /// Who took it.
        reason: String,
    },
    /// A tunnel this daemon was displaced from is free again: claim it back, without takeover.
    Available {
        /// The host or pattern.
        host: String,
    },
    /// The server could not act on a message of ours.
    Error(String),
    /// A message this build does not act on (a newer server's).
    Ignored,
}

/// ggrokd's hello: `daemon` (its id) and `connection` (the link's index) only from version 2.
pub fn hello(version: u32, daemon: &str, connection: u32) -> ClientMessage {
    let v2 = version >= 2;
    ClientMessage::Hello {
        version,
        agent: concat!("ggrokd/", env!("CARGO_PKG_VERSION")).into(),
        daemon: v2.then(|| daemon.to_owned()),
        connection: v2.then_some(connection),
    }
}

/// The oldest version that carries access rules.
pub const ACCESS_SINCE: u32 = 4;

/// `op` in the form `version` knows; the reason when that version cannot say it (a TCP tunnel
/// before version 3, access rules before version 4).
pub fn encode(version: u32, op: TunnelOp) -> Result<ClientMessage, String> {
    if let TunnelOp::Claim { access, .. } = &op
        && !access.is_empty()
        && version < ACCESS_SINCE
    {
        return Err(format!(
            "the server speaks tunnel protocol version {version}, which cannot enforce access rules \
             (basic_auth, allow_ips, deny_ips); not claimed, so that it is not served unprotected: upgrade the server"
        ));
    }
    let key = |key: String| match key.strip_prefix("tcp:").and_then(|p| p.parse::<u16>().ok()) {
        Some(port) if version >= 3 => Ok(TunnelKey::Tcp { port }),
        Some(_) => Err(format!(
            "the server speaks tunnel protocol version {version}, which has no TCP tunnels; upgrade the server"
        )),
        None => Ok(TunnelKey::Http { host: key }),
    };
    Ok(match (version, op) {
        (1, TunnelOp::Claim { host, .. }) => ClientMessage::Register { host: host_only(host)? },
        (1, TunnelOp::Release { host }) => ClientMessage::Unregister { host: host_only(host)? },
        (_, TunnelOp::Claim { host, takeover, access }) => {
            ClientMessage::Claim { tunnel: key(host)?, takeover, access }
        }
        (_, TunnelOp::Release { host }) => ClientMessage::Release { tunnel: key(host)? },
    })
}

fn host_only(key: String) -> Result<String, String> {
    if key.starts_with("tcp:") {
        return Err(
            "the server speaks tunnel protocol version 1, which has no TCP tunnels; upgrade the server"
                .into(),
        );
    }
    Ok(key)
}

/// A tunnel key as ggrokd knows it: the host, or `tcp:PORT`.
fn key_of(tunnel: TunnelKey) -> String {
    match tunnel {
        TunnelKey::Http { host } => host,
        tcp @ TunnelKey::Tcp { .. } => tcp.to_string(),
    }
}

/// The event a server message stands for. Both versions' forms are read whatever the agreed
/// version: a server never sends the other's, and reading them costs nothing.
pub fn decode(message: ServerMessage) -> Event {
    match message {
        ServerMessage::Hello { version, client, session, worker, workers, replica, domain } => {
            Event::Hello(ServerHello { version, client, session, worker, workers, replica, domain })
        }
        ServerMessage::Registered { host } => Event::Claimed { host, port: None, url: None },
        ServerMessage::Claimed { tunnel, port, url } => Event::Claimed { host: key_of(tunnel), port, url },
        ServerMessage::Refused { host, reason } => Event::Refused { host, reason },
        ServerMessage::ClaimRefused { tunnel, reason } => Event::Refused { host: key_of(tunnel), reason },
        ServerMessage::Unregistered { host } => Event::Released { host },
        ServerMessage::Released { tunnel } => Event::Released { host: key_of(tunnel) },
        ServerMessage::Displaced { tunnel, reason } => Event::Displaced { host: key_of(tunnel), reason },
        ServerMessage::Available { tunnel } => Event::Available { host: key_of(tunnel) },
        ServerMessage::Error { message } => Event::Error(message),
        ServerMessage::Unknown => Event::Ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(host: &str, takeover: bool) -> TunnelOp {
        TunnelOp::Claim { host: host.into(), takeover, access: AccessRules::default() }
    }

    fn http(host: &str) -> TunnelKey {
        TunnelKey::Http { host: host.into() }
    }

    #[test]
    fn version_one_registers_hosts_and_sends_no_identity() {
        assert_eq!(
            encode(1, claim("a.test", true)).unwrap(),
            ClientMessage::Register { host: "a.test".into() }
        );
        assert_eq!(
            encode(1, claim("a.test", false)).unwrap(),
            ClientMessage::Register { host: "a.test".into() }
        );
        let release = TunnelOp::Release { host: "*.b.test".into() };
        assert_eq!(encode(1, release).unwrap(), ClientMessage::Unregister { host: "*.b.test".into() });
        let ClientMessage::Hello { version, daemon, connection, .. } = hello(1, "d", 3) else { panic!() };
        assert_eq!((version, daemon, connection), (1, None, None));
        // On the wire, exactly what version-1 ggrokd sent.
        let json = serde_json::to_value(hello(1, "d", 3)).unwrap();
        assert_eq!(json.as_object().unwrap().keys().collect::<Vec<_>>(), ["agent", "type", "version"]);
    }

    #[test]
    fn version_two_claims_typed_tunnels_with_the_takeover_flag() {
        assert_eq!(
            encode(2, claim("a.test", true)).unwrap(),
            ClientMessage::Claim { tunnel: http("a.test"), takeover: true, access: AccessRules::default() }
        );
        assert_eq!(
            encode(2, claim("a.test", false)).unwrap(),
            ClientMessage::Claim { tunnel: http("a.test"), takeover: false, access: AccessRules::default() }
        );
        assert_eq!(
            encode(2, TunnelOp::Release { host: "a.test".into() }).unwrap(),
            ClientMessage::Release { tunnel: http("a.test") }
        );
        let ClientMessage::Hello { version, daemon, connection, .. } = hello(2, "d1", 3) else { panic!() };
        assert_eq!((version, daemon.as_deref(), connection), (2, Some("d1"), Some(3)));
    }

    #[test]
    fn answers_of_both_versions_read_as_one_set_of_events() {
        let claimed = Event::Claimed { host: "a.test".into(), port: None, url: None };
        assert_eq!(decode(ServerMessage::Registered { host: "a.test".into() }), claimed);
        assert_eq!(decode(ServerMessage::Claimed { tunnel: http("a.test"), port: None, url: None }), claimed);
        let refused = Event::Refused { host: "a.test".into(), reason: "held".into() };
        assert_eq!(decode(ServerMessage::Refused { host: "a.test".into(), reason: "held".into() }), refused);
        assert_eq!(
            decode(ServerMessage::ClaimRefused { tunnel: http("a.test"), reason: "held".into() }),
            refused
        );
        let released = Event::Released { host: "a.test".into() };
        assert_eq!(decode(ServerMessage::Unregistered { host: "a.test".into() }), released);
        assert_eq!(decode(ServerMessage::Released { tunnel: http("a.test") }), released);
        assert_eq!(
            decode(ServerMessage::Displaced { tunnel: http("a.test"), reason: "by laptop".into() }),
            Event::Displaced { host: "a.test".into(), reason: "by laptop".into() }
        );
        assert_eq!(decode(ServerMessage::Unknown), Event::Ignored);
        let available = Event::Available { host: "a.test".into() };
        assert_eq!(decode(ServerMessage::Available { tunnel: http("a.test") }), available);
        assert_eq!(decode(ServerMessage::Error { message: "x".into() }), Event::Error("x".into()));
    }

    #[test]
    fn version_three_claims_tcp_ports_and_older_versions_cannot() {
        let tcp = TunnelKey::Tcp { port: 0 };
        assert_eq!(
            encode(3, claim("tcp:0", true)).unwrap(),
            ClientMessage::Claim { tunnel: tcp.clone(), takeover: true, access: AccessRules::default() }
        );
        assert_eq!(
            encode(3, TunnelOp::Release { host: "tcp:5432".into() }).unwrap(),
            ClientMessage::Release { tunnel: TunnelKey::Tcp { port: 5432 } }
        );
        assert!(encode(2, claim("tcp:1", true)).unwrap_err().contains("upgrade the server"));
        assert!(encode(1, claim("tcp:1", true)).unwrap_err().contains("upgrade the server"));
        assert_eq!(
            decode(ServerMessage::Claimed { tunnel: tcp.clone(), port: Some(20001), url: None }),
            Event::Claimed { host: "tcp:0".into(), port: Some(20001), url: None }
        );
        assert_eq!(
            decode(ServerMessage::ClaimRefused { tunnel: tcp, reason: "no".into() }),
            Event::Refused { host: "tcp:0".into(), reason: "no".into() }
        );
    }

    #[test]
    fn access_rules_go_only_to_a_server_that_enforces_them() {
        let access = AccessRules { allow_ips: vec!["127.0.0.2".parse().unwrap()], ..Default::default() };
        let op = |host: &str| TunnelOp::Claim { host: host.into(), takeover: true, access: access.clone() };
        assert_eq!(
            encode(4, op("a.test")).unwrap(),
            ClientMessage::Claim { tunnel: http("a.test"), takeover: true, access: access.clone() }
        );
        for version in 1..=3 {
            let err = encode(version, op("a.test")).unwrap_err();
            assert!(
                err.contains("cannot enforce access rules") && err.contains("upgrade the server"),
                "{err}"
            );
        }
        assert!(encode(3, op("tcp:22")).is_err());
        assert!(encode(3, claim("a.test", true)).is_ok(), "a tunnel without rules is claimed as before");
    }

    #[test]
    fn a_version_two_hello_carries_worker_and_replica() {
        let hello = ServerMessage::Hello {
            version: 2,
            client: "alice".into(),
            session: 9,
            worker: Some(1),
            workers: Some(4),
            replica: Some("eu-1".into()),
            domain: Some("alice.example.com".into()),
        };
        let Event::Hello(h) = decode(hello) else { panic!() };
        assert_eq!(
            (h.worker, h.workers, h.replica.as_deref(), h.session),
            (Some(1), Some(4), Some("eu-1"), 9)
        );
    }
}
