//! `[limits]` of server.toml: what one client, connection or session may use. Every limit has a
//! safe default; exceeding one gets a status code and a log line and never affects other clients.

use ggrok_proto::diag::ConfigError;
use ggrok_proto::seconds::Seconds;
use ggrok_proto::size::Size;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    handshake_timeout: Option<Spanned<Seconds>>,
    header_read_timeout: Option<Spanned<Seconds>>,
    max_header_bytes: Option<Spanned<u64>>,
    max_pending_connections: Option<Spanned<u64>>,
    max_pending_per_ip: Option<Spanned<u64>>,
    max_streams_per_session: Option<Spanned<u64>>,
    max_hosts_per_client: Option<Spanned<u64>>,
    max_control_message: Option<Spanned<u64>>,
    stalled_read_timeout: Option<Spanned<Seconds>>,
    max_tcp_connections_per_tunnel: Option<Spanned<u64>>,
    tcp_idle_timeout: Option<Spanned<Seconds>>,
    buffer_memory: Option<Spanned<Size>>,
    send_buffer: Option<Spanned<Size>>,
    max_auth_failures: Option<Spanned<u64>>,
    auth_block: Option<Spanned<Seconds>>,
}

/// The validated limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time a tunnel client has, once upgraded, to complete HTTP/2 and the control greeting.
    pub handshake_timeout: Duration,
    /// Time a new connection has to send its first request head (TLS handshake included); 408 after.
    pub header_read_timeout: Duration,
    /// Largest request head; 431 above.
    pub max_header_bytes: usize,
    /// Connections that have not yet sent a request head, in all; 503 above.
    pub max_pending_connections: usize,
    /// Connections from one IP address that have not yet sent a request head; 429 above.
    pub max_pending_per_ip: usize,
    /// Requests in flight through one tunnel session; 503 above.
    pub max_streams_per_session: usize,
    /// Hosts one client may hold at once, over all its sessions.
    pub max_hosts_per_client: usize,
    /// Largest control message, in bytes.
    pub max_control_message: usize,
    /// How long a public client may leave an answer unread (the server's writes to it making no
    /// progress at all) before its connection is closed.
    pub stalled_read_timeout: Duration,
    /// Public connections open at once on one TCP tunnel's port; more are closed at once.
    pub max_tcp_connections_per_tunnel: usize,
    /// How long a public TCP connection may carry no byte either way before it is closed.
    pub tcp_idle_timeout: Duration,
    /// Bytes the answers on their way to public clients may hold in all, over every tunnel
    /// connection: sets the stream windows (see `ggrok_proto::budget`).
    pub buffer_memory: u64,
    /// The kernel's send buffer for each public connection (`SO_SNDBUF`, which the kernel
    /// doubles); none: the kernel's autotuning, up to `net.ipv4.tcp_wmem`'s maximum.
    pub send_buffer: Option<u32>,
    /// Wrong user names or passwords (a tunnel's `basic_auth`) one address may send within a
    /// minute before it gets 429 for [`Limits::auth_block`].
    pub max_auth_failures: usize,
    /// How long an address that sent too many wrong passwords gets 429.
    pub auth_block: Duration,
}

/// The values `send_buffer` may take, in bytes.
pub const SEND_BUFFERS: std::ops::RangeInclusive<u64> = 4 << 10..=64 << 20;

impl Limits {
    /// The access rules' failure policy these limits set.
    pub fn auth_policy(&self) -> crate::access::Policy {
        let max_failures = u32::try_from(self.max_auth_failures).unwrap_or(u32::MAX);
        crate::access::Policy { max_failures, block: self.auth_block }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            max_pending_connections: 4096,
            max_pending_per_ip: 256,
            max_streams_per_session: 1000,
            max_hosts_per_client: 100,
            max_control_message: ggrok_proto::control::MAX_CONTROL_MESSAGE,
            stalled_read_timeout: Duration::from_secs(60),
            max_tcp_connections_per_tunnel: 1000,
            tcp_idle_timeout: Duration::from_secs(3600),
            buffer_memory: 256 << 20,
            send_buffer: None,
            max_auth_failures: crate::access::failures::MAX_FAILURES as usize,
            auth_block: crate::access::failures::BLOCK,
        }
    }
}

