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
}

/// A server message, as ggrokd acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The greeting.
    Hello(ServerHello),
    /// A claim was accepted.
    Claimed {
        /// The host or pattern.
        host: String,
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

/// `op` in the form `version` knows.
pub fn encode(version: u32, op: TunnelOp) -> ClientMessage {
    match (version, op) {
        (1, TunnelOp::Claim { host, .. }) => ClientMessage::Register { host },
        (1, TunnelOp::Release { host }) => ClientMessage::Unregister { host },
        (_, TunnelOp::Claim { host, takeover }) => {
            ClientMessage::Claim { tunnel: TunnelKey::Http { host }, takeover }
        }
        (_, TunnelOp::Release { host }) => ClientMessage::Release { tunnel: TunnelKey::Http { host } },
    }
}

/// The event a server message stands for. Both versions' forms are read whatever the agreed
/// version: a server never sends the other's, and reading them costs nothing.
pub fn decode(message: ServerMessage) -> Event {
    match message {
        ServerMessage::Hello { version, client, session, worker, workers, replica } => {
            Event::Hello(ServerHello { version, client, session, worker, workers, replica })
        }
        ServerMessage::Registered { host } | ServerMessage::Claimed { tunnel: TunnelKey::Http { host } } => {
            Event::Claimed { host }
        }
        ServerMessage::Refused { host, reason }
        | ServerMessage::ClaimRefused { tunnel: TunnelKey::Http { host }, reason } => {
            Event::Refused { host, reason }
        }
        ServerMessage::Unregistered { host }
        | ServerMessage::Released { tunnel: TunnelKey::Http { host } } => Event::Released { host },
        ServerMessage::Displaced { tunnel: TunnelKey::Http { host }, reason } => {
            Event::Displaced { host, reason }
        }
        ServerMessage::Error { message } => Event::Error(message),
        ServerMessage::Unknown => Event::Ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(host: &str, takeover: bool) -> TunnelOp {
        TunnelOp::Claim { host: host.into(), takeover }
    }

    fn http(host: &str) -> TunnelKey {
        TunnelKey::Http { host: host.into() }
    }

    #[test]
    fn version_one_registers_hosts_and_sends_no_identity() {
        assert_eq!(encode(1, claim("a.test", true)), ClientMessage::Register { host: "a.test".into() });
        assert_eq!(encode(1, claim("a.test", false)), ClientMessage::Register { host: "a.test".into() });
        let release = TunnelOp::Release { host: "*.b.test".into() };
        assert_eq!(encode(1, release), ClientMessage::Unregister { host: "*.b.test".into() });
        let ClientMessage::Hello { version, daemon, connection, .. } = hello(1, "d", 3) else { panic!() };
        assert_eq!((version, daemon, connection), (1, None, None));
        // On the wire, exactly what version-1 ggrokd sent.
        let json = serde_json::to_value(hello(1, "d", 3)).unwrap();
        assert_eq!(json.as_object().unwrap().keys().collect::<Vec<_>>(), ["agent", "type", "version"]);
    }

    #[test]
    fn version_two_claims_typed_tunnels_with_the_takeover_flag() {
        assert_eq!(
            encode(2, claim("a.test", true)),
            ClientMessage::Claim { tunnel: http("a.test"), takeover: true }
        );
        assert_eq!(
            encode(2, claim("a.test", false)),
            ClientMessage::Claim { tunnel: http("a.test"), takeover: false }
        );
        assert_eq!(
            encode(2, TunnelOp::Release { host: "a.test".into() }),
            ClientMessage::Release { tunnel: http("a.test") }
        );
        let ClientMessage::Hello { version, daemon, connection, .. } = hello(2, "d1", 3) else { panic!() };
        assert_eq!((version, daemon.as_deref(), connection), (2, Some("d1"), Some(3)));
    }

    #[test]
    fn answers_of_both_versions_read_as_one_set_of_events() {
        let claimed = Event::Claimed { host: "a.test".into() };
        assert_eq!(decode(ServerMessage::Registered { host: "a.test".into() }), claimed);
        assert_eq!(decode(ServerMessage::Claimed { tunnel: http("a.test") }), claimed);
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
        assert_eq!(decode(ServerMessage::Error { message: "x".into() }), Event::Error("x".into()));
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
        };
        let Event::Hello(h) = decode(hello) else { panic!() };
        assert_eq!(
            (h.worker, h.workers, h.replica.as_deref(), h.session),
            (Some(1), Some(4), Some("eu-1"), 9)
        );
    }
}
