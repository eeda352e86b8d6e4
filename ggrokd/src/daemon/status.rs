//! The daemon as `ggrokctl status` and the systemd status line show it: every connection, and
//! every server with the connections and replicas it holds.

use super::Daemon;
use crate::tunnels::TunnelState;
use ggrok_proto::ctl::{ConnectionInfo, LinkState, ServerInfo, StatusInfo};

impl Daemon {
    /// The daemon as `ggrokctl status` shows it, with its connections but without its tunnels'
    /// counters (the caller adds them when wanted: computing percentiles is not free).
    pub fn status(&self) -> StatusInfo {
        let connections: Vec<_> = self.links().iter().map(|l| l.info()).collect();
        let servers: Vec<ServerInfo> = {
            let groups = self.groups.read().expect("groups lock");
            groups
                .iter()
                .map(|g| server_info(&g.endpoint.server.url, &g.known, &g.addresses, &connections))
                .collect()
        };
        // The summary: connected when any link is (since the first connected one), else the
        // first link's state; the most recent error of any.
        let summary = connections.iter().find(|c| c.state == LinkState::Connected).or(connections.first());
        let last_error =
            connections.iter().filter_map(|c| c.last_error.as_ref()).max_by_key(|e| e.at).cloned();
        let tunnels = self.tunnels.all();
        StatusInfo {
            daemon_version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            config: self.config_path.display().to_string(),
            server: servers.iter().map(|s| s.server.as_str()).collect::<Vec<_>>().join(", "),
            connection: summary.map_or(LinkState::Connecting, |c| c.state),
            since: summary.map_or_else(crate::tunnels::unix_now, |c| c.since),
            attempt: summary.map_or(0, |c| c.attempt),
            last_error,
            next_retry: summary.and_then(|c| c.next_retry),
            tunnels_online: tunnels.iter().filter(|t| t.state() == TunnelState::Online).count(),
            tunnels_total: tunnels.len(),
            tunnels: Vec::new(),
            connections,
            servers,
            buffers: Some(ggrok_proto::ctl::BufferInfo {
                limit: self.budget.limit(),
                stream_window: self.budget.window(),
                bodies_in_flight: self.budget.open(),
                large_read_buffers: self.budget.large_reads(),
            }),
            inspector: self.inspector.listener.url(),
        }
    }
}

/// Server `url` as the connections to it show it; `known` are the replicas seen there, and
/// `addresses` those its name resolved to (with `replicas = "all"`).
fn server_info(
    url: &str,
    known: &[String],
    addresses: &[std::net::SocketAddr],
    connections: &[ConnectionInfo],
) -> ServerInfo {
    let mine: Vec<_> = connections.iter().filter(|c| c.server == url).collect();
    let connected: Vec<_> = mine.iter().filter(|c| c.state == LinkState::Connected).collect();
    let mut replicas: Vec<String> = connected.iter().filter_map(|c| c.replica.clone()).collect();
    replicas.sort();
    replicas.dedup();
    let mut known = known.to_vec();
    known.sort();
    let addresses: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
    let ready = !connected.is_empty()
        && known.iter().all(|k| replicas.contains(k))
        && addresses.iter().all(|a| connected.iter().any(|c| c.address.as_ref() == Some(a)));
    ServerInfo {
        server: url.to_owned(),
        state: if connected.is_empty() {
            mine.first().map_or(LinkState::Connecting, |c| c.state)
        } else {
            LinkState::Connected
        },
        connections: mine.len() as u32,
        up: connected.len() as u32,
        replicas,
        known_replicas: known,
        addresses,
        ready,
    }
}
