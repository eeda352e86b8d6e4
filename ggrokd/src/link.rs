//! One tunnel connection of the daemon (a link), by index: its state as `ggrokctl status` shows
//! it, what the server told it (session, worker, replica, protocol, transport), the sender of its
//! current control stream, its request counter and its own pool of local connections. Each link
//! runs on a thread of its own ([`crate::links`]); a link that drops affects only its own record.

use crate::config::ServerUrl;
use crate::local::LocalClient;
use crate::tunnels::unix_now;
use crate::wire::TunnelOp;
use ggrok_proto::ctl::{ConnectionInfo, LinkState, TimedError};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// What a connected link learned from the handshake and the server's hello.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    /// `websocket` or `raw`.
    pub transport: Option<&'static str>,
    /// The protocol version agreed on.
    pub protocol: Option<u32>,
    /// The server's session id.
    pub session: Option<u64>,
    /// The server worker it landed on (and kept).
    pub worker: Option<u32>,
    /// The server replica's name.
    pub replica: Option<String>,
    /// The client's domain, as the server said (`[[client]] domain`).
    pub domain: Option<String>,
}

#[derive(Debug)]
struct Record {
    state: LinkState,
    since: u64,
    attempt: u32,
    last_error: Option<TimedError>,
    next_retry: Option<f64>,
    session: Session,
    /// The server address it dials or is connected to.
    address: Option<SocketAddr>,
}

/// One tunnel connection.
pub struct Link {
    /// Its index, from 0, unique over all servers; sent in the version-2 hello.
    pub index: u32,
    /// The server it dials (one of `server = [...]`).
    pub server: ServerUrl,
    record: Mutex<Record>,
    /// The current control stream's sender, with the generation that attached it.
    control: Mutex<Option<(u64, mpsc::UnboundedSender<TunnelOp>)>>,
    generation: AtomicU64,
    /// Requests (and upgraded connections) it carried.
    pub requests: AtomicU64,
    /// Its own pool of connections to local services, used only from its thread.
    pub local: LocalClient,
    reconnect: Notify,
    /// Stops this link alone (fewer connections wanted) or, as a child of the daemon's shutdown
    /// token, with all the others.
    pub stop: CancellationToken,
    /// Redials in the current connect cycle to land on a worker no other link holds.
    redials: AtomicU32,
}

impl Link {
    /// Link `index` to `server`, connecting, stopped by `stop`.
    pub fn new(index: u32, server: ServerUrl, stop: CancellationToken) -> Self {
        Self {
            index,
            server,
            record: Mutex::new(Record {
                state: LinkState::Connecting,
                since: unix_now(),
                attempt: 0,
                last_error: None,
                next_retry: None,
                session: Session::default(),
                address: None,
            }),
            control: Mutex::new(None),
            generation: 0.into(),
            requests: 0.into(),
            local: LocalClient::default(),
            reconnect: Notify::new(),
            stop,
            redials: 0.into(),
        }
    }

    /// The link, its local connections' read buffers sized by `budget`.
    pub fn with_budget(mut self, budget: Arc<ggrok_proto::budget::Budget>) -> Self {
        self.local = LocalClient::new(budget);
        self
    }

    fn update(&self, f: impl FnOnce(&mut Record)) {
        let mut record = self.record.lock().expect("link lock");
        let before = record.state;
        f(&mut record);
        if record.state != before {
            record.since = unix_now();
        }
    }

    /// A connection attempt starts; `attempt` counts failures since the last healthy connection.
    pub fn connecting(&self, attempt: u32) {
        self.update(|r| {
            r.state = LinkState::Connecting;
            r.attempt = attempt;
            r.next_retry = None;
        });
    }

    /// The connection is up, over `transport` with `protocol`.
    pub fn connected(&self, transport: &'static str, protocol: u32) {
        self.update(|r| {
            r.state = LinkState::Connected;
            r.next_retry = None;
            r.session =
                Session { transport: Some(transport), protocol: Some(protocol), ..Session::default() };
        });
    }

    /// The server greeted: its session id, replica and the client's domain.
    pub fn greeted(&self, session: u64, replica: Option<String>, domain: Option<String>) {
        self.update(|r| {
            r.session.session = Some(session);
            r.session.replica = replica;
            r.session.domain = domain;
        });
    }

    /// The client's domain the server named, while connected.
    pub fn domain(&self) -> Option<String> {
        let record = self.record.lock().expect("link lock");
        record.session.domain.clone().filter(|_| record.state == LinkState::Connected)
    }

    /// The link dials `address` (chosen among the server's addresses), or lets the system pick
    /// one of them (`None`).
    pub fn dialing(&self, address: Option<SocketAddr>) {
        self.update(|r| r.address = address);
    }

    /// The address it was dialled to, or reached.
    pub fn address(&self) -> Option<SocketAddr> {
        self.record.lock().expect("link lock").address
    }

    /// The address the connection reached, once connected.
    pub fn reached(&self, address: Option<SocketAddr>) {
        self.update(|r| r.address = address.or(r.address));
    }

    /// The link keeps the worker it landed on.
    pub fn hold_worker(&self, worker: u32) {
        self.update(|r| r.session.worker = Some(worker));
    }

