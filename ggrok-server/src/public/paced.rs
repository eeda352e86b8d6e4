//! Answers handed to hyper no faster than the client takes them. hyper queues an answer's pieces
//! for the socket up to its buffer size, or 16 pieces, before it waits, and a piece it has taken is a
//! piece the tunnel stream has given its window back for: a client that stops reading would hold
//! that queue on top of the stream window the buffer budget sets. [`Paced`] keeps at most a
//! stream window (the budget's, at least [`MIN_QUEUED`]) handed over and not yet written to the
//! socket ([`stall::Progress`] counts what was written): without pressure it leaves hyper alone,
//! and under pressure a stalled reader holds about two windows, one in the stream and one here.

use super::stall::Progress;
use bytes::Bytes;
use ggrok_proto::budget::Budget;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Bytes of an answer hyper may always have queued, however small the windows.
pub const MIN_QUEUED: u64 = 64 << 10;

/// An answer's body, paced by its connection's writes.
pub struct Paced<B> {
    inner: B,
    writes: Arc<Progress>,
    budget: Arc<Budget>,
    /// What the connection had written when the body started.
    written_before: u64,
    handed: u64,
}

impl<B> Paced<B> {
    /// Paces `inner` by the writes `writes` counts, under `budget`'s window.
    pub fn new(inner: B, writes: Arc<Progress>, budget: Arc<Budget>) -> Self {
        let written_before = writes.written();
        Self { inner, writes, budget, written_before, handed: 0 }
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
        let queued = self.queued();
        if queued >= MIN_QUEUED && queued >= u64::from(self.budget.window()) {
            self.writes.wake_on_write(cx.waker());
            // A write may have gone through between the check and the registration.
            if self.queued() >= MIN_QUEUED.max(u64::from(self.budget.window())) {
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
