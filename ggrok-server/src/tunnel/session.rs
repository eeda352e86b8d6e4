//! One tunnel connection of a daemon, as the proxy uses it: take a place among its streams in
//! flight, send a request (one HTTP/2 stream), and tell its control stream something.

use super::h2c::{SendError, Sender, TunnelBody, Upgrade};
use ggrok_proto::control::ServerMessage;
use ggrok_proto::http::Body;
use http::{Request, Response};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// One connected ggrokd connection.
#[derive(Debug)]
pub struct Session {
    /// Unique for the life of the server process.
    pub id: u64,
    /// The `[[client]]` name it authenticated as.
    pub client: String,
    /// SHA-256 of the token it authenticated with (zeros: anonymous), so a reload can tell
    /// whether the token still admits it.
    pub token_sha256: [u8; 32],
    /// The protocol version agreed on.
    pub protocol: u32,
    /// The worker whose runtime drives the connection.
    pub worker: u32,
    /// Which of its daemon's connections it is (version 2).
    pub connection: Option<u32>,
    sender: Sender,
    streams: Arc<Semaphore>,
    max_streams: usize,
    requests: AtomicU64,
    notify: mpsc::UnboundedSender<ServerMessage>,
    close: CancellationToken,
    close_reason: std::sync::Mutex<Option<String>>,
}

/// What a session is made of.
pub struct Parts {
    /// See [`Session::id`].
    pub id: u64,
    /// See [`Session::client`].
    pub client: String,
    /// See [`Session::token_sha256`].
    pub token_sha256: [u8; 32],
    /// See [`Session::protocol`].
    pub protocol: u32,
    /// See [`Session::worker`].
    pub worker: u32,
    /// See [`Session::connection`].
    pub connection: Option<u32>,
    /// Opens streams to the daemon.
    pub sender: Sender,
    /// Most requests in flight at once (`max_streams_per_session`).
    pub max_streams: usize,
    /// Messages for the daemon, sent on the control stream by the session's task.
    pub notify: mpsc::UnboundedSender<ServerMessage>,
}

/// The session has `max_streams_per_session` requests in flight.
#[derive(Debug)]
pub struct Full;

impl Session {
    /// A session from its parts.
    pub fn new(p: Parts) -> Self {
        Self {
            id: p.id,
            client: p.client,
            token_sha256: p.token_sha256,
            protocol: p.protocol,
            worker: p.worker,
            connection: p.connection,
            sender: p.sender,
            streams: Arc::new(Semaphore::new(p.max_streams)),
            max_streams: p.max_streams,
            requests: AtomicU64::new(0),
            notify: p.notify,
            close: CancellationToken::new(),
            close_reason: Default::default(),
        }
    }

    /// A place among the streams in flight, held until the response (or upgraded connection)
    /// is done.
    pub fn stream_permit(&self) -> Result<OwnedSemaphorePermit, Full> {
        self.streams.clone().try_acquire_owned().map_err(|_| Full)
    }

    /// Requests in flight now.
    pub fn load(&self) -> usize {
        self.max_streams - self.streams.available_permits()
    }

    /// Requests (and upgrades) sent so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Sends `request` as a new stream and waits for the response head.
    pub async fn send(&self, request: Request<Body>) -> Result<Response<TunnelBody>, SendError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.sender.send(request).await
    }

    /// Opens an extended CONNECT stream for an upgrade: its bytes when the daemon answers 200,
    /// else the answer.
    pub async fn upgrade(&self, request: Request<()>) -> Result<Upgrade, SendError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.sender.upgrade(request).await
    }

    /// Queues a message for the daemon's control stream; false when the session is ending.
    pub fn tell(&self, message: ServerMessage) -> bool {
        self.notify.send(message).is_ok()
    }

    /// Ends the session (it was replaced by a new connection of the same daemon).
    pub fn close(&self) {
        self.close.cancel();
    }

    /// Ends the session, saying why in the server's log (a reload no longer admits it).
    pub fn close_because(&self, reason: String) {
        self.close_reason.lock().expect("close reason lock").get_or_insert(reason);
        self.close.cancel();
    }

    /// Resolves when the session was closed ([`Session::close`], [`Session::close_because`]),
    /// with the reason.
    pub async fn closed(&self) -> String {
        self.close.cancelled().await;
        let reason = self.close_reason.lock().expect("close reason lock").clone();
        reason.unwrap_or_else(|| "replaced by a new connection of the same daemon".to_owned())
    }
}
