//! The server's end of a session's control stream: the greetings, then the daemon's claims and
//! releases, answered in the forms of the protocol version agreed on (version 1: hosts with
//! `Register`; version 2: typed claims), and messages other sessions queue for it (`Displaced`).

use super::daemons::Daemon;
use super::registry::{Claim, Owner, Refused};
use super::session::Session;
use crate::State;
use crate::access::{Access, Guard};
use crate::config::ClientEntry;
use crate::ops::metrics::Limit;
use futures_util::{SinkExt, StreamExt};
use ggrok_proto::access::AccessRules;
use ggrok_proto::control::{ClientMessage, ControlError, ServerCodec, ServerMessage, TunnelKey};
use ggrok_proto::host::HostPattern;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::codec::{Framed, LengthDelimitedCodecError};
use tracing::{info, warn};

/// The control stream.
pub type Control = Framed<super::h2c::StreamIo, ServerCodec>;

/// What the daemon said of itself.
pub struct Greeting {
    /// Its daemon id (version 2).
    pub daemon: Option<String>,
    /// Which of its connections this is (version 2).
    pub connection: Option<u32>,
}

/// Where a session is, for the greeting.
pub struct Ids<'a> {
    /// The session id.
    pub session: u64,
    /// The protocol version agreed on.
    pub protocol: u32,
    /// The worker serving it.
    pub worker: u32,
    /// The client it authenticated as.
    pub client: &'a ClientEntry,
}

/// Sends the server's greeting and reads the daemon's, which must come within the handshake
/// timeout (a silent control stream would otherwise hold a session, and its slot, forever).
pub async fn greet(state: &State, ids: Ids<'_>, control: &mut Control) -> Result<Greeting, String> {
    let v2 = ids.protocol >= 2;
    let hello = ServerMessage::Hello {
        version: ids.protocol,
        client: ids.client.name.clone(),
        session: ids.session,
        worker: v2.then_some(ids.worker),
        workers: v2.then_some(state.workers),
        replica: v2.then(|| state.config().cluster.replica.clone()),
        // A version-1 daemon refuses fields it does not know.
        domain: ids.client.domain.clone().filter(|_| v2),
    };
    if let Err(e) = control.send(hello).await {
        return Err(format!("control stream: {e}"));
    }
    let timeout = state.config().limits.handshake_timeout;
    match tokio::time::timeout(timeout, control.next()).await {
        Ok(Some(Ok(ClientMessage::Hello { version, agent, daemon, connection }))) => {
            info!(session = ids.session, agent, version, daemon, connection, "daemon identified");
            Ok(Greeting { daemon: daemon.filter(|_| v2), connection: connection.filter(|_| v2) })
        }
        Ok(Some(Ok(other))) => Err(format!("the daemon sent {other:?} before its greeting")),
        Ok(Some(Err(e))) => {
            if is_oversized(&e) {
                state.metrics.limit_hit(Limit::MaxControlMessage);
            }
            Err(format!("control stream: {e}"))
        }
        Ok(None) => Err("control stream closed before the greeting".to_owned()),
        Err(_) => {
            state.metrics.limit_hit(Limit::HandshakeTimeout);
            warn!(session = ids.session, "limit: no greeting within handshake_timeout; closing the session");
            Err("no greeting on the control stream".to_owned())
        }
    }
}

