//! WebSocket as a byte stream.
//!
//! Binary messages carry consecutive chunks of one byte stream; text, ping and pong messages carry
//! none of it (tungstenite answers pings itself). HTTP/2 runs on the resulting
//! `AsyncRead + AsyncWrite`. Closing the WebSocket ends the stream.

use bytes::Bytes;
use futures_util::future::ready;
use futures_util::{SinkExt, StreamExt};
use std::io;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::io::{CopyToBytes, SinkWriter, StreamReader};

/// WebSocket settings of a tunnel connection, the same at both ends.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(crate::tuning::MAX_WS_MESSAGE))
        .max_frame_size(Some(crate::tuning::MAX_WS_MESSAGE))
        .read_buffer_size(crate::tuning::WS_READ_BUFFER)
}

/// Turns a WebSocket into one bidirectional byte stream.
pub fn ws_io<S>(ws: WebSocketStream<S>) -> impl AsyncRead + AsyncWrite + Send + Unpin + 'static
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    let chunks = stream.filter_map(|message| {
        ready(match message {
            Ok(Message::Binary(bytes)) => Some(Ok(bytes)),
            Ok(_) => None,
            Err(e) => Some(Err(io::Error::other(e))),
        })
    });
    let sink = sink
        .with(|bytes: Bytes| ready(Ok::<_, tokio_tungstenite::tungstenite::Error>(Message::Binary(bytes))))
        .sink_map_err(io::Error::other);
    tokio::io::join(StreamReader::new(chunks), SinkWriter::new(CopyToBytes::new(sink)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::Role;

    #[tokio::test]
    async fn bytes_cross_both_ways_and_close_ends_the_stream() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let client = WebSocketStream::from_raw_socket(a, Role::Client, None).await;
        let server = WebSocketStream::from_raw_socket(b, Role::Server, None).await;
        let (mut c, mut s) = (ws_io(client), ws_io(server));

        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let expected = payload.clone();
        let writer = tokio::spawn(async move {
            c.write_all(&payload).await.unwrap();
            c.flush().await.unwrap();
            let mut reply = [0u8; 5];
            c.read_exact(&mut reply).await.unwrap();
            assert_eq!(&reply, b"thank");
            c.shutdown().await.unwrap();
            c // kept open until the server has seen the close
        });
        let mut got = vec![0u8; expected.len()];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(got, expected);
        s.write_all(b"thank").await.unwrap();
        s.flush().await.unwrap();
        let _c = writer.await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }
}
