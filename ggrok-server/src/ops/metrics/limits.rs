//! The limits hit and the tunnel handshakes refused, as the labels of their counters
//! (`ggrok_limit_hits_total{limit}`, `ggrok_tunnel_handshakes_rejected_total{reason}`).

use prometheus_client::encoding::EncodeLabelSet;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct LimitLabels {
    pub(super) limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabels {
    pub(super) reason: &'static str,
}

/// A limit that was hit, named by its key in `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// No first request head (or TLS handshake) in time: 408, or closed.
    HeaderReadTimeout,
    /// A request head too large: 431.
    MaxHeaderBytes,
    /// Too many waiting connections from one address: 429.
    MaxPendingPerIp,
    /// Too many waiting connections in all: 503.
    MaxPendingConnections,
    /// Too many requests in flight on one tunnel session: 503.
    MaxStreamsPerSession,
    /// A client claiming more hosts than it may hold: the claim is refused.
    MaxHostsPerClient,
    /// A tunnel client not done with HTTP/2 and its greeting in time: closed.
    HandshakeTimeout,
    /// A control message too large: the session is closed.
    MaxControlMessage,
    /// A public client that read nothing of an answer for too long: its connection is closed.
    StalledReadTimeout,
    /// A public TCP connection beyond its tunnel's limit: closed at once.
    MaxTcpConnectionsPerTunnel,
    /// A public TCP connection that carried nothing either way for too long: closed.
    TcpIdleTimeout,
}

impl Limit {
    /// Every limit, in the order of [`super::Metrics`]' counters.
    pub const ALL: [Limit; 11] = [
        Limit::HeaderReadTimeout,
        Limit::MaxHeaderBytes,
        Limit::MaxPendingPerIp,
        Limit::MaxPendingConnections,
        Limit::MaxStreamsPerSession,
        Limit::MaxHostsPerClient,
        Limit::HandshakeTimeout,
        Limit::MaxControlMessage,
        Limit::StalledReadTimeout,
        Limit::MaxTcpConnectionsPerTunnel,
        Limit::TcpIdleTimeout,
    ];

    /// The `limit` label: the key in `[limits]`.
    pub fn key(self) -> &'static str {
        match self {
            Limit::HeaderReadTimeout => "header_read_timeout",
            Limit::MaxHeaderBytes => "max_header_bytes",
            Limit::MaxPendingPerIp => "max_pending_per_ip",
            Limit::MaxPendingConnections => "max_pending_connections",
            Limit::MaxStreamsPerSession => "max_streams_per_session",
            Limit::MaxHostsPerClient => "max_hosts_per_client",
            Limit::HandshakeTimeout => "handshake_timeout",
            Limit::MaxControlMessage => "max_control_message",
            Limit::StalledReadTimeout => "stalled_read_timeout",
            Limit::MaxTcpConnectionsPerTunnel => "max_tcp_connections_per_tunnel",
            Limit::TcpIdleTimeout => "tcp_idle_timeout",
        }
    }
}

/// Why a tunnel client's handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A request on the tunnel path that is no WebSocket upgrade: 400.
    NotWebsocket,
    /// A protocol version this server does not speak: 400.
    BadVersion,
    /// A missing or unknown token: 401.
    Unauthorized,
    /// A plain-HTTP tunnel request while `[tls] redirect_http` requires TLS: 403.
    TlsRequired,
    /// After the upgrade, HTTP/2 or the control stream could not be set up (or not in time).
    SetupFailed,
}

impl Rejection {
    /// Every reason, in the order of [`super::Metrics`]' counters.
    pub const ALL: [Rejection; 5] = [
        Rejection::NotWebsocket,
        Rejection::BadVersion,
        Rejection::Unauthorized,
        Rejection::TlsRequired,
        Rejection::SetupFailed,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::NotWebsocket => "not_websocket",
            Rejection::BadVersion => "bad_version",
            Rejection::Unauthorized => "unauthorized",
            Rejection::TlsRequired => "tls_required",
            Rejection::SetupFailed => "setup_failed",
        }
    }
}