    /// The worker it holds while connected.
    pub fn worker(&self) -> Option<u32> {
        let record = self.record.lock().expect("link lock");
        record.session.worker.filter(|_| record.state == LinkState::Connected)
    }

    /// The connection failed or was lost; the next attempt is due at `next_retry`.
    pub fn down(&self, error: String, attempt: u32, next_retry: SystemTime) {
        self.update(|r| {
            r.state = LinkState::Disconnected;
            r.attempt = attempt;
            r.last_error = Some(TimedError { at: unix_now(), message: error });
            r.next_retry = next_retry.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs_f64());
            r.session = Session::default();
        });
    }

    /// Its state.
    pub fn state(&self) -> LinkState {
        self.record.lock().expect("link lock").state
    }

    /// What the link knows of its session.
    pub fn session(&self) -> Session {
        self.record.lock().expect("link lock").session.clone()
    }

    /// The replica it holds while connected, if the server named itself.
    pub fn replica(&self) -> Option<String> {
        let record = self.record.lock().expect("link lock");
        record.session.replica.clone().filter(|_| record.state == LinkState::Connected)
    }

    /// The link as `ggrokctl status` shows it.
    pub fn info(&self) -> ConnectionInfo {
        let r = self.record.lock().expect("link lock");
        ConnectionInfo {
            index: self.index,
            server: self.server.url.clone(),
            replica: r.session.replica.clone(),
            address: r.address.map(|a| a.to_string()),
            worker: r.session.worker,
            transport: r.session.transport.map(str::to_owned),
            protocol: r.session.protocol,
            session: r.session.session,
            state: r.state,
            since: r.since,
            requests: self.requests.load(Ordering::Relaxed),
            attempt: r.attempt,
            last_error: r.last_error.clone(),
            next_retry: r.next_retry,
        }
    }

    /// Asks for an immediate reconnect (the server settings changed).
    pub fn request_reconnect(&self) {
        self.reconnect.notify_one();
    }

    /// Resolves when a reconnect was asked for.
    pub async fn reconnect_requested(&self) {
        self.reconnect.notified().await
    }

    /// Redials so far in this connect cycle.
    pub fn redials(&self) -> u32 {
        self.redials.load(Ordering::Relaxed)
    }

    /// One more redial; returns the count.
    pub fn count_redial(&self) -> u32 {
        self.redials.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A new connect cycle begins (the link kept a connection).
    pub fn reset_redials(&self) {
        self.redials.store(0, Ordering::Relaxed);
    }

    /// The control stream of the current connection is up: operations sent from now on go there.
    /// Returns the generation to pass to [`Link::detach_control`].
    pub fn attach_control(&self, sender: mpsc::UnboundedSender<TunnelOp>) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *self.control.lock().expect("control lock") = Some((generation, sender));
        generation
    }

    /// A control stream ended: forget its sender, unless a newer stream has attached since.
    /// `None` detaches whatever is attached (shutdown), which ends the current control stream.
    pub fn detach_control(&self, generation: Option<u64>) {
        let mut control = self.control.lock().expect("control lock");
        if generation.is_none() || control.as_ref().map(|(g, _)| *g) == generation {
            *control = None;
        }
    }

    /// Sends `op` on the current control stream; false when there is none.
    pub fn send(&self, op: TunnelOp) -> bool {
        match self.control.lock().expect("control lock").as_ref() {
            Some((_, sender)) => sender.send(op).is_ok(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_changes_stamp_since_and_down_clears_the_session() {
        let link = Link::new(2, ServerUrl::parse("ws://t").unwrap(), CancellationToken::new());
        link.connected("raw", 2);
        link.greeted(7, Some("eu-1".into()), None);
        link.hold_worker(3);
        link.requests.fetch_add(5, Ordering::Relaxed);
        let info = link.info();
        assert_eq!(
            (info.index, info.state, info.worker, info.session),
            (2, LinkState::Connected, Some(3), Some(7))
        );
        assert_eq!((info.transport.as_deref(), info.protocol, info.requests), (Some("raw"), Some(2), 5));
        assert_eq!(link.worker(), Some(3));
        link.down("lost".into(), 1, SystemTime::now());
        let info = link.info();
        assert_eq!(
            (info.state, info.worker, info.transport, info.attempt),
            (LinkState::Disconnected, None, None, 1)
        );
        assert_eq!(info.last_error.unwrap().message, "lost");
        assert!(info.next_retry.is_some());
        assert_eq!(link.worker(), None);
    }

    #[tokio::test]
    async fn operations_go_to_the_attached_control_stream_only() {
        let link = Link::new(0, ServerUrl::parse("ws://t").unwrap(), CancellationToken::new());
        assert!(!link.send(TunnelOp::Release { host: "a".into() }), "nothing attached");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let first = link.attach_control(tx);
        assert!(link.send(TunnelOp::Release { host: "a".into() }));
        assert_eq!(rx.recv().await, Some(TunnelOp::Release { host: "a".into() }));
        let (tx2, _rx2) = mpsc::unbounded_channel();
        link.attach_control(tx2);
        link.detach_control(Some(first));
        assert!(link.send(TunnelOp::Release { host: "b".into() }), "a stale detach leaves the new stream");
        link.detach_control(None);
        assert!(!link.send(TunnelOp::Release { host: "c".into() }));
    }
}
