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
        // The window is read only once the floor is reached: most answers never get there.
        if self.queued() >= MIN_QUEUED {
            let cap = MIN_QUEUED.max(u64::from(self.budget.window()));
            if self.queued() >= cap {
                self.writes.wake_on_write(cx.waker());
                // A write may have gone through between the check and the registration.
                if self.queued() >= cap {
                    return Poll::Pending;
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::public::stall::WriteWatch;
    use http_body_util::StreamBody;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Wake, Waker};
    use tokio::io::AsyncWriteExt;

    type Chunks =
        StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

    fn chunks(n: usize, size: usize) -> Chunks {
        let frames: Vec<_> = (0..n).map(|_| Ok(Frame::data(Bytes::from(vec![0u8; size])))).collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[derive(Default)]
    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn poll(body: &mut Paced<Chunks>, waker: &Waker) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(body).poll_frame(&mut Context::from_waker(waker))
    }

    #[tokio::test]
    async fn under_pressure_at_most_the_floor_waits_for_the_socket() {
        let budget = Budget::new(1 << 20);
        // Enough answers in flight that the window is below the floor: the cap is MIN_QUEUED.
        let _answers: Vec<_> = (0..8).map(|_| budget.answer()).collect();
        assert!(u64::from(budget.window()) < MIN_QUEUED);
        let (socket, _peer) = tokio::io::duplex(1 << 20);
        let (mut socket, writes) = WriteWatch::new(socket);
        let mut body = Paced::new(chunks(4, 32 << 10), writes, budget);
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        assert!(matches!(poll(&mut body, &waker), Poll::Ready(Some(Ok(_)))));
        assert!(matches!(poll(&mut body, &waker), Poll::Ready(Some(Ok(_)))));
        // 64 KiB handed and nothing written: the next piece waits.
        assert!(poll(&mut body, &waker).is_pending());
        assert!(!flag.0.load(Ordering::SeqCst));
        // The socket takes some: the body is woken and hands the next piece.
        socket.write_all(&[0u8; 40 << 10]).await.unwrap();
        assert!(flag.0.load(Ordering::SeqCst), "woken by the write");
        assert!(matches!(poll(&mut body, &waker), Poll::Ready(Some(Ok(_)))));
    }

    #[tokio::test]
    async fn without_pressure_hyper_is_left_alone() {
        let budget = Budget::new(256 << 20);
        let (socket, _peer) = tokio::io::duplex(1 << 20);
        let (_socket, writes) = WriteWatch::new(socket);
        let mut body = Paced::new(chunks(16, 64 << 10), writes, budget);
        let waker = Waker::noop();
        for _ in 0..16 {
            assert!(
                matches!(poll(&mut body, waker), Poll::Ready(Some(Ok(_)))),
                "1 MiB handed, nothing written"
            );
        }
        assert!(matches!(poll(&mut body, waker), Poll::Ready(None)));
    }
}
