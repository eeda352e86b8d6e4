//! Finding public clients that stopped reading. A response the client does not read fills the
//! socket's send buffer, then writes stay pending, and the tunnel stream behind it holds up to a
//! window of data for nobody. [`WriteWatch`] wraps a public connection and notes when a write went
//! pending and whether any write made progress since; [`stalled`] resolves once writes have made
//! no progress for the timeout (`[limits] stalled_read_timeout`), and the connection is then
//! closed. A slow reader that still takes bytes is never cut: each write that goes through starts
//! the clock again. While nothing waits to be written (an idle keep-alive connection, a slow local
//! service), no clock runs at all.

use futures_util::task::AtomicWaker;
use pin_project_lite::pin_project;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// What a [`WriteWatch`] tells its watcher.
#[derive(Debug)]
pub struct Progress {
    /// Milliseconds since `base` at which writes went pending with no progress since; 0 when
    /// writes are not blocked.
    blocked_since: AtomicU64,
    base: Instant,
    /// Signalled when writes go from flowing to blocked.
    blocked: Notify,
    /// Bytes written to the connection so far.
    written: AtomicU64,
    /// Woken when a write goes through: a [`Paced`] body waiting for the queue to drain.
    drained: AtomicWaker,
}

impl Progress {
    /// Bytes written to the connection so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Wakes `waker` at the next write that goes through.
    pub fn wake_on_write(&self, waker: &std::task::Waker) {
        self.drained.register(waker);
    }

    fn new() -> Arc<Self> {
        Arc::new(Self {
            blocked_since: AtomicU64::new(0),
            base: Instant::now(),
            blocked: Notify::new(),
            written: AtomicU64::new(0),
            drained: AtomicWaker::new(),
        })
    }

    fn went_pending(&self) {
        let now = (self.base.elapsed().as_millis() as u64).max(1);
        if self.blocked_since.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.blocked.notify_one();
        }
    }

    fn moved(&self) {
        self.blocked_since.store(0, Ordering::Relaxed);
    }

    fn wrote(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        self.drained.wake();
    }

    fn blocked_since(&self) -> Option<u64> {
        match self.blocked_since.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(ms),
        }
    }
}

pin_project! {
    /// A connection whose writes are watched.
    pub struct WriteWatch<IO> {
        #[pin]
        io: IO,
        progress: Arc<Progress>,
    }
}

impl<IO> WriteWatch<IO> {
    /// Wraps `io`; the second value is what [`stalled`] watches.
    pub fn new(io: IO) -> (Self, Arc<Progress>) {
        let progress = Progress::new();
        (Self { io, progress: progress.clone() }, progress)
    }

    fn note<T>(
        progress: &Progress,
        result: Poll<io::Result<T>>,
        moved: impl Fn(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        match &result {
            Poll::Pending => progress.went_pending(),
            Poll::Ready(Ok(v)) if moved(v) => progress.moved(),
            Poll::Ready(_) => {}
        }
        result
    }
}

impl<IO: AsyncRead> AsyncRead for WriteWatch<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite> AsyncWrite for WriteWatch<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        let progress = this.progress;
        Self::note(progress, this.io.poll_write(cx, buf), |n| {
            progress.wrote(*n);
            *n > 0
        })
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let progress = this.progress;
        Self::note(progress, this.io.poll_write_vectored(cx, bufs), |n| {
            progress.wrote(*n);
            *n > 0
        })
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        Self::note(this.progress, this.io.poll_flush(cx), |_| true)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

/// Resolves once writes on the watched connection have been blocked, without any progress, for
/// `timeout`. Pending forever while they flow.
pub async fn stalled(progress: &Progress, timeout: Duration) {
    loop {
        match progress.blocked_since() {
            // A write going pending between this check and the wait leaves a permit: not missed.
            None => progress.blocked.notified().await,
            Some(since) => {
                tokio::time::sleep_until(progress.base + Duration::from_millis(since) + timeout).await;
                if progress.blocked_since() == Some(since) {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_is_found_and_a_slow_one_is_not() {
        let (near, mut far) = tokio::io::duplex(1024);
        let (mut watched, progress) = WriteWatch::new(near);
        let timeout = Duration::from_secs(60);
        let watcher = tokio::spawn({
            let progress = progress.clone();
            async move { stalled(&progress, timeout).await }
        });
        // A slow reader: 512 bytes every 30 s, for 10 minutes of (paused) time.
        let writer = tokio::spawn(async move {
            let chunk = vec![7u8; 4096];
            loop {
                if watched.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        });
        let mut buf = vec![0u8; 512];
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_secs(30)).await;
            far.read_exact(&mut buf).await.unwrap();
            assert!(!watcher.is_finished(), "a moving reader was taken for a stalled one");
        }
        // Then it stops reading: found after the timeout, not before.
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(!watcher.is_finished());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(watcher.is_finished(), "a stalled reader was not found");
        writer.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_to_write_is_not_a_stall() {
        let (near, _far) = tokio::io::duplex(1024);
        let (mut watched, progress) = WriteWatch::new(near);
        watched.write_all(b"small answer").await.unwrap();
        let found =
            tokio::time::timeout(Duration::from_secs(3600), stalled(&progress, Duration::from_secs(1)));
        assert!(found.await.is_err(), "an idle connection is not stalled");
    }
}
