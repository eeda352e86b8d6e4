//! The raw-TCP local service of the part `tcp` ([`super::tcp`]): a tiny protocol, one request per
//! connection, as cheap as a tokio socket can be so the figures measure the tunnels.
//!
//! The first byte says what the connection is:
//! - `D` + u64 length (big-endian): the service sends that many bytes, cut from the shared block
//!   of [`super::upstream::block`] (byte `i` of the stream is byte `i % BLOCK` of the block), and
//!   closes;
//! - `U` + u64 length: the service reads that many bytes, answers the count it read as a u64 and
//!   closes;
//! - `P` + [`PING`] bytes: the service echoes the bytes and closes (one small connection).

use super::upstream::{BLOCK, block};
use anyhow::bail;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The payload of one small connection.
pub const PING: usize = 64;

/// Binds 127.0.0.1:0 and serves on the current runtime until it ends.
pub async fn start() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            // A failed connection is the client's to notice: it checks every byte it gets.
            tokio::spawn(async move { serve(stream).await });
        }
    });
    Ok(addr)
}

async fn serve(mut stream: TcpStream) -> anyhow::Result<()> {
    match stream.read_u8().await? {
        b'D' => {
            let len = stream.read_u64().await?;
            let block = block();
            let mut sent = 0u64;
            while sent < len {
                let n = (len - sent).min(BLOCK as u64) as usize;
                stream.write_all(&block[..n]).await?;
                sent += n as u64;
            }
        }
        b'U' => {
            let len = stream.read_u64().await?;
            let mut buf = vec![0u8; BLOCK];
            let mut got = 0u64;
            while got < len {
                let want = (len - got).min(BLOCK as u64) as usize;
                match stream.read(&mut buf[..want]).await? {
                    0 => break,
                    n => got += n as u64,
                }
            }
            stream.write_u64(got).await?;
        }
        b'P' => {
            let mut ping = [0u8; PING];
            stream.read_exact(&mut ping).await?;
            stream.write_all(&ping).await?;
        }
        other => bail!("unknown request {other:#x}"),
    }
    stream.shutdown().await?;
    Ok(())
}
