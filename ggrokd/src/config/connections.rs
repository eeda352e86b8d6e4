//! `connections` and `transport` in ggrokd.toml: how many tunnel connections to hold to a
//! server, and what their HTTP/2 runs on.

/// The most tunnel connections one daemon holds to a server (`connections = N`).
pub const MAX_CONNECTIONS: u32 = 16;

/// The most connections `connections = "auto"` makes, whatever the number of server workers.
pub const MAX_AUTO_CONNECTIONS: u32 = 4;

/// How many tunnel connections ggrokd holds to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Connections {
    /// As many as the server has workers (told in its hello), at most
    /// [`MAX_AUTO_CONNECTIONS`]; one for a server that does not say (protocol version 1).
    #[default]
    Auto,
    /// Exactly this many (1..=[`MAX_CONNECTIONS`]).
    Fixed(u32),
}

impl Connections {
    /// How many connections to hold, given the number of workers the server announced (`None`
    /// before any hello, or from a version-1 server).
    pub fn wanted(self, workers: Option<u32>) -> u32 {
        match self {
            Connections::Fixed(n) => n,
            Connections::Auto => workers.unwrap_or(1).clamp(1, MAX_AUTO_CONNECTIONS),
        }
    }
}

impl std::fmt::Display for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Connections::Auto => f.write_str("auto"),
            Connections::Fixed(n) => write!(f, "{n}"),
        }
    }
}

/// What the tunnel's HTTP/2 runs on (`transport = "…"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Raw first; if the path to the server does not pass a raw upgrade, the WebSocket from then
    /// on (until the server settings change or ggrokd restarts).
    #[default]
    Auto,
    /// HTTP/2 over a WebSocket: passes every proxy that passes WebSockets.
    WebSocket,
    /// HTTP/2 straight on the upgraded TCP/TLS connection (`Upgrade: ggrok-h2`): no WebSocket
    /// framing, but a proxy on the way must pass unknown upgrades.
    Raw,
}

impl Transport {
    /// The word in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Auto => "auto",
            Transport::WebSocket => "websocket",
            Transport::Raw => "raw",
        }
    }
}
