//! The control stream: one long-lived extended CONNECT stream (`:protocol = ggrok-control`) that
//! the server opens right after the HTTP/2 handshake. It carries length-prefixed JSON messages:
//! [`ServerMessage`] from the server, [`ClientMessage`] from ggrokd.
//!
//! Sequence: the server sends `Hello`; ggrokd answers `Hello`, then one claim per tunnel; the
//! server answers each with its acceptance or refusal. Claims and releases may follow at any time.
//! Version 1 (see [`crate::PROTOCOL_VERSION`]) claims hosts with `Register`/`Unregister`, answered
//! by `Registered`/`Refused`/`Unregistered`; version 2 claims typed tunnels with `Claim`/`Release`,
//! answered by `Claimed`/`ClaimRefused`/`Released`, and adds `Displaced` (and `Available`, which
//! daemons that predate it ignore); version 4 adds access rules to `Claim`. Each side sends the
//! other only what the agreed version knows.

use crate::access::AccessRules;
use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io;
use std::marker::PhantomData;
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// Largest control message either side sends or accepts, in bytes of JSON.
pub const MAX_CONTROL_MESSAGE: usize = 64 * 1024;

/// What a claim is for. New kinds of tunnel are new variants (and a new protocol version: a
/// daemon sends only the kinds its server's version knows).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TunnelKey {
    /// Public HTTP(S) requests for a host or `*.` pattern.
    Http {
        /// The host or pattern.
        host: String,
    },
    /// Version 3: public TCP connections to a port of the server.
    Tcp {
        /// The public port; 0 asks the server for any port the client may claim (the answer
        /// says which, in `Claimed::port`).
        port: u16,
    },
}

impl std::fmt::Display for TunnelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TunnelKey::Http { host } => f.write_str(host),
            TunnelKey::Tcp { port } => write!(f, "tcp:{port}"),
        }
    }
}

/// Messages from ggrok-server to ggrokd. Unknown fields are ignored and unknown message types read
/// as [`ServerMessage::Unknown`], so a newer server can add to them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First message: the protocol version in use and the `[[client]]` name the token matched.
    Hello {
        /// The protocol version agreed on in the handshake.
        version: u32,
        /// Name of the client entry this session authenticated as.
        client: String,
        /// Server's identifier of this session, for logs on both sides.
        session: u64,
        /// Version 2: the server worker (thread) this connection landed on, from 0.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worker: Option<u32>,
        /// Version 2: how many workers the server runs (`connections = "auto"` follows it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workers: Option<u32>,
        /// Version 2: the name of this server replica (`[cluster] replica`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replica: Option<String>,
        /// Version 2: the client's own domain (`[[client]] domain`), under which a bare name
        /// (`myapp`) or a random one becomes a host (`myapp.alice.example.com`). Daemons that
        /// predate it ignore it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        domain: Option<String>,
    },
    /// Version 1: a host claim was accepted: public requests for it now reach this daemon.
    Registered {
        /// The host or pattern, as claimed.
        host: String,
    },
    /// Version 1: a host claim was refused; other hosts of the session are unaffected.
    Refused {
        /// The host or pattern, as claimed.
        host: String,
        /// Why, in words meant for the person running ggrokd.
        reason: String,
    },
    /// Version 1: a host was released after `Unregister`.
    Unregistered {
        /// The host or pattern released.
        host: String,
    },
    /// Version 2: a claim was accepted: public traffic for it now reaches this daemon, over any
    /// of its connections.
    Claimed {
        /// The tunnel, as claimed.
        tunnel: TunnelKey,
        /// Version 3, TCP tunnels: the public port bound (the one claimed, or the one picked for
        /// a claim of port 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        /// HTTP tunnels: the public URL the server serves it at (`https://myapp.example.com`,
        /// with the port when it is not the scheme's default). Older daemons ignore it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
    /// Version 2: a claim was refused; the daemon's other tunnels are unaffected.
    ClaimRefused {
        /// The tunnel, as claimed.
        tunnel: TunnelKey,
        /// Why, in words meant for the person running ggrokd.
        reason: String,
    },
    /// Version 2: a tunnel was released after `Release`.
    Released {
        /// The tunnel released.
        tunnel: TunnelKey,
    },
    /// Version 2: another ggrokd of the same client took this tunnel over; this daemon no longer
    /// serves it and should not claim it back on its own (that would make the two flap).
    Displaced {
        /// The tunnel lost.
        tunnel: TunnelKey,
        /// Who took it, in words meant for the person running ggrokd.
        reason: String,
    },
    /// A tunnel this daemon was displaced from is free again (the ggrokd that took it stopped
    /// or released it): the daemon may claim it back, without takeover. Daemons that predate it
    /// ignore it.
    Available {
        /// The tunnel.
        tunnel: TunnelKey,
    },
    /// A message the server could not act on (malformed, unknown). The stream stays open.
    Error {
        /// What went wrong.
        message: String,
    },
    /// A message type this build does not know (from a newer server): ignored.
    #[serde(other)]
    Unknown,
}

/// Messages from ggrokd to ggrok-server. Unknown fields are ignored and unknown message types read
/// as [`ClientMessage::Unknown`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// First message: ggrokd's protocol version and its name and version, for the server's logs.
    Hello {
        /// The protocol version agreed on in the handshake.
        version: u32,
        /// For example `ggrokd/0.1.0`.
        agent: String,
        /// Version 2: the daemon's identity, kept in its state directory: all connections with the
        /// same id serve the daemon's tunnels together.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        daemon: Option<String>,
        /// Version 2: which of the daemon's connections this is, from 0.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        connection: Option<u32>,
    },
    /// Version 1: claim a host or pattern (`api.example.com`, `*.example.com`) for this session.
    Register {
        /// The host or pattern.
        host: String,
    },
    /// Version 1: release a host claimed before.
    Unregister {
        /// The host or pattern.
        host: String,
    },
    /// Version 2: claim a tunnel for this daemon (all of its connections serve it).
    Claim {
        /// What is claimed.
        tunnel: TunnelKey,
        /// Whether to take the tunnel from another live ggrokd of the same client. ggrokd sets it
        /// for tunnels it was told to serve (start, reload, add), not for a tunnel it lost to
        /// another daemon ([`ServerMessage::Displaced`]).
        #[serde(default = "yes")]
        takeover: bool,
        /// Version 4: who may use the tunnel, enforced by the server before anything reaches the
        /// daemon. A daemon sends rules only to a server of version 4 or later: an older one would
        /// ignore the field and serve the tunnel unprotected.
        #[serde(default, skip_serializing_if = "AccessRules::is_empty")]
        access: AccessRules,
    },
    /// Version 2: release a tunnel claimed before.
    Release {
        /// What is released.
        tunnel: TunnelKey,
    },
    /// A message type this build does not know (from a newer daemon): answered with an error.
    #[serde(other)]
    Unknown,
}

fn yes() -> bool {
    true
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
mod tests;
