//! Counting what crosses the public side without copying it: a response body wrapper that counts
//! bytes sent and records the request's duration when the body ends, and the tally of upgraded
//! connections.

use super::HostMeter;
use bytes::Bytes;
use ggrok_proto::tally::Tally;
use http::Response;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

/// Counts `resp` as an answered request of `meter`'s host, and wraps its body so the bytes sent
/// are counted and the duration since `started` is recorded when the body ends.
pub fn respond<B>(
    meter: Arc<HostMeter>,
    started: Instant,
    resp: Response<B>,
) -> Response<ggrok_proto::http::Body>
where
    B: Body<Data = Bytes> + Unpin + Send + Sync + 'static,
    B::Error: Into<ggrok_proto::http::BodyError>,
{
    meter.answered(resp.status());
    resp.map(|body| {
        Metered { inner: body, meter, started, done: AtomicBool::new(false) }.map_err(Into::into).boxed()
    })
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

/// Counts the public side of an upgraded connection for its host: bytes read from it are
/// received, bytes written to it sent (a [`Tally`] for [`ggrok_proto::tally::splice`]).
pub struct PublicTraffic(pub Arc<HostMeter>);

impl Tally for PublicTraffic {
    fn read(&mut self, n: usize) {
        self.0.received(n);
    }
    fn written(&mut self, n: usize) {
        self.0.sent(n);
    }
}
