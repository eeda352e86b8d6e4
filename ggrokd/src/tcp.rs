//! TCP tunnels on ggrokd's side: each public TCP connection arrives as an extended CONNECT stream
//! ([`ggrok_proto::TCP_PROTOCOL`], authority `ggrok.tcp:PORT`); ggrokd dials the tunnel's local
//! service, answers 200 and splices the two, half-closes passing through. A tunnel with `tcp = 0`
//! gets its port from the server's answer: the tunnel is then known by that port, and the port is
//! written to ggrokd.toml so it stays the same across restarts.

use crate::config::Public;
use crate::daemon::Daemon;
use crate::reqlog::Record;
use crate::tunnels::Tunnel;
use bytes::Bytes;
use ggrok_proto::h2io::StreamIo;
use ggrok_proto::headers::error_chain;
use ggrok_proto::http as body;
use ggrok_proto::{HEADER_PEER, HEADER_PUBLIC_ADDR};
use h2::RecvStream;
use h2::server::SendResponse;
use http::{Method, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tracing::{debug, info, warn};

/// The tunnel `tcp = 0` was granted `port` on connection `link`: from now on it is the tunnel of
/// that port, in the table and, if it came from the file, in ggrokd.toml.
pub fn granted(daemon: &Daemon, tunnel: &Arc<Tunnel>, link: u32, port: u16) {
    let mut spec = tunnel.spec.clone();
    spec.host = Public::Tcp(port);
    let Some(now) = daemon.tunnels.rekey(tunnel, spec) else {
        return debug!(port, "TCP port granted for a tunnel changed meanwhile");
    };
    now.claimed(link);
    // Wakes whoever waits on the tunnel under its old key (`ggrokctl add --tcp`).
    tunnel.claimed(link);
    info!(port, local = %now.spec.local, "TCP tunnel online on the port the server picked");
    if now.is_saved() {
        match crate::persist::set_tcp_port(&daemon.config_path, port) {
            Ok(true) => info!(port, "TCP port saved to {}", daemon.config_path.display()),
            Ok(false) => warn!(
                port,
                "no `tcp = 0` tunnel left in {} to save the port to",
                daemon.config_path.display()
            ),
            Err(e) => warn!(port, "could not save the TCP port: {e}"),
        }
    }
}

/// The tunnel of a TCP stream's authority (`ggrok.tcp:PORT`).
pub fn find(daemon: &Daemon, authority: Option<&str>) -> Option<Arc<Tunnel>> {
    let port = authority?.rsplit_once(':')?.1.parse::<u16>().ok()?;
    daemon.tunnels.get(&Public::Tcp(port).to_string())
}

/// Serves one public TCP connection: dials the local service, answers 200 and splices; 502 when
/// the local service cannot be reached (the server then closes the public connection). Either
/// way the connection is one line of the request log (`ggrokctl logs`): method `TCP`, the
/// tunnel's key as host, status 200 or 502, its duration and bytes each way, the public client.
pub async fn serve(
    daemon: &Daemon,
    tunnel: Arc<Tunnel>,
    headers: &http::HeaderMap,
    respond: SendResponse<Bytes>,
    recv: RecvStream,
) {
    let address = |name| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let addresses = (address(HEADER_PEER), address(HEADER_PUBLIC_ADDR));
    let started = (SystemTime::now(), Instant::now());
    let (status, counts) = connect(&tunnel, addresses, respond, recv).await;
    let time_ms = started.0.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    daemon.requests.push(Record {
        time_ms,
        host: tunnel.host(),
        method: Method::from_bytes(b"TCP").expect("a valid method"),
        path: "".into(),
        status: status.as_u16(),
        duration_us: started.1.elapsed().as_micros() as u64,
        bytes_in: counts.from_public,
        bytes_out: counts.to_public,
        client: addresses.0.map(|a| a.ip()),
        upgrade: Some("tcp".into()),
    });
}

/// Dials the local service, sends it the PROXY header if the tunnel says so, and splices;
/// returns what ggrokd answered and the bytes each way.
async fn connect(
    tunnel: &Tunnel,
    (peer, public): (Option<SocketAddr>, Option<SocketAddr>),
    mut respond: SendResponse<Bytes>,
    recv: RecvStream,
) -> (StatusCode, Counts) {
    let local = &tunnel.spec.local.authority;
    let port = tunnel.spec.host.tcp_port().unwrap_or_default();
    let dialled = async {
        let mut socket = crate::pool::dial(local).await?;
        if tunnel.spec.proxy_protocol {
            socket.write_all(&crate::proxy_header::v2(peer, public, port)).await?;
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(socket)
    };
    let peer = peer.map_or_else(|| "?".to_owned(), |p| p.to_string());
    let socket = match dialled.await {
        Ok(s) => s,
        Err(e) => {
            let cause = error_chain(&*e);
            tunnel.record_error(format!("{}: {cause}", tunnel.spec.local));
            debug!(tunnel = %tunnel.spec.host, peer, "TCP connection: local service {local} unreachable: {cause}");
            let resp = body::text(StatusCode::BAD_GATEWAY, format!("ggrokd: {local}: {cause}"));
            let (parts, _) = resp.into_parts();
            let _ = respond.send_response(Response::from_parts(parts, ()), true);
            return (StatusCode::BAD_GATEWAY, Counts::default());
        }
    };
    tunnel.record_ok();
    let stats = tunnel.stats.clone();
    stats.started();
    let send = match respond.send_response(Response::new(()), false) {
        Ok(send) => send,
        Err(e) => {
            stats.active.fetch_sub(1, Ordering::Relaxed);
            debug!("answering a TCP stream: {e}");
            return (StatusCode::OK, Counts::default());
        }
    };
    let stream = StreamIo::new(send, recv);
    let mut counts = Counts::default();
    let result = ggrok_proto::splice::splice_socket(stream, socket, LocalSide(&mut counts)).await;
    stats.bytes_in.fetch_add(counts.from_public, Ordering::Relaxed);
    stats.bytes_out.fetch_add(counts.to_public, Ordering::Relaxed);
    stats.active.fetch_sub(1, Ordering::Relaxed);
    if let Err(e) = result {
        debug!(tunnel = %tunnel.spec.host, peer, "TCP connection ended: {e}");
    }
    (StatusCode::OK, counts)
}

/// Bytes of the public side of one connection.
#[derive(Default)]
struct Counts {
    from_public: u64,
    to_public: u64,
}

/// Counts the public side's bytes from the local socket's traffic: what the local service sends
/// goes to the public client, what it is sent came from there.
struct LocalSide<'a>(&'a mut Counts);

impl ggrok_proto::tally::Tally for LocalSide<'_> {
    fn read(&mut self, n: usize) {
        self.0.to_public += n as u64;
    }
    fn written(&mut self, n: usize) {
        self.0.from_public += n as u64;
    }
}
