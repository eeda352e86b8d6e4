//! Counting the bytes of an upgraded connection as they pass, and splicing two such connections.
//! The server counts the public side into its metrics live; ggrokd counts both sides for its
//! request log, keeping the counts when a connection ends in an error.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Told of the bytes read from and written to one I/O object.
pub trait Tally {
    /// `n` bytes were read from it.
    fn read(&mut self, _n: usize) {}
    /// `n` bytes were written to it.
    fn written(&mut self, _n: usize) {}
}

/// Counts nothing.
impl Tally for () {}

impl<T: Tally + ?Sized> Tally for &mut T {
    fn read(&mut self, n: usize) {
        (**self).read(n);
    }
    fn written(&mut self, n: usize) {
        (**self).written(n);
    }
}

/// The bytes read from an I/O object, in all.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BytesRead(pub u64);

impl Tally for BytesRead {
    fn read(&mut self, n: usize) {
        self.0 += n as u64;
    }
}

/// An I/O object that tells its [`Tally`] of every byte crossing it.
pub struct Counted<T, C> {
    io: T,
    tally: C,
}

impl<T, C: Tally> Counted<T, C> {
    /// Counts `io`'s traffic into `tally`.
    pub fn new(io: T, tally: C) -> Self {
        Self { io, tally }
    }
}

impl<T: AsyncRead + Unpin, C: Tally + Unpin> AsyncRead for Counted<T, C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.io).poll_read(cx, buf))?;
        let n = buf.filled().len() - before;
        self.tally.read(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin, C: Tally + Unpin> AsyncWrite for Counted<T, C> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.io).poll_write(cx, buf))?;
        self.tally.written(n);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, bufs))?;
        self.tally.written(n);
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

/// Waits for the public side of an upgrade, then copies bytes both ways between it and `b` until
/// both directions end, telling `tally` of the public side's traffic as it passes.
pub async fn splice_with<B>(a: OnUpgrade, mut b: B, tally: impl Tally + Unpin) -> io::Result<()>
where
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let a = a.await.map_err(io::Error::other)?;
    let mut a = Counted::new(TokioIo::new(a), tally);
    tokio::io::copy_bidirectional(&mut a, &mut b).await.map(drop)
}

/// Copies bytes both ways between `a` and `b` until both directions end, telling `tally_a` and
/// `tally_b` of each side's traffic as it passes (so the counts hold also when the copy ends in an
/// error).
pub async fn splice<A, B>(
    a: A,
    b: B,
    tally_a: impl Tally + Unpin,
    tally_b: impl Tally + Unpin,
) -> io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut a = Counted::new(a, tally_a);
    let mut b = Counted::new(b, tally_b);
    tokio::io::copy_bidirectional(&mut a, &mut b).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn counted_tells_its_tally_of_both_directions() {
        #[derive(Default)]
        struct Both(usize, usize);
        impl Tally for Both {
            fn read(&mut self, n: usize) {
                self.0 += n;
            }
            fn written(&mut self, n: usize) {
                self.1 += n;
            }
        }
        let (io, mut peer) = tokio::io::duplex(64);
        let mut tally = Both::default();
        let mut counted = Counted::new(io, &mut tally);
        peer.write_all(b"from the peer").await.unwrap();
        let mut buf = [0u8; 13];
        counted.read_exact(&mut buf).await.unwrap();
        counted.write_all(b"back").await.unwrap();
        drop(counted);
        assert_eq!((tally.0, tally.1), (13, 4));
        let mut read = BytesRead::default();
        let (io, mut peer) = tokio::io::duplex(64);
        peer.write_all(b"abc").await.unwrap();
        Counted::new(io, &mut read).read_exact(&mut [0u8; 3]).await.unwrap();
        assert_eq!(read, BytesRead(3));
    }
}
