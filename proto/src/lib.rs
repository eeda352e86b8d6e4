//! Everything ggrok-server and ggrokd must agree on, and no sockets.
//!
//! - [`access`]: per-tunnel access rules (basic auth, allowed and denied networks);
//! - [`wsio`]: WebSocket messages as one byte stream, the transport HTTP/2 runs on;
//! - [`control`]: the messages of the control stream and their framing;
//! - [`host`]: host names and host patterns (`*.example.com`), normalisation and matching;
//! - [`ctl`]: the control-socket protocol between ggrokctl and ggrokd, and the socket's path;
//! - [`diag`]: configuration errors that name the file, line and key;
//! - [`local`]: a tunnel's local service as written (`8080`, `host:port`, `https://…`);
//! - [`headers`]: hop-by-hop headers and error chains for HTTP messages crossing the tunnel;
//! - [`http`]: the body type, ggrok's own error responses, splicing upgraded connections;
//! - [`h2io`]: bodies and upgraded streams on a tunnel connection's HTTP/2, its windows and PINGs;
//! - [`budget`]: the buffer budget, which sets the tunnel connections' stream windows;
//! - [`seconds`]: durations in configuration files;
//! - [`version`]: agreeing on a protocol version from the ranges both sides speak;
//! - [`signals`]: shutdown on SIGTERM/SIGINT;
//! - [`notify`]: the systemd notifications (`READY=1`, `STATUS=`, watchdog, reload, stop);
//! - [`malloc`]: allocator limits that keep large buffers resident between chunks;
//! - [`secret`]: a string that never reaches a log;
//! - constants below: protocol version, paths, header names, HTTP/2 tuning.

// One audited exception: the allocator settings in `malloc`.
#![deny(unsafe_code)]

pub mod access;
pub mod budget;
pub mod control;
pub mod ctl;
pub mod diag;
pub mod h2io;
pub mod headers;
pub mod host;
pub mod http;
pub mod local;
pub mod logging;
pub mod malloc;
pub mod notify;
pub mod seconds;
pub mod secret;
pub mod signals;
pub mod size;
pub mod splice;
pub mod tally;
pub mod version;
pub mod wsio;

use std::time::Duration;

/// Newest version of the tunnel protocol this build speaks. Versions form a range
/// ([`PROTOCOL_MIN`]..=[`PROTOCOL_VERSION`]); the two sides agree on the newest both speak
/// ([`version`]), so old and new ggrokd and servers work together.
///
/// - 1: `Register`/`Unregister` of hosts, one session per daemon.
/// - 2: a daemon id and connection index in ggrokd's `Hello`, worker and replica in the server's,
///   typed claims (`Claim`/`Release` of a [`control::TunnelKey`]), `Displaced`.
/// - 3: TCP tunnels: claims of [`control::TunnelKey::Tcp`], the port granted in `Claimed`, and
///   public TCP connections as extended CONNECT streams of [`TCP_PROTOCOL`].
/// - 4: access rules ([`access::AccessRules`]) in `Claim`, enforced by the server.
pub const PROTOCOL_VERSION: u32 = 4;

/// Oldest version of the tunnel protocol this build still speaks.
pub const PROTOCOL_MIN: u32 = 1;

/// HTTP header on the tunnel handshake: from ggrokd, the oldest version it speaks (the one header
/// version-1 servers read); from the server, on its 101 answer, the version chosen.
pub const HEADER_PROTOCOL: &str = "ggrok-protocol";

/// HTTP header on the tunnel handshake from ggrokd: the newest version it speaks. Absent from
/// version-1 daemons, which speak only [`HEADER_PROTOCOL`]'s version.
pub const HEADER_PROTOCOL_MAX: &str = "ggrok-protocol-max";

/// `Upgrade` token of the raw transport: HTTP/2 straight on the upgraded connection, without
/// WebSocket framing (ggrokd tries it first and falls back to the WebSocket).
pub const RAW_TRANSPORT: &str = "ggrok-h2";

/// Default path of the tunnel endpoint on the server's public port.
pub const DEFAULT_TUNNEL_PATH: &str = "/$$ggrok";

/// `:protocol` of the extended CONNECT stream the server opens to carry control messages.
pub const CONTROL_PROTOCOL: &str = "ggrok-control";

/// `:protocol` of the extended CONNECT stream the server opens for each public TCP connection
/// of a TCP tunnel (protocol version 3); its authority is [`TCP_AUTHORITY`]`:PORT`, the public
/// port, and [`HEADER_PEER`] names the public client.
pub const TCP_PROTOCOL: &str = "ggrok-tcp";

/// Host part of a TCP stream's authority; never a real host.
pub const TCP_AUTHORITY: &str = "ggrok.tcp";

/// Request header on a TCP stream: the public client's address (`IP:PORT`).
pub const HEADER_PEER: &str = "ggrok-peer";

/// Request header on a TCP stream: the server's address the public client connected to
/// (`IP:PORT`), for the PROXY protocol header's destination.
pub const HEADER_PUBLIC_ADDR: &str = "ggrok-public-addr";

/// Authority used on the control stream's CONNECT request; never a real host.
pub const CONTROL_AUTHORITY: &str = "ggrok.control";

/// Response header by which ggrokd carries a local service's 2xx answer to an upgrade request it
/// did not upgrade: a 2xx answer to extended CONNECT would mean "tunnel established", so ggrokd
/// answers 502 with the real status in this header and the server restores it.
pub const HEADER_DECLINED_STATUS: &str = "ggrok-declined-status";

/// HTTP/2 settings shared by both ends of a tunnel connection.
pub mod tuning {
    use super::Duration;

    /// Per-stream receive window. Large enough that one stream can fill a fast link.
    pub const STREAM_WINDOW: u32 = 4 << 20;
    /// Per-connection receive window: large, so a few unread responses cannot stall
    /// the others (hyper#2899).
    pub const CONNECTION_WINDOW: u32 = 256 << 20;
    /// Largest HTTP/2 frame we accept; bigger frames mean fewer WebSocket messages per byte.
    pub const MAX_FRAME_SIZE: u32 = 256 << 10;
    /// HTTP/2 PING interval on the tunnel; below common proxy idle timeouts.
    pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
    /// How long a PING may go unanswered before the connection is declared dead.
    pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
    /// Concurrent streams ggrokd accepts on one tunnel connection.
    pub const MAX_CONCURRENT_STREAMS: u32 = 4096;
    /// Largest WebSocket message either side accepts.
    pub const MAX_WS_MESSAGE: usize = 1 << 20;
    /// Most bytes one read from the tunnel socket takes (tungstenite's default). tungstenite
    /// zero-fills this much before every read attempt (tungstenite-rs#547); under callgrind that
    /// looked like a third of ggrokd's work, but sampled at full speed it is under 1 %, and 16 KiB
    /// cost more in read calls on bulk transfers than it saved (docs/benchmarks.md).
    pub const WS_READ_BUFFER: usize = 128 << 10;
    /// Time allowed for the HTTP/2 handshake and the control stream to come up.
    pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
}
