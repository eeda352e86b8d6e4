//! Bodies crossing the tunnel: an answer's body read from its stream, giving the window back as
//! each piece is taken, and a request's body written to its stream as the window allows.

use bytes::Bytes;
use ggrok_proto::http::{Body, BodyError};
use h2::{RecvStream, SendStream};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// The body of an answer arriving on a tunnel stream.
#[derive(Debug)]
pub struct TunnelBody {
    stream: RecvStream,
    data_done: bool,
}

impl TunnelBody {
    pub(super) fn new(stream: RecvStream) -> Self {
        Self { stream, data_done: false }
    }
}

impl hyper::body::Body for TunnelBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if !self.data_done {
            match ready!(self.stream.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Taken: the sender may send as much again. What is not taken stays in the
                    // stream's window, which is how a reader that stops holds at most a window.
                    let _ = self.stream.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => self.data_done = true,
            }
        }
        match ready!(self.stream.poll_trailers(cx)) {
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

/// Writes a request's body to its stream, taking each piece only when the stream has window for
/// it, so a daemon that stops reading makes the public client wait rather than the server buffer.
/// A body that fails, or a stream the daemon resets, ends the other side too.
pub(super) async fn pump(mut body: Body, mut stream: SendStream<Bytes>) {
    loop {
        // Wait for some window before taking the next piece.
        stream.reserve_capacity(1);
        match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(_)) => {}
            // The stream was reset (the answer came early and the daemon stopped reading).
            Some(Err(_)) | None => return,
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
            Some(Err(_)) => return stream.send_reset(h2::Reason::CANCEL),
            Some(Ok(frame)) => frame,
        };
        match frame.into_data() {
            Ok(mut data) => {
                while !data.is_empty() {
                    stream.reserve_capacity(data.len());
                    let granted = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
                        Some(Ok(n)) => n.min(data.len()),
                        Some(Err(_)) | None => return,
                    };
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
