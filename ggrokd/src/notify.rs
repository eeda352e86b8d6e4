//! ggrokd's systemd notifications: `READY=1` once the config is valid and the control socket is
//! bound (never waiting for the server, so a server that is down cannot hold up `systemctl start`),
//! then a `STATUS=` line kept current from [`Daemon::status`]. The protocol itself (watchdog,
//! `RELOADING=1`, `STOPPING=1`) is [`ggrok_proto::notify`], shared with ggrok-server.

use crate::daemon::Daemon;
use ggrok_proto::ctl::{LinkState, StatusInfo};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The daemon is ready: `READY=1` with the current status, kept current until `shutdown`.
pub fn ready(daemon: Arc<Daemon>, shutdown: CancellationToken) {
    ggrok_proto::notify::ready(
        move || {
            let urls: Vec<String> = daemon
                .tunnels
                .all()
                .iter()
                .filter(|t| t.state() == crate::claims::TunnelState::Online)
                .filter_map(|t| t.url())
                .collect();
            status_line(&daemon.status(), &urls)
        },
        shutdown,
    );
}

/// How many public URLs the status line names; the rest are counted.
const URLS_SHOWN: usize = 3;

/// `: https://a.example.com, https://b.example.com (+2 more)`: the public URLs of the tunnels
/// online, as the servers gave them; empty when none is known.
fn listed(urls: &[String]) -> String {
    if urls.is_empty() {
        return String::new();
    }
    let mut text = format!(": {}", urls[..urls.len().min(URLS_SHOWN)].join(", "));
    if urls.len() > URLS_SHOWN {
        text.push_str(&format!(" (+{} more)", urls.len() - URLS_SHOWN));
    }
    text
}

/// The one-line status `systemctl --user status ggrokd` shows, such as
/// `connected to tunnel.example.com:443, 3/3 tunnels online; connections 4/4 up`.
/// With several servers: `connected to 2/3 servers, 3/3 tunnels online; connections 5/6 up`.
pub fn status_line(s: &StatusInfo, urls: &[String]) -> String {
    if s.servers.len() > 1 {
        return several_servers(s, urls);
    }
    let server = server_name(&s.server);
    let mut tunnels = format!("{}/{} tunnels online{}", s.tunnels_online, s.tunnels_total, listed(urls));
    if !s.connections.is_empty() {
        tunnels.push_str(&format!("; {}", connections_up(s)));
    }
    match (s.connection, &s.last_error) {
        (LinkState::Connected, _) => format!("connected to {server}, {tunnels}"),
        // Between attempts the link flips between connecting and disconnected; one line covers both.
        (_, Some(error)) if s.attempt > 0 => format!(
            "reconnecting to {server} ({} failed attempts, last: {}), {tunnels}",
            s.attempt, error.message
        ),
        (state, _) => format!("{} to {server}, {tunnels}", state.as_str()),
    }
}

/// The status line of a daemon with several servers: how many are connected, then, while some
/// are not, the first one that is not, with its latest error.
fn several_servers(s: &StatusInfo, urls: &[String]) -> String {
    let up = s.servers.iter().filter(|v| v.state == LinkState::Connected).count();
    let mut line = format!(
        "connected to {up}/{} servers, {}/{} tunnels online{}; {}",
        s.servers.len(),
        s.tunnels_online,
        s.tunnels_total,
        listed(urls),
        connections_up(s)
    );
    if let Some(down) = s.servers.iter().find(|v| v.state != LinkState::Connected) {
        let error = down.last_error(&s.connections);
        line.push_str(&format!("; {} {}", server_name(&down.server), down.state.as_str()));
        if let Some(e) = error {
            line.push_str(&format!(" ({})", e.message));
        }
    }
    line
}

/// `connections 3/4 up`: connected links of all links.
pub fn connections_up(s: &StatusInfo) -> String {
    let up = s.connections.iter().filter(|c| c.state == LinkState::Connected).count();
    format!("connections {up}/{} up", s.connections.len())
}

