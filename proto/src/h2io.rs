//! Both ends of a tunnel connection drive HTTP/2 with the `h2` crate directly rather than through
//! hyper: hyper fixes a connection's windows at the handshake, and the buffer budget (see
//! [`crate::budget`]) must shrink and grow the stream window of every connection while it runs.
//! What the two ends share is here:
//!
//! - [`RecvBody`]: a body arriving on a stream, giving the window back as each piece is taken;
//! - [`pump`]: a body written to a stream as the window allows;
//! - [`StreamIo`]: the bytes of an extended CONNECT stream (the control stream, an upgraded
//!   WebSocket) as tokio I/O;
//! - [`Windows`]: following the budget's stream window on one connection;
//! - [`keepalive`]: PINGs that must be answered.

use crate::budget;
use bytes::{Buf, Bytes};
use h2::{Ping, PingPong, Reason, RecvStream, SendStream};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

/// A body arriving on a tunnel stream: an answer's in ggrok-server, a request's in ggrokd.
#[derive(Debug)]
pub struct RecvBody {
    stream: RecvStream,
    data_done: bool,
    /// Counts the body against the buffer budget until it ends.
    in_flight: Option<budget::Answer>,
}

impl RecvBody {
    /// The body of `stream`.
    pub fn new(stream: RecvStream) -> Self {
        Self { stream, data_done: false, in_flight: None }
    }

    /// Counts the body against `budget` (see [`budget::Budget::answer`]) until it ends or is
    /// dropped; an empty body is not counted.
    pub fn counted(mut self, budget: &std::sync::Arc<budget::Budget>) -> Self {
        if !self.stream.is_end_stream() {
            self.in_flight = Some(budget.answer());
        }
        self
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = crate::http::BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if !self.data_done {
            match ready!(self.stream.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Taken: the sender may send as much again. What is not taken stays in the
                    // stream's window, which is how a reader that stops holds at most a window.
                    let _ = self.stream.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => {
                    self.in_flight = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
                None => self.data_done = true,
            }
        }
        let trailers = ready!(self.stream.poll_trailers(cx));
        self.in_flight = None;
        match trailers {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.stream.is_end_stream() { SizeHint::with_exact(0) } else { SizeHint::default() }
    }
}

/// Writes a body to its stream, taking each piece only when the stream has window for it, so a
/// peer that stops reading makes the body's source wait rather than this side buffer. A body that
/// fails, or a stream the peer resets, ends the other side too.
pub async fn pump<B>(mut body: B, mut stream: SendStream<Bytes>)
where
    B: Body<Data = Bytes> + Unpin,
{
    loop {
        // Wait for some window before taking the next piece.
        if window(&mut stream, 1).await.is_none() {
            // The stream was reset (the peer stopped reading, or went away).
            return;
        }
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = std::future::poll_fn(|cx| stream.poll_reset(cx)) => return,
        };
        let frame = match frame {
            None => {
                let _ = stream.send_data(Bytes::new(), true);
                return;
            }
            Some(Err(_)) => return stream.send_reset(Reason::CANCEL),
            Some(Ok(frame)) => frame,
        };
        match frame.into_data() {
            Ok(mut data) => {
                while !data.is_empty() {
                    let Some(granted) = window(&mut stream, data.len()).await else { return };
                    let piece = data.split_to(granted);
                    let end = data.is_empty() && body.is_end_stream();
                    if stream.send_data(piece, end).is_err() || end {
                        return;
                    }
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    let _ = stream.send_trailers(trailers);
                    return;
                }
            }
        }
    }
}

/// Waits until `stream` has window for some of `wanted` bytes, and says for how many (at most
/// `wanted`); none when the stream was reset.
async fn window(stream: &mut SendStream<Bytes>, wanted: usize) -> Option<usize> {
    std::future::poll_fn(|cx| poll_window(stream, wanted, cx)).await.ok()
}

/// Asks for window for `wanted` bytes on `stream` and says for how many it has some (at most
/// `wanted`); the error when the stream failed, none when it was closed.
pub(crate) fn poll_window(
    stream: &mut SendStream<Bytes>,
    wanted: usize,
    cx: &mut Context<'_>,
) -> Poll<Result<usize, Option<h2::Error>>> {
    stream.reserve_capacity(wanted);
    loop {
        // What is assigned already counts: `poll_capacity` only tells of increases, and waiting
        // for one with window in hand waits for a WINDOW_UPDATE that may never come.
        let assigned = stream.capacity();
        if assigned > 0 {
            return Poll::Ready(Ok(assigned.min(wanted)));
        }
        match ready!(stream.poll_capacity(cx)) {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Poll::Ready(Err(Some(e))),
            None => return Poll::Ready(Err(None)),
        }
    }
}

/// Both halves of an upgraded tunnel stream: reads take DATA frames and give their window back,
/// writes wait for window and send.
#[derive(Debug)]
pub struct StreamIo {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// What the last DATA frame held beyond the last read's buffer.
    unread: Bytes,
}

impl StreamIo {
    /// The bytes of the stream whose halves these are.
    pub fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        Self { send, recv, unread: Bytes::new() }
    }

