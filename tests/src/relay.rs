//! A TCP relay between ggrokd and the server that the test can freeze or cut, to play a network
//! that stops delivering (no FIN) or a connection that drops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Connections with an id below `frozen` forward nothing; below `cut`, they are closed.
#[derive(Clone, Copy, Default)]
struct Limits {
    frozen: u64,
    cut: u64,
}

/// A running relay on 127.0.0.1.
pub struct Relay {
    /// Where it listens.
    pub addr: SocketAddr,
    limits: watch::Sender<Limits>,
    next_id: Arc<AtomicU64>,
}

impl Relay {
    /// Relays every connection to `target`, on the current tokio runtime.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().unwrap();
        let (limits, watcher) = watch::channel(Limits::default());
        let next_id = Arc::new(AtomicU64::new(0));
        let ids = next_id.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let id = ids.fetch_add(1, Ordering::SeqCst);
                let watcher = watcher.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else { return };
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = outbound.into_split();
                    tokio::join!(pump(ir, ow, id, watcher.clone()), pump(or, iw, id, watcher));
                });
            }
        });
        Self { addr, limits, next_id }
    }

    /// The connections open now stop forwarding anything, and stay open (a frozen network).
    /// Later connections pass.
    pub fn freeze_existing(&self) {
        let below = self.next_id.load(Ordering::SeqCst);
        self.limits.send_modify(|l| l.frozen = below);
    }

    /// The connections open now are closed. Later connections pass.
    pub fn cut_existing(&self) {
        let below = self.next_id.load(Ordering::SeqCst);
        self.limits.send_modify(|l| l.cut = below);
    }

    /// The first `n` connections the relay accepted are closed (those still open); later ones
    /// pass.
    pub fn cut_first(&self, n: u64) {
        self.limits.send_modify(|l| l.cut = l.cut.max(n));
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.next_id.load(Ordering::SeqCst)
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, id: u64, mut limits: watch::Receiver<Limits>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let now = *limits.borrow_and_update();
        if id < now.cut {
            return;
        }
        if id < now.frozen {
            if limits.changed().await.is_err() {
                return;
            }
            continue;
        }
        tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
            changed = limits.changed() => if changed.is_err() { return },
        }
    }
}

/// A proxy on 127.0.0.1 that passes only WebSocket upgrades to `target`, as some reverse proxies
/// and PaaS routers do: a connection whose first request head does not ask for
/// `Upgrade: websocket` gets `403 Forbidden` and is closed. Returns its address.
pub async fn websocket_only(target: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match inbound.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                    if head.len() > 64 * 1024 {
                        return;
                    }
                }
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                if !text.lines().any(|l| l.starts_with("upgrade:") && l.contains("websocket")) {
                    let _ = inbound
                        .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 25\r\nconnection: close\r\n\r\nonly WebSockets pass here")
                        .await;
                    return;
                }
                let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                if outbound.write_all(&head).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    addr
}