/// `wss://tunnel.example.com/$$ggrok` → `tunnel.example.com`: the part a person recognises.
fn server_name(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ggrok_proto::ctl::{ConnectionInfo, TimedError};

    fn status(connection: LinkState, attempt: u32, error: Option<&str>) -> StatusInfo {
        StatusInfo {
            daemon_version: "0".into(),
            pid: 1,
            uptime_secs: 0,
            config: "ggrokd.toml".into(),
            server: "wss://tunnel.example.com/$$ggrok".into(),
            connection,
            since: 0,
            attempt,
            last_error: error.map(|m| TimedError { at: 0, message: m.into() }),
            next_retry: None,
            connections: Vec::new(),
            servers: Vec::new(),
            tunnels_online: if connection == LinkState::Connected { 3 } else { 0 },
            tunnels_total: 3,
            tunnels: Vec::new(),
            buffers: None,
            inspector: None,
        }
    }

    #[test]
    fn status_lines_say_where_and_how_many() {
        assert_eq!(
            status_line(&status(LinkState::Connected, 0, Some("old")), &[]),
            "connected to tunnel.example.com, 3/3 tunnels online"
        );
        assert_eq!(
            status_line(&status(LinkState::Connecting, 0, None), &[]),
            "connecting to tunnel.example.com, 0/3 tunnels online"
        );
        let reconnecting =
            "reconnecting to tunnel.example.com (2 failed attempts, last: refused), 0/3 tunnels online";
        assert_eq!(status_line(&status(LinkState::Disconnected, 2, Some("refused")), &[]), reconnecting);
        assert_eq!(status_line(&status(LinkState::Connecting, 2, Some("refused")), &[]), reconnecting);
    }

    #[test]
    fn the_status_line_counts_the_connections_up() {
        let link = |index, state| ConnectionInfo::new(index, "ws://t", state);
        let mut s = status(LinkState::Connected, 0, None);
        s.connections = (0..4).map(|i| link(i, LinkState::Connected)).collect();
        assert_eq!(
            status_line(&s, &[]),
            "connected to tunnel.example.com, 3/3 tunnels online; connections 4/4 up"
        );
        s.connections[2].state = LinkState::Disconnected;
        assert!(status_line(&s, &[]).ends_with("; connections 3/4 up"), "{}", status_line(&s, &[]));
    }

    #[test]
    fn several_servers_are_counted_and_the_first_down_named() {
        let server = |url: &str, state| ggrok_proto::ctl::ServerInfo {
            server: url.into(),
            state,
            connections: 1,
            up: u32::from(state == LinkState::Connected),
            replicas: Vec::new(),
            known_replicas: Vec::new(),
            addresses: Vec::new(),
            ready: state == LinkState::Connected,
        };
        let mut s = status(LinkState::Connected, 0, None);
        s.servers = vec![
            server("ws://a:80/$$ggrok", LinkState::Connected),
            server("ws://b:80/$$ggrok", LinkState::Connected),
        ];
        assert_eq!(status_line(&s, &[]), "connected to 2/2 servers, 3/3 tunnels online; connections 0/0 up");
        s.servers[0].state = LinkState::Disconnected;
        assert_eq!(
            status_line(&s, &[]),
            "connected to 1/2 servers, 3/3 tunnels online; connections 0/0 up; a:80 disconnected"
        );
    }

    #[test]
    fn server_names_drop_scheme_and_path() {
        assert_eq!(server_name("ws://127.0.0.1:9/$$ggrok"), "127.0.0.1:9");
        assert_eq!(server_name("tunnel.example.com"), "tunnel.example.com");
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn the_status_line_names_the_public_urls_of_tunnels_online() {
        let s: StatusInfo = serde_json::from_value(serde_json::json!({
            "daemon_version": "0", "pid": 1, "uptime_secs": 0, "config": "c.toml",
            "server": "wss://tunnel.example.com", "connection": "connected", "since": 0,
            "attempt": 0, "tunnels_online": 2, "tunnels_total": 6,
        }))
        .unwrap();
        let one = ["https://a.x.test".to_owned()];
        assert_eq!(
            status_line(&s, &one),
            "connected to tunnel.example.com, 2/6 tunnels online: https://a.x.test"
        );
        let five: Vec<String> = (0..5).map(|i| format!("https://{i}.x.test")).collect();
        assert!(
            status_line(&s, &five)
                .ends_with("online: https://0.x.test, https://1.x.test, https://2.x.test (+2 more)"),
            "{}",
            status_line(&s, &five)
        );
    }
}
