//! The PROXY protocol (v1 text or v2 binary) on the public listeners, from the load balancers
//! listed in `proxy_protocol_from`: the header that opens such a connection names the client,
//! and that address is the one access rules, `X-Forwarded-For`, limits and logs use. A connection
//! from a listed address without a valid header is closed: trusting it would let anyone behind
//! the balancer pick their address. Connections from other addresses are never read for a
//! header, so a client cannot claim an address of its own.
//!
//! The header is read exactly, byte for byte where v1's length is unknown, so what follows it
//! (a TLS handshake, a request) is left in the socket untouched.

use crate::State;
use ppp::{v1, v2};
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tracing::warn;

/// The client of a new connection from `peer`: `peer` itself, or for a trusted balancer
/// (`proxy_protocol_from`) the address its header names; `None` when a trusted balancer's
/// connection has no valid header within `header_read_timeout` (then it is to be closed).
pub async fn client_of(state: &State, stream: &mut TcpStream, peer: SocketAddr) -> Option<SocketAddr> {
    if !state.config().proxy_protocol_from.iter().any(|net| net.contains(peer.ip())) {
        return Some(peer);
    }
    let timeout = state.config().limits.header_read_timeout;
    let why = match tokio::time::timeout(timeout, read_header(stream)).await {
        Ok(Ok(Proxied::Client(client))) => return Some(client),
        Ok(Ok(Proxied::Local)) => return Some(peer),
        Ok(Err(e)) => e,
        Err(_) => "no PROXY header within header_read_timeout".to_owned(),
    };
    if let Some(held_back) = state.limit_log.allow("proxy_protocol_from") {
        warn!(%peer, held_back, "connection from a proxy_protocol_from address closed: {why}");
    }
    None
}

/// The longest v1 header (RFC: 107 bytes with CRLF).
const MAX_V1: usize = 107;
/// The largest v2 address block and TLVs accepted (the protocol allows 64 KiB; balancers send
/// some tens of bytes, a few hundred with TLVs).
const MAX_V2_BODY: usize = 4096;

/// What the header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxied {
    /// A proxied connection from this client.
    Client(SocketAddr),
    /// The balancer's own connection (v2 `LOCAL`, v1 `UNKNOWN`: health checks): the peer is the
    /// client.
    Local,
}

/// Reads the PROXY header that must open a connection from a trusted balancer.
pub async fn read_header<R: AsyncRead + Unpin>(io: &mut R) -> Result<Proxied, String> {
    // 12 bytes: the v2 signature, and shorter than the shortest v1 header ("PROXY UNKNOWN\r\n").
    let mut buf = vec![0u8; 12];
    io.read_exact(&mut buf).await.map_err(|e| format!("reading the PROXY header: {e}"))?;
    if buf == v2::PROTOCOL_PREFIX {
        buf.resize(16, 0);
        io.read_exact(&mut buf[12..]).await.map_err(|e| format!("reading the PROXY header: {e}"))?;
        let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if len > MAX_V2_BODY {
            return Err(format!("PROXY v2 header of {len} bytes, over {MAX_V2_BODY}"));
        }
        buf.resize(16 + len, 0);
        io.read_exact(&mut buf[16..]).await.map_err(|e| format!("reading the PROXY header: {e}"))?;
        let header = v2::Header::try_from(&buf[..]).map_err(|e| format!("invalid PROXY v2 header: {e}"))?;
        return Ok(match (header.command, header.addresses) {
            (v2::Command::Local, _) => Proxied::Local,
            (_, v2::Addresses::IPv4(a)) => {
                Proxied::Client(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
            }
            (_, v2::Addresses::IPv6(a)) => {
                Proxied::Client(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
            }
            (_, other) => return Err(format!("PROXY v2 header without an IP client address ({other:?})")),
        });
    }
    if !buf.starts_with(b"PROXY ") {
        return Err("the connection did not start with a PROXY protocol header".into());
    }
    while !buf.ends_with(b"\r\n") {
        if buf.len() >= MAX_V1 {
            return Err(format!("PROXY v1 header longer than {MAX_V1} bytes"));
        }
        let byte = io.read_u8().await.map_err(|e| format!("reading the PROXY header: {e}"))?;
        buf.push(byte);
    }
    let text = std::str::from_utf8(&buf).map_err(|_| "PROXY v1 header is not text".to_owned())?;
    let header = v1::Header::try_from(text).map_err(|e| format!("invalid PROXY v1 header: {e}"))?;
    Ok(match header.addresses {
        v1::Addresses::Tcp4(a) => {
            Proxied::Client(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        v1::Addresses::Tcp6(a) => {
            Proxied::Client(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        v1::Addresses::Unknown => Proxied::Local,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<Proxied, String>, Vec<u8>) {
        let mut io = bytes;
        let header = read_header(&mut io).await;
        (header, io.to_vec())
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn v1_headers_name_the_client_and_leave_the_rest() {
        let (h, rest) = read(b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 80\r\nGET / HTTP/1.1\r\n").await;
        assert_eq!(h, Ok(Proxied::Client(addr("203.0.113.7:51000"))));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        let (h, rest) = read(b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\n\x16\x03").await;
        assert_eq!(h, Ok(Proxied::Client(addr("[2001:db8::1]:4000"))));
        assert_eq!(rest, b"\x16\x03");
        let (h, rest) = read(b"PROXY UNKNOWN\r\nX").await;
        assert_eq!((h, rest), (Ok(Proxied::Local), b"X".to_vec()));
    }

    #[tokio::test]
    async fn v2_headers_name_the_client_and_leave_the_rest() {
        let header = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (addr("198.51.100.9:4242"), addr("10.0.0.1:80")),
        )
        .build()
        .unwrap();
        let mut bytes = header.clone();
        bytes.extend_from_slice(b"GET /");
        let (h, rest) = read(&bytes).await;
        assert_eq!(h, Ok(Proxied::Client(addr("198.51.100.9:4242"))));
        assert_eq!(rest, b"GET /");
        let local = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Local,
            v2::Protocol::Unspecified,
            v2::Addresses::Unspecified,
        )
        .build()
        .unwrap();
        assert_eq!(read(&local).await.0, Ok(Proxied::Local));
    }

    #[tokio::test]
    async fn anything_else_is_refused() {
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"PROXY TCP4 nonsense\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2",
            &[b'P'; 200][..],
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00",
        ] {
            assert!(read(bad).await.0.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut long = b"PROXY ".to_vec();
        long.extend_from_slice(&[b'1'; 200]);
        assert!(read(&long).await.0.unwrap_err().contains("longer than"));
    }
}
