//! Text output for people: sentences and aligned tables.

use ggrok_proto::ctl::{ConnectionInfo, LinkState, Reply, ServerInfo, StatusInfo, TimedError, TunnelInfo};
use std::time::{SystemTime, UNIX_EPOCH};

/// Prints a reply: errors on stderr, everything else on stdout.
pub fn print(reply: &Reply) {
    match reply {
        Reply::Done { message, .. } => println!("{message}"),
        Reply::Tunnels { tunnels } => print!("{}", tunnel_table(tunnels, now())),
        Reply::Status(status) => print!("{}", status_text(status, now())),
        Reply::Error { message, .. } => eprintln!("ggrokctl: {message}"),
        Reply::Replayed(info) => print!("{}", crate::replayed::text(info)),
        // `logs` prints its own lines (crate::logs).
        Reply::Request(_) | Reply::Missed { .. } | Reply::End { .. } => {}
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// `3m 12s`, `2h 5m`, `4d 1h`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

fn ago(at: u64, now: f64) -> String {
    format!("{} ago", duration(now - at as f64))
}

fn last_error(e: &Option<TimedError>, now: f64) -> String {
    e.as_ref().map_or("-".into(), |e| format!("{}: {}", ago(e.at, now), e.message))
}

/// The `list` table: what each tunnel is, its state, and how its requests fare.
pub fn tunnel_table(tunnels: &[TunnelInfo], now: f64) -> String {
    if tunnels.is_empty() {
        return "no tunnels; add one with: ggrokctl add HOST PORT (or NAME PORT, or PORT, under your domain)\n"
            .into();
    }
    let header = ["HOST", "LOCAL", "ACCESS", "STATE", "REQUESTS", "4XX", "5XX", "ACTIVE", "LAST ERROR"];
    // The ACCESS column (basic auth, ip rules) only when some tunnel has rules.
    let access = tunnels.iter().any(|t| t.access.is_some());
    let mut rows = vec![header.iter().filter(|h| access || **h != "ACCESS").map(|h| h.to_string()).collect()];
    for t in tunnels {
        let mut state = t.state.as_str().to_owned();
        if let Some(reason) = &t.reason {
            state = format!("{state}: {reason}");
        }
        if !t.saved {
            state.push_str(" (not saved)");
        }
        // The public URL the server gave, when it did (it names the host).
        let public = t.url.clone().unwrap_or_else(|| t.host.clone());
        let mut row = vec![public, t.local.clone()];
        if access {
            row.push(t.access.as_ref().map_or_else(|| "-".into(), |a| a.brief()));
        }
        row.extend([
            state,
            t.requests.to_string(),
            t.status_4xx.to_string(),
            t.status_5xx.to_string(),
            t.active.to_string(),
            last_error(&t.last_error, now),
        ]);
        rows.push(row);
    }
    aligned(&rows)
}

/// The traffic table of `status`: every counter of every tunnel.
pub fn traffic_table(tunnels: &[TunnelInfo]) -> String {
    let header = ["HOST", "REQUESTS", "4XX", "5XX", "UNREACHABLE", "IN", "OUT", "ACTIVE", "P50", "P99"];
    let mut rows = vec![header.map(String::from).to_vec()];
    let latency = |ms: Option<f64>| ms.map_or("-".into(), millis);
    for t in tunnels {
        rows.push(vec![
            t.host.clone(),
            t.requests.to_string(),
            t.status_4xx.to_string(),
            t.status_5xx.to_string(),
            t.errors.to_string(),
            bytes(t.bytes_in),
            bytes(t.bytes_out),
            t.active.to_string(),
            latency(t.p50_ms),
            latency(t.p99_ms),
        ]);
    }
    aligned(&rows)
}

/// The connections table of `status`: where each connection landed, how long it has been in its
/// state, what it carried, and for one that is down, its retries and last error.
pub fn connection_table(connections: &[ConnectionInfo], now: f64) -> String {
    let header = [
        "CONN",
        "SERVER",
        "REPLICA",
        "WORKER",
        "TRANSPORT",
        "STATE",
        "SINCE",
        "REQUESTS",
        "ATTEMPT",
        "RETRY IN",
        "LAST ERROR",
    ];
    let mut rows = vec![header.map(String::from).to_vec()];
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for c in connections {
        let down = c.state != LinkState::Connected;
        rows.push(vec![
            c.index.to_string(),
            server_name(&c.server).to_owned(),
            or_dash(c.replica.clone()),
            or_dash(c.worker.map(|w| w.to_string())),
            or_dash(c.transport.clone()),
            c.state.as_str().to_owned(),
            duration(now - c.since as f64),
            c.requests.to_string(),
            if down && c.attempt > 0 { c.attempt.to_string() } else { "-".into() },
            or_dash(c.next_retry.filter(|_| down).map(|t| format!("{:.1}s", (t - now).max(0.0)))),
            if down { last_error(&c.last_error, now) } else { "-".into() },
        ]);
    }
    aligned(&rows)
}

/// One line per server: its state, its connections up, and the replicas it holds of those seen
/// there, such as `  a.example.com:443  connected, 2/2 up, replicas r1, r2 (of r1, r2)`; one
/// whose connections are all down says it is retrying, with their most failed attempts.
pub fn server_lines(servers: &[ServerInfo], connections: &[ConnectionInfo]) -> String {
    let mut rows = Vec::new();
    for v in servers {
        let mut what = format!("{}, {}/{} up", v.state.as_str(), v.up, v.connections);
        let attempts = connections.iter().filter(|c| c.server == v.server).map(|c| c.attempt).max();
        if let Some(n) = attempts.filter(|n| *n > 0 && v.up == 0) {
            what.push_str(&format!(", retrying (attempt {n})"));
        }
        if !v.known_replicas.is_empty() {
            let held = if v.replicas.is_empty() { "none".to_owned() } else { v.replicas.join(", ") };
            what.push_str(&format!(", replicas {held} (of {})", v.known_replicas.join(", ")));
        }
        if !v.addresses.is_empty() {
            let held = v.addresses.iter().filter(|a| crate::ready::holds(connections, v, a)).count();
            what.push_str(&format!(", addresses {held}/{} held", v.addresses.len()));
        }
        rows.push(vec![format!("  {}", server_name(&v.server)), what]);
    }
    aligned(&rows)
}

/// `wss://tunnel.example.com:443/$$ggrok` → `tunnel.example.com:443`.
fn server_name(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// Rows as columns separated by two spaces; the last column is not padded.
fn aligned(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> =
        (0..columns).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == columns {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `512 B`, `1.5 KiB`, `3.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let (mut value, mut unit) = (n as f64, 0);
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `0.42ms`, `12.3ms`, `1.25s`, `3m 12s`.
pub fn millis(ms: f64) -> String {
    match ms {
        ..10.0 => format!("{ms:.2}ms"),
        ..1000.0 => format!("{ms:.1}ms"),
        ..60_000.0 => format!("{:.2}s", ms / 1e3),
        _ => duration(ms / 1e3),
    }
}

/// The `status` text.
pub fn status_text(s: &StatusInfo, now: f64) -> String {
    let mut connection = format!("{} for {}", s.connection.as_str(), duration(now - s.since as f64));
    if s.connection != LinkState::Connected {
        if s.attempt > 0 {
            connection.push_str(&format!(", attempt {}", s.attempt));
        }
        if let Some(next) = s.next_retry {
            connection.push_str(&format!(", next try in {:.1}s", (next - now).max(0.0)));
        }
    }
    let mut out = format!(
        "ggrokd {} (pid {}), up {}\nconfig:      {}\nserver:      {}\nconnection:  {connection}\n",
        s.daemon_version,
        s.pid,
        duration(s.uptime_secs as f64),
        s.config,
        s.server,
    );
    if s.servers.len() > 1
        || s.servers.iter().any(|v| !v.known_replicas.is_empty() || !v.addresses.is_empty())
    {
        out.push_str(&server_lines(&s.servers, &s.connections));
    }
    if let Some(e) = &s.last_error {
        out.push_str(&format!("last error:  {}: {}\n", ago(e.at, now), e.message));
    }
    out.push_str(&format!("tunnels:     {} of {} online", s.tunnels_online, s.tunnels_total));
    if !s.connections.is_empty() {
        let up = s.connections.iter().filter(|c| c.state == LinkState::Connected).count();
        out.push_str(&format!("; connections {up}/{} up", s.connections.len()));
    }
    out.push('\n');
    if !s.connections.is_empty() {
        out.push('\n');
        out.push_str(&connection_table(&s.connections, now));
    }
    if !s.tunnels.is_empty() {
        out.push('\n');
        out.push_str(&traffic_table(&s.tunnels));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunnel(host: &str, state: &str) -> TunnelInfo {
        TunnelInfo {
            host: host.into(),
            local: "localhost:8080".into(),
            host_header: ggrok_proto::ctl::HostHeader::Keep,
            state: serde_json::from_value(serde_json::Value::String(state.into())).unwrap(),
            reason: None,
            requests: 12,
            errors: 0,
            status_4xx: 3,
            status_5xx: 1,
            bytes_in: 2048,
            bytes_out: 5_000_000,
            active: 2,
            p50_ms: Some(1.234),
            p99_ms: Some(250.0),
            last_error: None,
            saved: true,
            access: None,
            url: None,
        }
    }

    #[test]
    fn list_shows_the_public_url_when_the_server_gave_one() {
        let mut online = tunnel("myapp.alice.test", "online");
        online.url = Some("https://myapp.alice.test".into());
        let text = tunnel_table(&[online, tunnel("b.test", "connecting")], 0.0);
        assert!(text.lines().nth(1).unwrap().starts_with("https://myapp.alice.test "), "{text}");
        assert!(text.lines().nth(2).unwrap().starts_with("b.test "), "{text}");
    }

    #[test]
    fn table_is_aligned() {
        let mut refused = tunnel("b.example.com", "refused");
        refused.reason = Some("held by another client".into());
        refused.last_error = Some(TimedError { at: 940, message: "boom".into() });
        let text = tunnel_table(&[tunnel("api.test", "online"), refused], 1000.0);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("HOST           LOCAL           STATE"), "{text}");
        assert!(lines[2].contains("refused: held by another client"));
        assert!(lines[2].ends_with("1m 0s ago: boom"), "{text}");
        let col = lines[0].find("LOCAL").unwrap();
        assert_eq!(&lines[1][col..col + 9], "localhost");
    }

    #[test]
    fn list_shows_the_compact_counters() {
        let text = tunnel_table(&[tunnel("api.test", "online")], 0.0);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("REQUESTS  4XX  5XX  ACTIVE  LAST ERROR"), "{text}");
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(cells, ["api.test", "localhost:8080", "online", "12", "3", "1", "2", "-"]);
        assert!(!text.contains("ACCESS"), "no access column while no tunnel has rules");
    }

    #[test]
    fn protected_tunnels_say_so_without_secrets() {
        let mut locked = tunnel("api.test", "online");
        locked.access = Some(ggrok_proto::ctl::AccessInfo {
            basic_auth: vec!["alice".into()],
            allow_ips: vec!["127.0.0.2/32".into()],
            deny_ips: vec![],
        });
        let text = tunnel_table(&[locked, tunnel("open.test", "online")], 0.0);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("HOST       LOCAL           ACCESS                STATE"), "{text}");
        assert!(lines[1].contains("basic auth, ip rules  online"), "{text}");
        assert!(lines[2].contains("localhost:8080  -                     online"), "{text}");
    }

    #[test]
    fn status_shows_every_counter() {
        let status = StatusInfo {
            daemon_version: "0.1.0".into(),
            pid: 7,
            uptime_secs: 60,
            config: "ggrokd.toml".into(),
            server: "ws://t:80/$$ggrok".into(),
            connection: LinkState::Connected,
            since: 0,
            attempt: 0,
            last_error: None,
            next_retry: None,
            connections: Vec::new(),
            servers: Vec::new(),
            tunnels_online: 1,
            tunnels_total: 1,
            tunnels: vec![tunnel("api.test", "online")],
            buffers: None,
        };
        let text = status_text(&status, 60.0);
        let header = text.lines().find(|l| l.starts_with("HOST")).expect(&text);
        assert_eq!(
            header.split_whitespace().collect::<Vec<_>>(),
            ["HOST", "REQUESTS", "4XX", "5XX", "UNREACHABLE", "IN", "OUT", "ACTIVE", "P50", "P99"]
        );
        let row = text.lines().last().unwrap();
        assert!(row.starts_with("api.test") && row.contains("2.0 KiB") && row.contains("4.8 MiB"), "{text}");
        assert!(row.contains("1.23ms") && row.ends_with("250.0ms"), "{text}");
    }

    fn connection(index: u32, state: LinkState) -> ConnectionInfo {
        ConnectionInfo {
            index,
            server: "wss://t.example.com:443/$$ggrok".into(),
            replica: Some("eu-1".into()),
            address: Some("192.0.2.1:443".into()),
            worker: Some(index),
            transport: Some("raw".into()),
            protocol: Some(2),
            session: Some(10 + u64::from(index)),
            state,
            since: 0,
            requests: 42,
            attempt: 0,
            last_error: None,
            next_retry: None,
        }
    }

    #[test]
    fn status_lists_every_connection() {
        let mut down = connection(1, LinkState::Disconnected);
        (down.replica, down.worker, down.transport) = (None, None, None);
        (down.attempt, down.next_retry) = (3, Some(62.5));
        down.last_error = Some(TimedError { at: 55, message: "cannot connect: refused".into() });
        let status = StatusInfo {
            daemon_version: "0.1.0".into(),
            pid: 7,
            uptime_secs: 60,
            config: "ggrokd.toml".into(),
            server: "wss://t.example.com:443/$$ggrok".into(),
            connection: LinkState::Connected,
            since: 0,
            attempt: 0,
            last_error: None,
            next_retry: None,
            connections: vec![connection(0, LinkState::Connected), down],
            servers: Vec::new(),
            tunnels_online: 3,
            tunnels_total: 3,
            tunnels: Vec::new(),
            buffers: None,
        };
        let text = status_text(&status, 60.0);
        assert!(text.contains("tunnels:     3 of 3 online; connections 1/2 up\n"), "{text}");
        let lines: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("CONN")).collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            [
                "CONN",
                "SERVER",
                "REPLICA",
                "WORKER",
                "TRANSPORT",
                "STATE",
                "SINCE",
                "REQUESTS",
                "ATTEMPT",
                "RETRY",
                "IN",
                "LAST",
                "ERROR"
            ]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["0", "t.example.com:443", "eu-1", "0", "raw", "connected", "1m", "0s", "42", "-", "-", "-"]
        );
        assert_eq!(
            lines[2].split_whitespace().take(10).collect::<Vec<_>>(),
            ["1", "t.example.com:443", "-", "-", "-", "disconnected", "1m", "0s", "42", "3"]
        );
        assert!(lines[2].contains("2.5s") && lines[2].ends_with("5s ago: cannot connect: refused"), "{text}");
    }

    #[test]
    fn sizes_and_times_read_well() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(millis(0.4242), "0.42ms");
        assert_eq!(millis(12.34), "12.3ms");
        assert_eq!(millis(1250.0), "1.25s");
        assert_eq!(millis(192_000.0), "3m 12s");
    }

    #[test]
    fn empty_list_says_how_to_add() {
        assert!(tunnel_table(&[], 0.0).contains("ggrokctl add"));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(5.0), "5s");
        assert_eq!(duration(192.0), "3m 12s");
        assert_eq!(duration(7500.0), "2h 5m");
        assert_eq!(duration(90000.0), "1d 1h");
    }
}