impl RawLimits {
    pub(super) fn validate(&self, path: &Path, text: &str) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let secs = |v: &Option<Spanned<Seconds>>, key: &str, default: Duration| match v {
            None => Ok(default),
            Some(s) if (0.1..=3600.0).contains(&s.get_ref().0.as_secs_f64()) => Ok(s.get_ref().0),
            Some(s) => Err(ConfigError::at(
                path,
                text,
                s.span(),
                format!("limits.{key}"),
                "must be between 0.1 and 3600 seconds",
            )),
        };
        let count = |v: &Option<Spanned<u64>>, key: &str, min: u64, max: u64, default: usize| match v {
            None => Ok(default),
            Some(n) if (min..=max).contains(n.get_ref()) => Ok(*n.get_ref() as usize),
            Some(n) => Err(ConfigError::at(
                path,
                text,
                n.span(),
                format!("limits.{key}"),
                format!("must be between {min} and {max}"),
            )),
        };
        Ok(Limits {
            handshake_timeout: secs(&self.handshake_timeout, "handshake_timeout", d.handshake_timeout)?,
            header_read_timeout: secs(
                &self.header_read_timeout,
                "header_read_timeout",
                d.header_read_timeout,
            )?,
            max_header_bytes: count(
                &self.max_header_bytes,
                "max_header_bytes",
                8192,
                1 << 20,
                d.max_header_bytes,
            )?,
            max_pending_connections: count(
                &self.max_pending_connections,
                "max_pending_connections",
                1,
                1 << 20,
                d.max_pending_connections,
            )?,
            max_pending_per_ip: count(
                &self.max_pending_per_ip,
                "max_pending_per_ip",
                1,
                1 << 20,
                d.max_pending_per_ip,
            )?,
            max_streams_per_session: count(
                &self.max_streams_per_session,
                "max_streams_per_session",
                1,
                1 << 16,
                d.max_streams_per_session,
            )?,
            max_hosts_per_client: count(
                &self.max_hosts_per_client,
                "max_hosts_per_client",
                1,
                1 << 20,
                d.max_hosts_per_client,
            )?,
            max_control_message: count(
                &self.max_control_message,
                "max_control_message",
                1024,
                16 << 20,
                d.max_control_message,
            )?,
            max_auth_failures: count(
                &self.max_auth_failures,
                "max_auth_failures",
                1,
                1_000_000,
                d.max_auth_failures,
            )?,
            auth_block: secs(&self.auth_block, "auth_block", d.auth_block)?,
            stalled_read_timeout: secs(
                &self.stalled_read_timeout,
                "stalled_read_timeout",
                d.stalled_read_timeout,
            )?,
            max_tcp_connections_per_tunnel: count(
                &self.max_tcp_connections_per_tunnel,
                "max_tcp_connections_per_tunnel",
                1,
                1 << 20,
                d.max_tcp_connections_per_tunnel,
            )?,
            tcp_idle_timeout: match &self.tcp_idle_timeout {
                None => d.tcp_idle_timeout,
                Some(s) if (0.1..=86_400.0).contains(&s.get_ref().0.as_secs_f64()) => s.get_ref().0,
                Some(s) => {
                    return Err(ConfigError::at(
                        path,
                        text,
                        s.span(),
                        "limits.tcp_idle_timeout",
                        "must be between 0.1 and 86400 seconds",
                    ));
                }
            },
            buffer_memory: match &self.buffer_memory {
                None => d.buffer_memory,
                Some(v) if ggrok_proto::budget::LIMITS.contains(&v.get_ref().0) => v.get_ref().0,
                Some(v) => {
                    return Err(ConfigError::at(
                        path,
                        text,
                        v.span(),
                        "limits.buffer_memory",
                        ggrok_proto::budget::LIMITS_MESSAGE,
                    ));
                }
            },
            send_buffer: match &self.send_buffer {
                None => None,
                Some(v) if SEND_BUFFERS.contains(&v.get_ref().0) => Some(v.get_ref().0 as u32),
                Some(v) => {
                    return Err(ConfigError::at(
                        path,
                        text,
                        v.span(),
                        "limits.send_buffer",
                        "must be between 4 KiB and 64 MiB",
                    ));
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::ServerConfig;
    use std::path::Path;
    use std::time::Duration;

    const CLIENT: &str = "[[client]]\nname = \"a\"\ntoken = \"0123456789abcdef\"\nports = [\"20000\"]\n";

    #[test]
    fn tcp_limits_have_defaults_and_name_file_line_and_key_when_wrong() {
        let parse = |limits: &str| {
            ServerConfig::parse(Path::new("s.toml"), &format!("{CLIENT}[limits]\n{limits}"), None)
                .map(|c| c.limits)
                .map_err(|e| e.to_string())
        };
        let d = parse("").unwrap();
        assert_eq!((d.max_tcp_connections_per_tunnel, d.tcp_idle_timeout), (1000, Duration::from_secs(3600)));
        let l = parse("max_tcp_connections_per_tunnel = 5\ntcp_idle_timeout = 86400\n").unwrap();
        assert_eq!((l.max_tcp_connections_per_tunnel, l.tcp_idle_timeout), (5, Duration::from_secs(86_400)));
        let err = parse("max_tcp_connections_per_tunnel = 0\n").unwrap_err();
        assert!(
            err.starts_with("s.toml:6: limits.max_tcp_connections_per_tunnel: must be between 1"),
            "{err}"
        );
        let err = parse("\ntcp_idle_timeout = 0\n").unwrap_err();
        assert!(err.starts_with("s.toml:7: limits.tcp_idle_timeout: must be between 0.1 and 86400"), "{err}");
    }
}
