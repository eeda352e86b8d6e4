//! A TCP socket spliced with a tunnel stream (TCP tunnels), without copy buffers in between:
//! each read from the socket allocates a buffer only once the socket is readable, sized to what
//! recent reads brought (from 8 KiB, doubling while reads fill it, up to 256 KiB, halving when
//! they bring much less), and hands it to h2 as is; each DATA frame from the stream is written to
//! the socket as is, and its window given back once written. An idle connection holds no buffer,
//! a busy one sends large frames, and a socket that stops taking data stops the stream's window.
//!
//! Half-closes pass both ways: the socket's end of input ends the stream (END_STREAM), the
//! stream's end shuts the socket's write side; the splice ends when both directions have.

use crate::h2io::{StreamIo, poll_window, to_io};
use crate::tally::Tally;
use bytes::{Bytes, BytesMut};
use h2::{Reason, RecvStream, SendStream};
use std::future::poll_fn;
use std::io;
use std::sync::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The first read's buffer.
const FIRST_READ: usize = 8 * 1024;
/// The largest read's buffer.
const MAX_READ: usize = 256 * 1024;

/// Copies bytes both ways between `socket` and `stream` until both directions end, telling
/// `tally` of the socket's traffic as it passes (`read`: from the socket, `written`: to it).
pub async fn splice_socket(stream: StreamIo, socket: TcpStream, tally: impl Tally + Send) -> io::Result<()> {
    let (send, recv, unread) = stream.into_parts();
    let (reader, writer) = socket.into_split();
    let tally = Mutex::new(tally);
    tokio::try_join!(upstream(reader, send, &tally), downstream(recv, unread, writer, &tally)).map(drop)
}

/// Socket to stream, ending the stream at the socket's end of input.
async fn upstream(
    reader: OwnedReadHalf,
    mut send: SendStream<Bytes>,
    tally: &Mutex<impl Tally>,
) -> io::Result<()> {
    let mut size = FIRST_READ;
    loop {
        reader.as_ref().readable().await?;
        let mut buf = BytesMut::with_capacity(size);
        let n = match reader.as_ref().try_read_buf(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            // A stream already reset has nothing to end.
            let _ = send.send_data(Bytes::new(), true);
            return Ok(());
        }
        tally.lock().expect("tally lock").read(n);
        if n == size && size < MAX_READ {
            size *= 2;
        } else if n < size / 4 && size > FIRST_READ {
            size /= 2;
        }
        let mut data = buf.freeze();
        while !data.is_empty() {
            let granted = match poll_fn(|cx| poll_window(&mut send, data.len(), cx)).await {
                Ok(granted) => granted,
                Err(Some(e)) => return Err(to_io(e)),
                Err(None) => return Err(io::ErrorKind::BrokenPipe.into()),
            };
            send.send_data(data.split_to(granted), false).map_err(to_io)?;
        }
    }
}

/// Stream to socket, shutting the socket's write side at the stream's end.
async fn downstream(
    mut recv: RecvStream,
    unread: Bytes,
    mut writer: OwnedWriteHalf,
    tally: &Mutex<impl Tally>,
) -> io::Result<()> {
    if !unread.is_empty() {
        writer.write_all(&unread).await?;
        tally.lock().expect("tally lock").written(unread.len());
    }
    loop {
        match poll_fn(|cx| recv.poll_data(cx)).await {
            Some(Ok(data)) => {
                writer.write_all(&data).await?;
                tally.lock().expect("tally lock").written(data.len());
                // Given back once written: a socket that stops taking data stops the stream.
                let _ = recv.flow_control().release_capacity(data.len());
            }
            // A reset without error is how the other side may end the stream: end of input.
            Some(Err(e)) if e.reason() == Some(Reason::NO_ERROR) => break,
            Some(Err(e)) => return Err(to_io(e)),
            None => break,
        }
    }
    writer.shutdown().await
}
