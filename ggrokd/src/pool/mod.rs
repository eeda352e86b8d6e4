//! Keep-alive HTTP/1.1 connections to local services, each driven by the request holding it.
//!
//! hyper splits a client connection in two: a [`SendRequest`] handle and the [`Connection`] future
//! that does the I/O. A general-purpose pool (hyper-util's) runs every `Connection` as a task of
//! its own, hands each request to it over a channel, and spawns one more task per response to put
//! the connection back once its body has been read. Here the request that holds a connection polls
//! it itself: while it waits for the answer, then from the response body as the tunnel stream reads
//! it. A request wakes only its own task; the connection goes back to the pool when the body ends.
//!
//! Idle connections are kept per local address, newest first, for [`IDLE_TIMEOUT`]: shorter than
//! common keep-alive timeouts of local servers (Node's is 5 s), so a connection is dropped here
//! before the service closes it under a request. One checked out is polled once first: one that
//! the service closed meanwhile is seen and dropped. A request refused by a reused connection before
//! any of it was written is sent again on the next connection.
//!
//! Connections are TCP or TLS ([`LocalStream`]), kept under a key that says both where they go
//! and how they were checked (an `https://` service's CA or `tls_skip_verify`), so a connection
//! opened for one tunnel's settings never serves another's. Local services that speak HTTP/2
//! get one multiplexed connection each instead ([`h2`]).

pub mod h2;
mod stream;
pub use stream::LocalStream;

use bytes::Bytes;
use ggrok_proto::budget::{Budget, READ_BUFFER, ReadBuffer};
use http::{Request, Response};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tracing::debug;

/// How long an idle connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long connecting to a local service may take before the request gets a 502.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many idle connections are kept per local address; more are closed.
const MAX_IDLE_PER_ADDRESS: usize = 256;

/// Why a request did not reach the local service, or got no answer from it.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// What a request body must be to be sent on a pooled connection.
pub trait RequestBody: HttpBody<Data = Bytes, Error: Into<Error>> + Send + Unpin + 'static {}
impl<B: HttpBody<Data = Bytes, Error: Into<Error>> + Send + Unpin + 'static> RequestBody for B {}

/// Idle connections by local address (`host:port`), for requests with bodies of type `B`.
pub struct Pool<B: RequestBody> {
    shared: Arc<Mutex<Shared<B>>>,
    idle_timeout: Duration,
    /// Sizes each new connection's read buffer; without one, [`READ_BUFFER`].
    budget: Option<Arc<Budget>>,
}

struct Shared<B: RequestBody> {
    idle: HashMap<Box<str>, Vec<Idle<B>>>,
    /// A task is closing expired idle connections.
    reaping: bool,
}

struct Idle<B: RequestBody> {
    conn: Conn<B>,
    since: Instant,
}

/// One connection: the handle requests are sent on, and its I/O until the connection ends.
struct Conn<B: RequestBody> {
    sender: SendRequest<B>,
    io: Option<Connection<TokioIo<LocalStream>, B>>,
    /// The size of hyper's read buffer, held while the connection lives.
    _read_buffer: Option<ReadBuffer>,
}

impl<B: RequestBody> Clone for Pool<B> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone(), idle_timeout: self.idle_timeout, budget: self.budget.clone() }
    }
}

impl<B: RequestBody> Default for Pool<B> {
    fn default() -> Self {
        Self::with_idle_timeout(IDLE_TIMEOUT)
    }
}

impl<B: RequestBody> Pool<B> {
    pub fn with_idle_timeout(idle_timeout: Duration) -> Self {
        let shared = Shared { idle: HashMap::new(), reaping: false };
        Self { shared: Arc::new(Mutex::new(shared)), idle_timeout, budget: None }
    }

    /// A pool whose connections' read buffers `budget` sizes ([`Budget::read_buffer`]).
    pub fn with_budget(budget: Arc<Budget>) -> Self {
        Self { budget: Some(budget), ..Self::default() }
    }

    /// Sends `req` (its URI in origin form) to `address` on an idle connection, or a new one, and
    /// returns the answer; its body holds the connection until it ends.
    pub async fn send(&self, address: &str, req: Request<B>) -> Result<Response<Pooled<B>>, Error> {
        let tcp = async { Ok(LocalStream::Tcp(dial(address).await?)) };
        self.send_with(address, tcp, req).await
    }