    /// The stream's halves, and what was received but not read yet.
    pub fn into_parts(self) -> (SendStream<Bytes>, RecvStream, Bytes) {
        (self.send, self.recv, self.unread)
    }
}

pub(crate) fn to_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e.into_io().expect("an I/O error");
    }
    match e.reason() {
        Some(Reason::NO_ERROR) | Some(Reason::CANCEL) => io::Error::new(io::ErrorKind::BrokenPipe, e),
        _ => io::Error::other(e),
    }
}

impl AsyncRead for StreamIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.unread.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.unread = data;
                }
                // A reset without error is how the other side may end the stream: end of input.
                Some(Err(e)) if e.reason() == Some(Reason::NO_ERROR) => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.unread.len().min(buf.remaining());
        buf.put_slice(&self.unread[..n]);
        self.unread.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for StreamIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let granted = match ready!(poll_window(&mut self.send, buf.len(), cx)) {
            Ok(granted) => granted,
            Err(Some(e)) => return Poll::Ready(Err(to_io(e))),
            Err(None) => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        };
        match self.send.send_data(Bytes::copy_from_slice(&buf[..granted]), false) {
            Ok(()) => Poll::Ready(Ok(granted)),
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // END_STREAM: the other side reads the end of input; a stream already ended or reset
        // has nothing to shut down.
        let _ = self.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}

/// The budget's stream window as one connection follows it: [`Windows::changed`] waits for a
/// window to apply, [`Windows::apply`] applies it (as a SETTINGS change, which RFC 9113 §6.9.2
/// applies to the streams already open too).
#[derive(Debug)]
pub struct Windows {
    budget: watch::Receiver<u32>,
    budget_open: bool,
    applied: u32,
    wanted: u32,
    retry: tokio::time::Interval,
}

impl Windows {
    /// Follows `budget`'s windows from the one it asks for now, which the connection's handshake
    /// should grant ([`Windows::initial`]).
    pub fn new(mut budget: watch::Receiver<u32>) -> Self {
        let applied = *budget.borrow_and_update();
        let retry = tokio::time::interval(Duration::from_millis(20));
        Self { budget, budget_open: true, applied, wanted: applied, retry }
    }

    /// The window at the start.
    pub fn initial(&self) -> u32 {
        self.applied
    }

    /// Waits until there is a window to apply: the budget changed, or a change not yet applied
    /// may be tried again.
    pub async fn changed(&mut self) {
        tokio::select! {
            changed = self.budget.changed(), if self.budget_open => match changed {
                Ok(()) => self.wanted = *self.budget.borrow_and_update(),
                // The budget is gone: the process is stopping; keep serving what is in flight.
                Err(_) => self.budget_open = false,
            },
            _ = self.retry.tick(), if self.wanted != self.applied => {}
            else => std::future::pending().await,
        }
    }

    /// Applies the wanted window with `set` (the connection's `set_initial_window_size`) unless
    /// it is applied already. A change waits while the previous one is not yet acknowledged;
    /// [`Windows::changed`] tries it again soon.
    pub fn apply(&mut self, set: impl FnOnce(u32) -> Result<(), h2::Error>) {
        if self.wanted != self.applied && set(self.wanted).is_ok() {
            self.applied = self.wanted;
        }
    }
}

/// Sends a PING every `interval` that must be answered within another; returns when one was not.
/// While the connection is up but gone, waits forever: the connection's own result says how.
pub async fn keepalive(mut pings: PingPong, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        match tokio::time::timeout(interval, pings.ping(Ping::opaque())).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => std::future::pending::<()>().await,
            Err(_) => return,
        }
    }
}
