//! A link's end of the control stream: read the server's hello, decide whether to keep the
//! connection (worker coverage), greet, claim every tunnel, send the claims and releases that
//! `ggrokctl` and reloads make later, and apply the server's answers to the tunnel table. Message
//! forms are [`crate::wire`]'s business; this speaks in tunnel operations and events.

use crate::config::Public;
use crate::daemon::Daemon;
use crate::link::Link;
use crate::session::Ending;
use crate::wire::{self, Event, TunnelOp};
use futures_util::{SinkExt, StreamExt};
use ggrok_proto::control::ClientCodec;
use std::fmt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;
use tracing::{debug, info, warn};

/// How a control stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The daemon closed it (shutdown): the connection drains.
    Detached,
    /// It failed or the server closed it: the connection is of no use.
    Lost(String),
    /// The daemon ends the connection on purpose.
    Ending(Ending),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Detached => f.write_str("closed by the daemon"),
            End::Lost(why) => f.write_str(why),
            End::Ending(ending) => write!(f, "{ending}"),
        }
    }
}

/// Runs the control stream of `link`'s connection, which agreed on `protocol`, until it ends.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    daemon: &Daemon,
    link: &Link,
    protocol: u32,
    stream: S,
) -> End {
    let (sender, outgoing) = mpsc::unbounded_channel();
    let mut generation = None;
    let control = Framed::new(stream, ClientCodec::default());
    let end = converse(daemon, link, protocol, control, sender, outgoing, &mut generation).await;
    if generation.is_some() {
        link.detach_control(generation);
    }
    end
}

async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    daemon: &Daemon,
    link: &Link,
    protocol: u32,
    mut control: Framed<S, ClientCodec>,
    sender: mpsc::UnboundedSender<TunnelOp>,
    mut outgoing: mpsc::UnboundedReceiver<TunnelOp>,
    generation: &mut Option<u64>,
) -> End {
    let lost = |e: &dyn fmt::Display| End::Lost(e.to_string());
    let hello = match control.next().await {
        Some(Ok(message)) => match wire::decode(message) {
            Event::Hello(hello) => hello,
            other => return End::Lost(format!("unexpected first control message: {other:?}")),
        },
        Some(Err(e)) => return lost(&e),
        None => return End::Lost("control stream closed before the greeting".into()),
    };
    if hello.version != protocol {
        warn!(
            version = hello.version,
            "server greeted with protocol version {}, the handshake agreed on {protocol}", hello.version
        );
    }
    link.greeted(hello.session, hello.replica.clone(), hello.domain.clone());
    daemon.server_greeted(&link.server, protocol, hello.workers);
    if protocol < 2 && !daemon.first_to_its_server(link) {
        return End::Ending(Ending::Surplus);
    }
    let (worker, workers, replica) = (hello.worker, hello.workers, hello.replica.as_deref());
    if !daemon.keep_landing(link, replica, worker, workers) {
        debug!(?worker, workers, replica, redials = link.redials(), "landed where another connection is");
        return End::Ending(Ending::Redial);
    }
    link.reset_redials();
    info!(
        client = hello.client,
        session = hello.session,
        worker = hello.worker,
        replica = hello.replica,
        protocol,
        "authenticated with the server"
    );
    if let Err(e) = control.send(wire::hello(protocol, &daemon.id, link.index)).await {
        return lost(&e);
    }
    // Attach before listing the tunnels: a tunnel added meanwhile is either listed or sent.
    *generation = Some(link.attach_control(sender));
    for tunnel in daemon.tunnels.all() {
        let Some(claim) = tunnel.claim() else { continue };
        match wire::encode(protocol, claim) {
            Ok(message) => {
                if let Err(e) = control.feed(message).await {
                    return lost(&e);
                }
            }
            Err(reason) => {
                on_event(daemon, link.index, Event::Refused { host: tunnel.host(), reason });
            }
        }
    }
    if let Err(e) = control.flush().await {
        return lost(&e);
    }
    loop {
        let reply = tokio::select! {
            incoming = control.next() => match incoming {
                None => return End::Lost("control stream closed".into()),
                Some(Err(e)) => return lost(&e),
                Some(Ok(message)) => on_event(daemon, link.index, wire::decode(message)),
            },
            // None: the daemon detached the stream (shutdown); closing it tells the server.
            out = outgoing.recv() => match out {
                Some(op) => Some(op),
                None => return End::Detached,
            },
        };
        let Some(op) = reply else { continue };
        let key = match &op {
            TunnelOp::Claim { host, .. } | TunnelOp::Release { host } => host.clone(),
        };
        match wire::encode(protocol, op) {
            Ok(message) => {
                if let Err(e) = control.send(message).await {
                    return lost(&e);
                }
            }
            Err(reason) => {
                on_event(daemon, link.index, Event::Refused { host: key, reason });
            }
        }
    }
}