/// Reads the daemon's messages and sends what others queued for it, until the control stream
/// ends; returns why it ended.
pub async fn serve(
    state: &Arc<State>,
    client: &ClientEntry,
    session: &Arc<Session>,
    daemon: &Arc<Daemon>,
    control: &mut Control,
    mut queued: mpsc::UnboundedReceiver<ServerMessage>,
) -> String {
    let to = Claimant { state, client, session, daemon };
    loop {
        let incoming = tokio::select! {
            incoming = control.next() => incoming,
            Some(message) = queued.recv() => {
                if let Err(e) = control.send(message).await {
                    return format!("control stream: {e}");
                }
                continue;
            }
        };
        let reply = match incoming {
            None => return "control stream closed".to_owned(),
            Some(Err(ControlError::Malformed(e))) => {
                warn!(session = session.id, "malformed control message: {e}");
                ServerMessage::Error { message: format!("malformed control message: {e}") }
            }
            Some(Err(e)) => {
                if is_oversized(&e) {
                    state.metrics.limit_hit(Limit::MaxControlMessage);
                }
                return e.to_string();
            }
            Some(Ok(ClientMessage::Hello { .. })) => {
                ServerMessage::Error { message: "greeted twice".to_owned() }
            }
            Some(Ok(ClientMessage::Register { host })) => match to.claim(&host, true, AccessRules::default())
            {
                Ok(()) => ServerMessage::Registered { host },
                Err(reason) => ServerMessage::Refused { host, reason },
            },
            Some(Ok(ClientMessage::Unregister { host })) => {
                to.release(&host);
                ServerMessage::Unregistered { host }
            }
            Some(Ok(ClientMessage::Claim { tunnel, takeover, access })) => match &tunnel {
                TunnelKey::Http { host } => match to.claim(host, takeover, access) {
                    Ok(()) => {
                        let url = Some(state.public_url(host));
                        ServerMessage::Claimed { tunnel, port: None, url }
                    }
                    Err(reason) => ServerMessage::ClaimRefused { tunnel, reason },
                },
                TunnelKey::Tcp { port } => match to.claim_port(*port, takeover, access) {
                    Ok(granted) => ServerMessage::Claimed { tunnel, port: Some(granted), url: None },
                    Err(reason) => ServerMessage::ClaimRefused { tunnel, reason },
                },
            },
            Some(Ok(ClientMessage::Release { tunnel })) => {
                match &tunnel {
                    TunnelKey::Http { host } => to.release(host),
                    TunnelKey::Tcp { port } => to.release_port(*port),
                }
                ServerMessage::Released { tunnel }
            }
            Some(Ok(ClientMessage::Unknown)) => {
                ServerMessage::Error { message: "unknown control message type; ignored".to_owned() }
            }
        };
        if let Err(e) = control.send(reply).await {
            return format!("control stream: {e}");
        }
    }
}

/// A session making claims for its daemon.
struct Claimant<'a> {
    state: &'a Arc<State>,
    client: &'a ClientEntry,
    session: &'a Arc<Session>,
    daemon: &'a Arc<Daemon>,
}

