//! TCP tunnels' test helpers: free port ranges, a server whose clients may claim them, a local
//! echo service, and checksummed round trips through a public port.

use crate::TEST_TOKEN;
use crate::cluster::{Daemon, Server};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The token of the second client, `other`.
pub const OTHER_TOKEN: &str = "other-token-0123456789abcdef";

/// `n` consecutive ports on 127.0.0.1 that were free when probed (then released).
pub fn free_range(n: u16) -> RangeInclusive<u16> {
    loop {
        let base = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if base > u16::MAX - n {
            continue;
        }
        let probes: Vec<_> =
            (base..base + n).map(|p| std::net::TcpListener::bind(("127.0.0.1", p))).collect();
        if probes.iter().all(Result::is_ok) {
            return base..=base + n - 1;
        }
    }
}

/// A server whose client `test` may claim `ports` (and `other`, with its own token, `other`).
pub fn server(ports: &RangeInclusive<u16>, other: &RangeInclusive<u16>) -> Server {
    server_extra(ports, other, "")
}

/// Like [`server`], with `extra` TOML tables before the clients (e.g. `[limits]`, `[admin]`).
pub fn server_extra(ports: &RangeInclusive<u16>, other: &RangeInclusive<u16>, extra: &str) -> Server {
    Server::start_with(&format!(
        "listen = \"127.0.0.1:0\"\n{extra}\n\
         [[client]]\nname = \"test\"\ntoken = {TEST_TOKEN:?}\nhosts = [\"*.test\"]\nports = [\"{}-{}\"]\n\
         [[client]]\nname = \"other\"\ntoken = {OTHER_TOKEN:?}\nports = [\"{}-{}\"]\n",
        ports.start(),
        ports.end(),
        other.start(),
        other.end()
    ))
}

/// A `[[tunnel]]` of ggrokd.toml for public port `port` to `local`.
pub fn tcp_tunnel(port: u16, local: SocketAddr) -> String {
    format!("\n[[tunnel]]\ntcp = {port}\nlocal = \"{local}\"\n")
}

/// A local service echoing every connection's bytes; it half-closes when its client does.
pub async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = socket.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Waits until `status` shows every tunnel in state `online`; returns the tunnels.
pub fn wait_all_online(daemon: &Daemon, n: usize) -> Vec<serde_json::Value> {
    let status = daemon.wait_status("tunnels online", |s| {
        let tunnels = s["tunnels"].as_array().cloned().unwrap_or_default();
        tunnels.len() == n && tunnels.iter().all(|t| t["state"] == "online")
    });
    status["tunnels"].as_array().unwrap().clone()
}

/// Sends `size` bytes of a pattern seeded by `seed`, shuts down its write side, and reads the
/// echo to the end; returns the checksums of what went and what came back.
pub async fn round_trip(addr: SocketAddr, seed: u32, size: usize) -> (Vec<u8>, Vec<u8>) {
    let socket = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = socket.into_split();
    let data: Vec<u8> = (0..size).map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as u8).collect();
    let sent = Sha256::digest(&data).to_vec();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        // Half-close: the reply must still arrive whole.
        w.shutdown().await.unwrap();
        w
    });
    let mut back = Vec::with_capacity(size);
    r.read_to_end(&mut back).await.unwrap();
    let _w = writer.await.unwrap();
    assert_eq!(back.len(), size, "connection {seed}: echo length");
    (sent, Sha256::digest(&back).to_vec())
}
