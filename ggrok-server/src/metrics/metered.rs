//! Counting what crosses the public side without copying it: a response body wrapper that counts
//! bytes sent and records the request's duration when the body ends, and an IO wrapper for
//! upgraded connections.

use super::HostMeter;
use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Counts `resp` as an answered request of `meter`'s host, and wraps its body so the bytes sent
/// are counted and the duration since `started` is recorded when the body ends.
pub fn respond<B>(
    meter: Arc<HostMeter>,
    started: Instant,
    resp: Response<B>,
) -> Response<ggrok_proto::http::Body>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin + Send + Sync + 'static,
{
    meter.answered(resp.status());
    resp.map(|body| Metered { inner: body, meter, started, done: AtomicBool::new(false) }.boxed())
}

/// A response body being counted; see [`respond`].
pub struct Metered<B> {
    inner: B,
    meter: Arc<HostMeter>,
    started: Instant,
    done: AtomicBool,
}

impl<B> Metered<B> {
    /// Records the duration, once. Called as soon as the end is known — before hyper writes the
    /// last bytes, so a client that has read the whole answer finds it counted — or on drop.
    fn finish(&self) {
        if !self.done.swap(true, Ordering::Relaxed) {
            self.meter.took(self.started.elapsed());
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Metered<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    self.meter.sent(data.len());
                }
                if self.inner.is_end_stream() {
                    self.finish();
                }
            }
            Some(Err(_)) | None => self.finish(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.finish();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Metered<B> {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The public side of an upgraded connection: bytes read from it are received, bytes written to
/// it sent, counted as they pass.
pub struct CountedIo<T> {
    io: T,
    meter: Arc<HostMeter>,
}

impl<T> CountedIo<T> {
    /// Counts `io`'s traffic for `meter`'s host.
    pub fn new(io: T, meter: Arc<HostMeter>) -> Self {
        Self { io, meter }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CountedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.io).poll_read(cx, buf))?;
        self.meter.received(buf.filled().len() - before);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountedIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.io).poll_write(cx, buf))?;
        self.meter.sent(n);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, bufs))?;
        self.meter.sent(n);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
