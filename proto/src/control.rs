//! The control stream: one long-lived extended CONNECT stream (`:protocol = ggrok-control`) that
//! the server opens right after the HTTP/2 handshake. It carries length-prefixed JSON messages:
//! [`ServerMessage`] from the server, [`ClientMessage`] from ggrokd.
//!
//! Sequence: the server sends `Hello`; ggrokd answers `Hello`, then one `Register` per tunnel; the
//! server answers each with `Registered` or `Refused`. `Register`/`Unregister` may follow at any time.

use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io;
use std::marker::PhantomData;
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// Largest control message either side sends or accepts, in bytes of JSON.
pub const MAX_CONTROL_MESSAGE: usize = 64 * 1024;

/// Messages from ggrok-server to ggrokd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMessage {
    /// First message: the server's protocol version and the `[[client]]` name the token matched.
    Hello {
        /// [`crate::PROTOCOL_VERSION`] of the server.
        version: u32,
        /// Name of the client entry this session authenticated as.
        client: String,
        /// Server's identifier of this session, for logs on both sides.
        session: u64,
    },
    /// A host claim was accepted: public requests for it now reach this session.
    Registered {
        /// The host or pattern, as claimed.
        host: String,
    },
    /// A host claim was refused; other hosts of the session are unaffected.
    Refused {
        /// The host or pattern, as claimed.
        host: String,
        /// Why, in words meant for the person running ggrokd.
        reason: String,
    },
    /// A host was released after `Unregister`.
    Unregistered {
        /// The host or pattern released.
        host: String,
    },
    /// A message the server could not act on (malformed, unknown). The stream stays open.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// Messages from ggrokd to ggrok-server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message: ggrokd's protocol version and its name and version, for the server's logs.
    Hello {
        /// [`crate::PROTOCOL_VERSION`] of ggrokd.
        version: u32,
        /// For example `ggrokd/0.1.0`.
        agent: String,
    },
    /// Claim a host or pattern (`api.example.com`, `*.example.com`) for this session.
    Register {
        /// The host or pattern.
        host: String,
    },
    /// Release a host claimed before.
    Unregister {
        /// The host or pattern.
        host: String,
    },
}

/// Why a control message could not be read or written.
#[derive(Debug, Error)]
pub enum ControlError {
    /// The stream itself failed, or a frame exceeded [`MAX_CONTROL_MESSAGE`].
    #[error("control stream: {0}")]
    Io(#[from] io::Error),
    /// A frame arrived whole but is not a message we know.
    #[error("malformed control message: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Frames JSON messages with a 4-byte big-endian length, decoding `In` and encoding `Out`.
pub struct ControlCodec<In, Out> {
    frames: LengthDelimitedCodec,
    _types: PhantomData<fn(Out) -> In>,
}

/// The codec ggrok-server uses.
pub type ServerCodec = ControlCodec<ClientMessage, ServerMessage>;
/// The codec ggrokd uses.
pub type ClientCodec = ControlCodec<ServerMessage, ClientMessage>;

impl<In, Out> Default for ControlCodec<In, Out> {
    fn default() -> Self {
        Self::with_max_message(MAX_CONTROL_MESSAGE)
    }
}

impl<In, Out> ControlCodec<In, Out> {
    /// A codec refusing messages longer than `max` bytes.
    pub fn with_max_message(max: usize) -> Self {
        Self {
            frames: LengthDelimitedCodec::builder().max_frame_length(max).new_codec(),
            _types: PhantomData,
        }
    }
}

impl<In: DeserializeOwned, Out> Decoder for ControlCodec<In, Out> {
    type Item = In;
    type Error = ControlError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, ControlError> {
        match self.frames.decode(src)? {
            Some(frame) => Ok(Some(serde_json::from_slice(&frame)?)),
            None => Ok(None),
        }
    }
}

impl<In, Out: Serialize> Encoder<Out> for ControlCodec<In, Out> {
    type Error = ControlError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), ControlError> {
        let json = serde_json::to_vec(&item)?;
        self.frames.encode(Bytes::from(json), dst)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio_util::codec::{FramedRead, FramedWrite};

    #[tokio::test]
    async fn messages_round_trip_over_a_stream() {
        let (a, b) = tokio::io::duplex(4096);
        let mut client = FramedWrite::new(a, ClientCodec::default());
        let server = FramedRead::new(b, ServerCodec::default());
        let sent = vec![
            ClientMessage::Hello { version: 1, agent: "ggrokd/test".into() },
            ClientMessage::Register { host: "*.example.com".into() },
            ClientMessage::Unregister { host: "api.example.com".into() },
        ];
        for m in &sent {
            client.send(m.clone()).await.unwrap();
        }
        drop(client);
        let got: Vec<_> = server.map(|m| m.unwrap()).collect().await;
        assert_eq!(got, sent);
    }

    #[test]
    fn server_messages_have_a_stable_json_form() {
        let m = ServerMessage::Refused { host: "a.com".into(), reason: "held".into() };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"type":"refused","host":"a.com","reason":"held"}"#
        );
        let hello: ServerMessage =
            serde_json::from_str(r#"{"type":"hello","version":1,"client":"alice","session":7}"#).unwrap();
        assert_eq!(hello, ServerMessage::Hello { version: 1, client: "alice".into(), session: 7 });
    }

    fn frame(json: &[u8]) -> BytesMut {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(json.len() as u32).to_be_bytes());
        buf.extend_from_slice(json);
        buf
    }

    #[test]
    fn malformed_and_unknown_messages_are_errors() {
        let mut codec = ServerCodec::default();
        for bad in [&b"{not json"[..], br#"{"type":"launch_missiles"}"#, br#"{"type":"register"}"#] {
            let err = codec.decode(&mut frame(bad)).unwrap_err();
            assert!(matches!(err, ControlError::Malformed(_)), "{err}");
        }
        let extra = br#"{"type":"register","host":"a.com","evil":1}"#;
        assert!(codec.decode(&mut frame(extra)).is_err());
    }

    #[test]
    fn oversized_frames_are_refused_before_buffering() {
        let mut codec = ServerCodec::default();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&((MAX_CONTROL_MESSAGE as u32) + 1).to_be_bytes());
        buf.extend_from_slice(b"{");
        assert!(matches!(codec.decode(&mut buf), Err(ControlError::Io(_))));
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let mut codec = ClientCodec::default();
        let full = frame(br#"{"type":"registered","host":"a.com"}"#);
        let mut part = BytesMut::from(&full[..10]);
        assert!(codec.decode(&mut part).unwrap().is_none());
        part.extend_from_slice(&full[10..]);
        assert_eq!(
            codec.decode(&mut part).unwrap(),
            Some(ServerMessage::Registered { host: "a.com".into() })
        );
    }
}