/// Applies what the server said on link `link` to the tunnel table; returns an operation to
/// send back on that link, if any. A tunnel's change is logged once, whichever link saw it.
pub fn on_event(daemon: &Daemon, link: u32, event: Event) -> Option<TunnelOp> {
    match event {
        Event::Claimed { host, port, url } => match daemon.tunnels.get(&host) {
            Some(t) if t.spec.host == Public::Tcp(0) => {
                let Some(port) = port.filter(|p| *p != 0) else {
                    t.refused(link, "the server granted no port".into());
                    return None;
                };
                crate::tcp::granted(daemon, &t, link, port);
                None
            }
            Some(t) => {
                let shown = t.url();
                t.set_url(link, url);
                if t.claimed(link) {
                    match t.url() {
                        Some(url) => info!(host, local = %t.spec.local, url, "tunnel online"),
                        None => info!(host, local = %t.spec.local, "tunnel online"),
                    }
                } else if let Some(url) = t.url().filter(|url| shown.as_ref().is_some_and(|s| s != url)) {
                    info!(host, url, "the tunnel's public URL changed (the server's public_url)");
                } else {
                    debug!(host, "tunnel accepted on this connection too");
                }
                None
            }
            // Removed while the claim was under way: release it again.
            None => Some(TunnelOp::Release { host }),
        },
        Event::Refused { host, reason } => {
            if let Some(t) = daemon.tunnels.get(&host)
                && t.refused(link, reason.clone())
            {
                warn!(host, "tunnel refused by the server: {reason}");
            }
            None
        }
        Event::Displaced { host, reason } => {
            if let Some(t) = daemon.tunnels.get(&host)
                && t.displaced(reason.clone())
            {
                warn!(
                    host,
                    "tunnel taken over by another ggrokd: {reason}; not claiming it again until it is \
                     added again, the config is reloaded or ggrokd restarts"
                );
            }
            None
        }
        Event::Available { host } => {
            if let Some(t) = daemon.tunnels.get(&host)
                && let Some(claim) = t.stand_in()
            {
                info!(host, "the ggrokd that took the tunnel over is gone: claiming it back");
                daemon.send_everywhere(&claim);
            }
            None
        }
        Event::Released { host } => {
            debug!(host, "tunnel released on the server");
            None
        }
        Event::Error(message) => {
            warn!("server reported a control error: {message}");
            None
        }
        Event::Hello(_) => {
            warn!("server greeted twice; ignored");
            None
        }
        Event::Ignored => {
            debug!("control message of an unknown type ignored");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DaemonConfig;
    use crate::tunnels::TunnelState;
    use ggrok_proto::control::{ClientMessage, ServerCodec, ServerMessage, TunnelKey};
    use std::path::Path;
    use std::sync::Arc;
    use tokio::io::DuplexStream;
    use tokio::task::JoinHandle;
    use tokio_util::sync::CancellationToken;

    type Server = Framed<DuplexStream, ServerCodec>;

    /// Link `index` of `d` running its control stream with `protocol`; the test is the server.
    fn start(d: &Arc<Daemon>, index: u32, protocol: u32) -> (Arc<Link>, Server, JoinHandle<End>) {
        let link = Arc::new(Link::new(
            index,
            crate::config::ServerUrl::parse("ws://t").unwrap(),
            CancellationToken::new(),
        ));
        link.connected("websocket", protocol);
        d.add_link(link.clone());
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let task = tokio::spawn({
            let (d, link) = (d.clone(), link.clone());
            async move { run(&d, &link, protocol, ours).await }
        });
        (link, Framed::new(theirs, ServerCodec::default()), task)
    }

    fn server_hello(version: u32, worker: Option<u32>, workers: Option<u32>) -> ServerMessage {
        ServerMessage::Hello {
            version,
            client: "alice".into(),
            session: 5,
            worker,
            workers,
            replica: Some("r1".into()),
            domain: None,
        }
    }

    async fn next(server: &mut Server) -> ClientMessage {
        server.next().await.unwrap().unwrap()
    }

    fn key(host: &str) -> TunnelKey {
        TunnelKey::Http { host: host.into() }
    }

    #[tokio::test]
    async fn version_two_greets_with_the_daemon_id_and_claims_typed_tunnels() {
        let d = Arc::new(daemon());
        let (link, mut server, task) = start(&d, 1, 2);
        server.send(server_hello(2, Some(0), Some(3))).await.unwrap();
        let ClientMessage::Hello { version, daemon, connection, .. } = next(&mut server).await else {
            panic!()
        };
        assert_eq!((version, daemon.as_deref(), connection), (2, Some("d"), Some(1)));
        assert_eq!(
            next(&mut server).await,
            ClientMessage::Claim { tunnel: key("a.test"), takeover: true, access: Default::default() }
        );
        let a = d.tunnels.get("a.test").unwrap();
        let mut state = a.watch_state();
        server.send(ServerMessage::Claimed { tunnel: key("a.test"), port: None, url: None }).await.unwrap();
        state.wait_for(|s| *s == TunnelState::Online).await.unwrap();
        assert_eq!(
            a.claim(),
            Some(TunnelOp::Claim { host: "a.test".into(), takeover: false, access: Default::default() })
        );
        let session = link.session();
        assert_eq!(
            (session.session, session.worker, session.replica.as_deref()),
            (Some(5), Some(0), Some("r1"))
        );
        assert_eq!(d.wanted_links().borrow()[0].1, 3, "auto follows the announced workers");
        // Operations from the daemon go out in version-2 form.
        assert!(link.send(TunnelOp::Release { host: "a.test".into() }));
        assert_eq!(next(&mut server).await, ClientMessage::Release { tunnel: key("a.test") });
        server
            .send(ServerMessage::Displaced { tunnel: key("a.test"), reason: "by laptop".into() })
            .await
            .unwrap();
        state.wait_for(|s| matches!(s, TunnelState::Displaced(_))).await.unwrap();
        // Unknown messages are ignored; the stream lives on until the server closes it.
        server.send(ServerMessage::Unknown).await.ok();
        drop(server);
        assert_eq!(task.await.unwrap(), End::Lost("control stream closed".into()));
        assert!(!link.send(TunnelOp::Release { host: "a.test".into() }), "detached when it ended");
    }

    #[tokio::test]
    async fn version_one_registers_hosts_as_before() {
        let d = Arc::new(daemon());
        let (_link, mut server, task) = start(&d, 0, 1);
        server.send(server_hello(1, None, None)).await.unwrap();
        let ClientMessage::Hello { version, daemon, connection, .. } = next(&mut server).await else {
            panic!()
        };
        assert_eq!((version, daemon, connection), (1, None, None));
        assert_eq!(next(&mut server).await, ClientMessage::Register { host: "a.test".into() });
        let a = d.tunnels.get("a.test").unwrap();
        let mut state = a.watch_state();
        server.send(ServerMessage::Registered { host: "a.test".into() }).await.unwrap();
        state.wait_for(|s| *s == TunnelState::Online).await.unwrap();
        // An acceptance for a tunnel removed meanwhile is released in version-1 form.
        server.send(ServerMessage::Registered { host: "gone.test".into() }).await.unwrap();
        assert_eq!(next(&mut server).await, ClientMessage::Unregister { host: "gone.test".into() });
        assert_eq!(d.wanted_links().borrow()[0].1, 1);
        drop(server);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_link_on_a_held_worker_ends_before_greeting() {
        let d = Arc::new(daemon());
        let (first, mut server0, _task0) = start(&d, 0, 2);
        server0.send(server_hello(2, Some(0), Some(2))).await.unwrap();
        next(&mut server0).await;
        assert_eq!(first.session().worker, Some(0));
        let (_link, mut server1, task1) = start(&d, 1, 2);
        server1.send(server_hello(2, Some(0), Some(2))).await.unwrap();
        assert_eq!(task1.await.unwrap(), End::Ending(Ending::Redial));
        assert!(server1.next().await.is_none(), "nothing sent: no hello, no claims");
    }

    #[tokio::test]
    async fn a_second_link_to_a_version_one_server_is_surplus() {
        let d = Arc::new(daemon());
        let (_first, _server0, _task0) = start(&d, 0, 1);
        let (_link, mut server, task) = start(&d, 1, 1);
        server.send(server_hello(1, None, None)).await.unwrap();
        assert_eq!(task.await.unwrap(), End::Ending(Ending::Surplus));
        assert!(server.next().await.is_none());
    }

    fn daemon() -> Daemon {
        let text = "server = \"ws://t\"\n[[tunnel]]\nhost = \"a.test\"\nlocal = \"1\"\n";
        Daemon::new(&DaemonConfig::parse(Path::new("g.toml"), text).unwrap(), "d".into())
    }

    fn event_for(host: &str) -> Event {
        Event::Claimed { host: host.into(), port: None, url: None }
    }

    #[test]
    fn answers_change_the_tunnel_state_of_their_link() {
        let d = daemon();
        assert_eq!(on_event(&d, 1, event_for("a.test")), None);
        let a = d.tunnels.get("a.test").unwrap();
        assert_eq!(a.state(), TunnelState::Online);
        d.tunnels.link_down(0);
        assert_eq!(a.state(), TunnelState::Online, "link 1 carries it");
        d.tunnels.link_down(1);
        on_event(&d, 0, Event::Refused { host: "a.test".into(), reason: "held".into() });
        assert_eq!(a.state(), TunnelState::Refused("held".into()));
        on_event(&d, 0, Event::Displaced { host: "a.test".into(), reason: "by laptop".into() });
        assert_eq!(a.state(), TunnelState::Displaced("by laptop".into()));
        assert_eq!(a.claim(), None);
        // Free again: claimed back without takeover, and online once accepted.
        let claim = a.stand_in().expect("a claim back");
        assert!(matches!(claim, TunnelOp::Claim { takeover: false, .. }), "{claim:?}");
        assert_eq!(a.state(), TunnelState::Connecting);
        assert_eq!(a.stand_in(), None, "only what was displaced");
        on_event(&d, 0, event_for("a.test"));
        assert_eq!(a.state(), TunnelState::Online);
    }

    #[test]
    fn an_acceptance_for_a_removed_tunnel_is_released_on_that_link() {
        let d = daemon();
        assert_eq!(
            on_event(&d, 0, event_for("gone.test")),
            Some(TunnelOp::Release { host: "gone.test".into() })
        );
        assert_eq!(on_event(&d, 0, Event::Refused { host: "gone.test".into(), reason: "x".into() }), None);
        assert_eq!(on_event(&d, 0, Event::Ignored), None);
    }
}
