//! Answers handed to hyper no faster than the client takes them. hyper queues an answer's pieces
//! for the socket up to its buffer size (400 KiB) before it waits, and a piece it has taken is a
//! piece the tunnel stream has given its window back for: a client that stops reading would hold
//! that queue on top of the stream window the buffer budget sets. [`Paced`] keeps at most
//! [`QUEUED`] bytes handed over and not yet written to the socket ([`stall::Progress`] counts
//! what was written), so hyper's large buffer still serves fast readers and uploads, and a
//! stalled reader holds one window and one piece.

use super::stall::Progress;
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Most bytes of an answer handed to hyper and not yet written.
pub const QUEUED: u64 = 64 << 10;

/// An answer's body, paced by its connection's writes.
pub struct Paced<B> {
    inner: B,
    writes: Arc<Progress>,
    /// What the connection had written when the body started.
    written_before: u64,
    handed: u64,
}

impl<B> Paced<B> {
    /// Paces `inner` by the writes `writes` counts.
    pub fn new(inner: B, writes: Arc<Progress>) -> Self {
        let written_before = writes.written();
        Self { inner, writes, written_before, handed: 0 }
    }

    fn queued(&self) -> u64 {
        // What was written includes the head and framing: never more queued than handed.
        self.handed.saturating_sub(self.writes.written() - self.written_before)
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Paced<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if self.queued() >= QUEUED {
            self.writes.wake_on_write(cx.waker());
            // A write may have gone through between the check and the registration.
            if self.queued() >= QUEUED {
                return Poll::Pending;
            }
        }
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
            self.handed += data.map_or(0, |d| d.len() as u64);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
