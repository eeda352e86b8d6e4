//! The server's end of a tunnel connection's HTTP/2, driven with the `h2` crate directly rather
//! than through hyper: hyper fixes a connection's windows at the handshake, and the buffer budget
//! (see [`ggrok_proto::budget`]) must shrink and grow the stream window of every connection while
//! it runs. Sending a request, its body, and reading the answer's body as a [`TunnelBody`] are
//! here; an upgraded stream's bytes are [`StreamIo`]; both, and the body pump, are shared with
//! ggrokd in [`ggrok_proto::h2io`].

pub use ggrok_proto::h2io::{RecvBody as TunnelBody, StreamIo};

use bytes::Bytes;
use ggrok_proto::h2io::{self, Windows};
use ggrok_proto::http::Body;
use h2::Reason;
use h2::client::{Connection, SendRequest};
use http::{Request, Response};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

/// The HTTP/2 settings of a tunnel connection.
pub struct Settings {
    /// Each stream's receive window at the start (the budget changes it later).
    pub stream_window: u32,
    /// The connection's receive window.
    pub connection_window: u32,
    /// Largest frame accepted.
    pub max_frame_size: u32,
}

/// Why a request could not be sent, or its answer not read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SendError(#[from] h2::Error);

impl SendError {
    /// The connection is gone (closed, reset or going away): the tunnel is offline.
    pub fn is_offline(&self) -> bool {
        self.0.is_io() || self.0.is_go_away() || self.0.reason() == Some(Reason::REFUSED_STREAM)
    }

    /// The daemon did not process the request, which may then be sent again on another
    /// connection (RFC 9113, section 8.7): it was refused by a graceful GOAWAY (sent after it, or
    /// its stream above the last one the daemon took) or by a `REFUSED_STREAM` reset.
    pub fn is_unprocessed(&self) -> bool {
        let e = &self.0;
        e.is_remote()
            && ((e.is_go_away() && e.reason() == Some(Reason::NO_ERROR))
                || (e.is_reset() && e.reason() == Some(Reason::REFUSED_STREAM)))
    }
}

/// The answer to an upgrade: its head and the stream's bytes, or an answer that declined.
pub type Upgrade = Result<(http::response::Parts, StreamIo), Response<TunnelBody>>;

/// Sends requests on one tunnel connection; cheap to clone.
#[derive(Clone, Debug)]
pub struct Sender(SendRequest<Bytes>);

impl Sender {
    /// Sends `request` as a new stream (its body, if any, from a task of its own) and waits for
    /// the answer's head.
    pub async fn send(&self, request: Request<Body>) -> Result<Response<TunnelBody>, SendError> {
        let mut sender = self.0.clone().ready().await?;
        let (parts, body) = request.into_parts();
        let end = hyper::body::Body::is_end_stream(&body);
        let (answer, stream) = sender.send_request(Request::from_parts(parts, ()), end)?;
        if !end {
            tokio::spawn(h2io::pump(body, stream));
        }
        let resp = answer.await?;
        Ok(resp.map(TunnelBody::new))
    }

    /// Opens an extended CONNECT stream (the request carries its `:protocol`) and, if the
    /// daemon answers 200, the answer's head and the stream's bytes; any other answer comes
    /// back as it is.
    pub async fn upgrade(&self, request: Request<()>) -> Result<Upgrade, SendError> {
        let mut sender = self.0.clone().ready().await?;
        let (answer, stream) = sender.send_request(request, false)?;
        let resp = answer.await?;
        if resp.status() != http::StatusCode::OK {
            return Ok(Err(resp.map(TunnelBody::new)));
        }
        let (parts, recv) = resp.into_parts();
        Ok(Ok((parts, StreamIo::new(stream, recv))))
    }
}

/// The HTTP/2 handshake as the client: the daemon serves.
pub async fn handshake<IO>(io: IO, settings: &Settings) -> Result<(Sender, Connection<IO, Bytes>), h2::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let (sender, connection) = h2::client::Builder::new()
        .enable_push(false)
        .initial_window_size(settings.stream_window)
        .initial_connection_window_size(settings.connection_window)
        .max_frame_size(settings.max_frame_size)
        .max_header_list_size(64 << 10)
        .handshake(io)
        .await?;
    Ok((Sender(sender), connection))
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum Ended {
    /// The connection failed.
    #[error("{0}")]
    H2(#[from] h2::Error),
    /// A PING went unanswered for the keepalive interval.
    #[error("the daemon did not answer a PING within {0:?}")]
    Silent(Duration),
}

/// Runs the connection until it ends: sends a PING every `keepalive` that must be answered within
/// another, and applies every stream window `windows` asks for.
pub async fn drive<IO>(
    mut connection: Connection<IO, Bytes>,
    keepalive: Duration,
    windows: watch::Receiver<u32>,
) -> Result<(), Ended>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let pings = connection.ping_pong().expect("the ping handle is taken once");
    let silent = h2io::keepalive(pings, keepalive);
    tokio::pin!(silent);
    let mut windows = Windows::new(windows);
    loop {
        tokio::select! {
            done = &mut connection => return done.map_err(Ended::H2),
            () = &mut silent => return Err(Ended::Silent(keepalive)),
            () = windows.changed() => {}
        }
        windows.apply(|size| connection.set_initial_window_size(size));
    }
}
