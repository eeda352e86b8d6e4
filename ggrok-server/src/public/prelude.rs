//! The first request head of a connection, read before hyper takes over, so the server can answer
//! a slow (408) or oversized (431) first head itself and know when a connection stops being
//! "pending". The bytes read are replayed to hyper by [`Prefixed`].

use bytes::{Buf, Bytes, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Why no first request head was read.
#[derive(Debug, PartialEq, Eq)]
pub enum NoHead {
    /// The head grew past the limit: answer 431.
    TooLarge,
    /// The peer closed, or the connection failed, before a whole head arrived.
    Closed,
}

/// Reads until the end of the first request head (`\r\n\r\n`), at most `max` bytes. The caller
/// bounds the time it may take.
pub async fn first_head<S: AsyncRead + Unpin>(io: &mut S, max: usize) -> Result<Bytes, NoHead> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let searched = buf.len().saturating_sub(3);
        match io.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return Err(NoHead::Closed),
            Ok(_) => {}
        }
        if buf[searched..].windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(buf.freeze());
        }
        if buf.len() > max {
            return Err(NoHead::TooLarge);
        }
    }
}

/// A plain-text HTTP/1.1 response that closes the connection, for answers given before hyper.
pub fn canned(status: u16, reason: &str, message: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\nx-ggrok-error: {status}\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{message}\n",
        message.len() + 1
    )
    .into_bytes()
}

/// An IO that first yields `prefix`, then reads from `io`; writes go straight to `io`.
pub struct Prefixed<S> {
    prefix: Bytes,
    io: S,
}

impl<S> Prefixed<S> {
    /// Replays `prefix` before `io`.
    pub fn new(prefix: Bytes, io: S) -> Self {
        Self { prefix, io }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn reads_a_head_split_across_writes_and_replays_it() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"GET / HTTP/1.1\r\nHost: a\r").await.unwrap();
        let reader = tokio::spawn(async move {
            let head = first_head(&mut server, 8192).await.unwrap();
            let mut all = Vec::new();
            let mut replay = Prefixed::new(head, server);
            let mut chunk = [0u8; 64];
            while !all.ends_with(b"body") {
                let n = replay.read(&mut chunk).await.unwrap();
                all.extend_from_slice(&chunk[..n]);
            }
            all
        });
        client.write_all(b"\n\r\nbody").await.unwrap();
        assert_eq!(reader.await.unwrap(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody");
    }

    #[tokio::test]
    async fn oversized_and_closed_heads_are_refused() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        client.write_all(&vec![b'a'; 10_000]).await.unwrap();
        assert_eq!(first_head(&mut server, 8192).await, Err(NoHead::TooLarge));
        let (client, mut server) = tokio::io::duplex(1024);
        drop(client);
        assert_eq!(first_head(&mut server, 8192).await, Err(NoHead::Closed));
    }
}
