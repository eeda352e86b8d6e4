//! `proxy_protocol = true` on a TCP tunnel: before any byte of the connection, the local service
//! gets a PROXY protocol v2 header (HAProxy's binary form) naming the public client as the source
//! and the server's address it connected to as the destination, both as the server sent them
//! ([`ggrok_proto::HEADER_PEER`], [`ggrok_proto::HEADER_PUBLIC_ADDR`]).

use ppp::v2::{Addresses, Builder, Command, Protocol, Version};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The header for a connection from `peer` to `public`. When the server did not name the
/// client, a `LOCAL` header (no addresses); when it did not name its own address (an older
/// server), the unspecified address of the client's family with port `port`.
pub fn v2(peer: Option<SocketAddr>, public: Option<SocketAddr>, port: u16) -> Vec<u8> {
    let Some(peer) = peer else {
        return build(Version::Two | Command::Local, Addresses::Unspecified);
    };
    let unspecified = match peer.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let public = public.unwrap_or(SocketAddr::new(unspecified, port));
    // Both addresses in one family: an IPv4 one is written in its IPv6-mapped form when the other
    // is IPv6.
    let (peer, public) = match (peer, public) {
        (SocketAddr::V4(a), SocketAddr::V6(b)) => {
            (SocketAddr::new(a.ip().to_ipv6_mapped().into(), a.port()), b.into())
        }
        (SocketAddr::V6(a), SocketAddr::V4(b)) => {
            (a.into(), SocketAddr::new(b.ip().to_ipv6_mapped().into(), b.port()))
        }
        pair => pair,
    };
    build(Version::Two | Command::Proxy, (peer, public).into())
}

fn build(version_command: u8, addresses: Addresses) -> Vec<u8> {
    Builder::with_addresses(version_command, Protocol::Stream, addresses)
        .build()
        .expect("a PROXY v2 header of two addresses fits")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> ppp::v2::Header<'_> {
        ppp::v2::Header::try_from(bytes).unwrap()
    }

    #[test]
    fn names_the_client_and_the_public_address() {
        let bytes =
            v2(Some("203.0.113.7:41000".parse().unwrap()), Some("192.0.2.1:5432".parse().unwrap()), 5432);
        let header = parse(&bytes);
        assert_eq!(header.command, Command::Proxy);
        assert_eq!(header.len(), bytes.len());
        match header.addresses {
            Addresses::IPv4(a) => {
                assert_eq!((a.source_address, a.source_port), (Ipv4Addr::new(203, 0, 113, 7), 41000));
                assert_eq!((a.destination_address, a.destination_port), (Ipv4Addr::new(192, 0, 2, 1), 5432));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mixed_families_and_missing_addresses() {
        let bytes = v2(Some("[2001:db8::1]:1".parse().unwrap()), Some("127.0.0.1:2".parse().unwrap()), 2);
        assert!(matches!(parse(&bytes).addresses, Addresses::IPv6(_)));
        let bytes = v2(Some("127.0.0.1:1".parse().unwrap()), None, 7);
        match parse(&bytes).addresses {
            Addresses::IPv4(a) => {
                assert_eq!((a.destination_address, a.destination_port), (Ipv4Addr::UNSPECIFIED, 7))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse(&v2(None, None, 7)).command, Command::Local);
    }
}