impl Claimant<'_> {
    /// What the configuration in force now lets this session's client claim (a reload may have
    /// changed it since the session began); the reason when it no longer admits the client.
    fn entry(&self) -> Result<ClientEntry, String> {
        let config = self.state.config();
        super::auth::current(&config, &self.client.name, &self.client.token_sha256).ok_or_else(|| {
            format!(
                "client {:?} is no longer admitted by the server's config (removed, or its token changed)",
                self.client.name
            )
        })
    }

    /// The guard of a claim's access rules, or why they are refused: malformed, or short of what
    /// the client's `require` (in the config in force) asks. A session of a version before 4
    /// carries no rules.
    fn guard(&self, entry: &ClientEntry, access: AccessRules, tcp: bool) -> Result<Access, String> {
        access.validate().map_err(|e| format!("invalid access rules: {e}"))?;
        if tcp && !access.basic_auth.is_empty() {
            return Err("basic_auth applies to HTTP tunnels only".into());
        }
        if let Some(why) = entry.require.refusal(&entry.name, &access, tcp) {
            return Err(why);
        }
        Ok(Guard::of(access))
    }

    /// Claims `host` for the daemon, behind `access`; the reason when refused.
    fn claim(&self, host: &str, takeover: bool, access: AccessRules) -> Result<(), String> {
        let (session, client) = (self.session.id, &self.client.name);
        let refuse = |reason: String| {
            warn!(session, client, host, "host refused: {reason}");
            reason
        };
        let pattern = HostPattern::parse(host).map_err(|e| refuse(format!("invalid host {host:?}: {e}")))?;
        let entry = self.entry().map_err(refuse)?;
        if !entry.hosts.iter().any(|allowed| allowed.allows(&pattern)) {
            return Err(refuse(format!(
                "client {client:?} may not claim {pattern}; its allowed hosts are {}",
                listed(&entry.hosts)
            )));
        }
        let guard = self.guard(&entry, access, false).map_err(refuse)?;
        let rules = guard.as_ref().map(|g| g.rules().summary());
        let max = self.state.config().limits.max_hosts_per_client;
        match self.state.registry.claim(&pattern.to_string(), self.daemon, max, takeover, guard) {
            Ok(Claim::Registered) => {
                self.state.readiness.claimed();
                info!(session, client, host = %pattern, access = rules, "host registered");
                self.demand_certificate(&pattern);
                Ok(())
            }
            Ok(Claim::TookOver(old)) => {
                self.state.readiness.claimed();
                if session_is_daemon(old.identity()) {
                    info!(session, client, host = %pattern, old = old.identity(), "host taken over from an older session of the same client");
                } else {
                    info!(session, client, host = %pattern, old_daemon = old.identity(), "host taken over from another ggrokd of the same client");
                }
                let tunnel = TunnelKey::Http { host: pattern.to_string() };
                let reason = format!(
                    "another ggrokd of client {client:?} took {pattern} over (session {session}); \
                     this one no longer claims it until it is added again or reloaded"
                );
                for s in old.sessions().iter().filter(|s| s.protocol >= 2) {
                    s.tell(ServerMessage::Displaced { tunnel: tunnel.clone(), reason: reason.clone() });
                }
                self.state.standby.displaced(&pattern.to_string(), &old);
                self.demand_certificate(&pattern);
                Ok(())
            }
            Err(refused) => {
                if matches!(refused, Refused::TooMany { .. }) {
                    self.state.metrics.limit_hit(Limit::MaxHostsPerClient);
                }
                Err(refuse(refused.to_string()))
            }
        }
    }

    /// With `[acme] on_demand`, a successful claim of an exact host asks for its certificate
    /// (in the background: the claim never waits for the CA).
    fn demand_certificate(&self, host: &HostPattern) {
        if let Some(acme) = &self.state.acme {
            acme.demand(self.state.config().acme.as_ref(), host, &self.client.name);
        }
    }

    /// Claims the TCP `port` (0: any the client may claim) for the daemon, binding it when
    /// new; the port granted, or the reason when refused.
    fn claim_port(&self, port: u16, takeover: bool, access: AccessRules) -> Result<u16, String> {
        let (session, client) = (self.session.id, &self.client.name);
        let refuse = |reason: String| {
            warn!(session, client, port, "TCP port refused: {reason}");
            reason
        };
        let entry = self.entry().map_err(refuse)?;
        let guard = self.guard(&entry, access, true).map_err(refuse)?;
        let granted = self.state.ports.claim(port, client, &entry.ports, self.daemon, takeover, guard);
        let granted = granted.map_err(|refused| refuse(refused.to_string()))?;
        let port = granted.port;
        self.state.readiness.claimed();
        if let Some((listener, stop)) = granted.bound {
            tokio::spawn(crate::public::tcp::serve(self.state.clone(), listener, port, stop));
        }
        if let Some(old) = granted.took_over {
            info!(
                session,
                client,
                port,
                old_daemon = old.identity(),
                "TCP port taken over from another ggrokd of the same client"
            );
            let reason = format!(
                "another ggrokd of client {client:?} took TCP port {port} over (session {session}); \
                 this one no longer claims it until it is added again or reloaded"
            );
            for s in old.sessions().iter().filter(|s| s.protocol >= 3) {
                s.tell(ServerMessage::Displaced { tunnel: TunnelKey::Tcp { port }, reason: reason.clone() });
            }
        }
        info!(session, client, port, "TCP port registered");
        Ok(port)
    }

    /// Releases the TCP `port` if the daemon holds it: its socket closes at once.
    fn release_port(&self, port: u16) {
        if self.state.ports.release(port, self.daemon.id()) {
            info!(session = self.session.id, port, "TCP port released");
        }
    }

    /// Releases `host` if the daemon holds it.
    fn release(&self, host: &str) {
        let key = HostPattern::parse(host).map(|p| p.to_string()).unwrap_or(host.to_owned());
        if self.state.registry.release(&key, self.daemon.id()) {
            info!(session = self.session.id, host = %key, "host unregistered");
            super::standby::Standby::freed(self.state, std::slice::from_ref(&key));
        }
    }
}

/// Whether a daemon identity is a version-1 session's own (such a daemon cannot tell its stale
/// sessions from another ggrokd).
fn session_is_daemon(identity: &str) -> bool {
    identity.starts_with(super::daemons::SESSION_IDENTITY)
}

/// Whether a control stream failed on a message over `max_control_message`.
fn is_oversized(e: &ControlError) -> bool {
    matches!(e, ControlError::Io(io) if io.get_ref().is_some_and(|inner| inner.is::<LengthDelimitedCodecError>()))
}

/// A client's allowed hosts for a refusal, each once, in their order.
fn listed(hosts: &[HostPattern]) -> String {
    let mut seen: Vec<String> = Vec::with_capacity(hosts.len());
    for host in hosts.iter().map(ToString::to_string) {
        if !seen.contains(&host) {
            seen.push(host);
        }
    }
    seen.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_hosts_are_listed_once_each_in_order() {
        let hosts: Vec<HostPattern> = ["*.alice.test", "*.alice.test", "api.test"]
            .iter()
            .map(|h| HostPattern::parse(h).unwrap())
            .collect();
        assert_eq!(listed(&hosts), "*.alice.test, api.test");
    }
}