    /// Like [`Pool::send`], for connections kept under `key`; a new one is made by `connect` (at
    /// most once).
    pub async fn send_with<C>(
        &self,
        key: &str,
        connect: C,
        mut req: Request<B>,
    ) -> Result<Response<Pooled<B>>, Error>
    where
        C: Future<Output = Result<LocalStream, Error>>,
    {
        let address = key;
        let mut connect = Some(connect);
        loop {
            let (mut conn, reused) = match (self.checkout(address), connect.take()) {
                (Some(conn), again) => {
                    connect = again;
                    (conn, true)
                }
                (None, Some(connect)) => (self.handshake(connect.await?).await?, false),
                (None, None) => {
                    return Err("the local service closed every connection before the request".into());
                }
            };
            match conn.send(req).await {
                Ok(resp) => {
                    let lease = Lease { conn, address: address.into(), pool: self.clone() };
                    return Ok(resp.map(|body| Pooled { body, lease: Some(lease) }));
                }
                Err(mut e) => match e.take_message() {
                    // Nothing was written: the reused connection had closed. Again, on the next one.
                    Some(again) if reused => {
                        debug!(address, "pooled connection closed before the request; retrying");
                        req = again;
                    }
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    /// A new connection on `stream`. Its read buffer comes from the budget: 256 KiB while few
    /// connections hold one, else 64 KiB (hyper's default is 400 KiB). An answer whose public
    /// client stopped reading holds about two of these in ggrokd (the piece waiting for window,
    /// the next read), so it bounds what a thousand stalled downloads cost here.
    async fn handshake(&self, stream: LocalStream) -> Result<Conn<B>, Error> {
        let read_buffer = self.budget.as_ref().map(|b| b.read_buffer());
        let size = read_buffer.as_ref().map_or(READ_BUFFER, ReadBuffer::size);
        let (sender, io) = http1::Builder::new().max_buf_size(size).handshake(TokioIo::new(stream)).await?;
        Ok(Conn { sender, io: Some(io), _read_buffer: read_buffer })
    }

    /// How many idle connections to `address` the pool holds.
    pub fn idle(&self, address: &str) -> usize {
        self.shared.lock().expect("pool lock").idle.get(address).map_or(0, Vec::len)
    }

    /// The newest idle connection to `address` that is still open and ready for a request.
    fn checkout(&self, address: &str) -> Option<Conn<B>> {
        loop {
            let mut idle = {
                let mut shared = self.shared.lock().expect("pool lock");
                let list = shared.idle.get_mut(address)?;
                expire(list, self.idle_timeout);
                list.pop()?
            };
            if idle.conn.ready_now() {
                return Some(idle.conn);
            }
        }
    }

    fn checkin(&self, address: Box<str>, conn: Conn<B>) {
        let mut shared = self.shared.lock().expect("pool lock");
        let list = shared.idle.entry(address).or_default();
        if list.len() >= MAX_IDLE_PER_ADDRESS {
            return;
        }
        list.push(Idle { conn, since: Instant::now() });
        if !shared.reaping
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            shared.reaping = true;
            runtime.spawn(self.clone().reap());
        }
    }

    /// Closes expired idle connections every `idle_timeout` until none are left.
    async fn reap(self) {
        loop {
            tokio::time::sleep(self.idle_timeout).await;
            let mut shared = self.shared.lock().expect("pool lock");
            shared.idle.retain(|_, list| {
                expire(list, self.idle_timeout);
                !list.is_empty()
            });
            if shared.idle.is_empty() {
                shared.reaping = false;
                return;
            }
        }
    }
}

/// Drops the connections idle longer than `timeout` (the oldest are first).
fn expire<B: RequestBody>(list: &mut Vec<Idle<B>>, timeout: Duration) {
    let fresh = list.iter().position(|idle| idle.since.elapsed() < timeout).unwrap_or(list.len());
    list.drain(..fresh);
}

/// A new TCP connection to a local service, within [`CONNECT_TIMEOUT`], with Nagle off.
pub async fn dial(address: &str) -> Result<TcpStream, Error> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
        Ok(stream) => stream?,
        Err(_) => return Err("connect timed out".into()),
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Does a connection's pending I/O; once it has ended, nothing.
fn drive<B: RequestBody>(io: &mut Option<Connection<TokioIo<LocalStream>, B>>, cx: &mut Context<'_>) {
    if let Some(conn) = io
        && let Poll::Ready(result) = Pin::new(conn).poll(cx)
    {
        if let Err(e) = result {
            debug!("local connection: {e}");
        }
        *io = None;
    }
}

impl<B: RequestBody> Conn<B> {
    /// Whether a request can be sent right now: an idle connection, still open.
    fn ready_now(&mut self) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        drive(&mut self.io, &mut cx);
        self.io.is_some() && matches!(self.sender.poll_ready(&mut cx), Poll::Ready(Ok(())))
    }

    async fn send(
        &mut self,
        req: Request<B>,
    ) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<B>>> {
        let Conn { sender, io, .. } = self;
        let mut answer = std::pin::pin!(sender.try_send_request(req));
        poll_fn(|cx| {
            drive(io, cx);
            answer.as_mut().poll(cx)
        })
        .await
    }
}

/// A connection in use by one response.
struct Lease<B: RequestBody> {
    conn: Conn<B>,
    address: Box<str>,
    pool: Pool<B>,
}

/// The body of a local service's answer. Reading it drives the connection; when it ends, the
/// connection goes back to the pool.
pub struct Pooled<B: RequestBody> {
    body: Incoming,
    lease: Option<Lease<B>>,
}

impl<B: RequestBody> Pooled<B> {
    fn release(&mut self) {
        if let Some(Lease { conn, address, pool }) = self.lease.take()
            && conn.io.is_some()
        {
            pool.checkin(address, conn);
        }
    }
}

impl<B: RequestBody> HttpBody for Pooled<B> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        // The body first: the connection reads the next chunk only once the body wants one.
        let frame = match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => match &mut self.lease {
                Some(lease) => {
                    drive(&mut lease.conn.io, cx);
                    ready!(Pin::new(&mut self.body).poll_frame(cx))
                }
                None => return Poll::Pending,
            },
        };
        match &frame {
            Some(Err(_)) => self.lease = None,
            None => self.release(),
            Some(Ok(_)) if self.body.is_end_stream() => self.release(),
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B: RequestBody> Drop for Pooled<B> {
    /// A body that was complete without being read (HEAD, 204, 304) still gives its connection back.
    fn drop(&mut self) {
        if self.body.is_end_stream() {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests;
