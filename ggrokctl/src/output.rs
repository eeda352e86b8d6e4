//! Text output for people: sentences and aligned tables.

use ggrok_proto::ctl::{
    ConnectionInfo, LinkState, Reply, ServerDown, ServerInfo, StatusInfo, TimedError, TunnelInfo,
};
use std::time::{SystemTime, UNIX_EPOCH};

/// Prints a reply: errors on stderr, everything else on stdout.
pub fn print(reply: &Reply) {
    match reply {
        Reply::Done { message, .. } => println!("{message}"),
        Reply::Tunnels { tunnels, servers_down } => {
            print!("{}{}", tunnel_table(tunnels, now()), down_lines(servers_down, now()))
        }
        Reply::Status(status) => print!("{}", status_text(status, now())),
        Reply::Error { message, .. } => eprintln!("ggrokctl: {message}"),
        Reply::Replayed(info) => print!("{}", crate::replayed::text(info)),
        // `logs` prints its own lines (crate::logs).
        Reply::Request(_) | Reply::Missed { .. } | Reply::End { .. } => {}
    }
}

/// What `hash-password` prints: the `basic_auth` entry, or with `--json` the document
/// `{"user": USER, "entry": "USER:$argon2id$…"}`.
pub fn hashed(user: &str, entry: &str, json: bool) -> String {
    if json {
        let doc = serde_json::json!({ "user": user, "entry": entry });
        serde_json::to_string_pretty(&doc).expect("strings serialise")
    } else {
        entry.to_owned()
    }
}

/// What `completions` prints: the script, or with `--json` the document `{"shell": SHELL,
/// "script": SCRIPT}` (with a newline after it).
pub fn completions(shell: &str, script: &str, json: bool) -> String {
    if json {
        let doc = serde_json::json!({ "shell": shell, "script": script });
        format!("{}\n", serde_json::to_string_pretty(&doc).expect("strings serialise"))
    } else {
        script.to_owned()
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

/// The lines under the `list` table for the servers without a connection up: why tunnels stay
/// `connecting` (such as `not connected to tunnel.example.com:443, last error 3s ago:
/// unauthorized: …; see ggrokctl status`).
pub fn down_lines(servers: &[ServerDown], now: f64) -> String {
    let mut out = String::new();
    for s in servers {
        let name = server_name(&s.server);
        match &s.last_error {
            Some(e) => out.push_str(&format!(
                "not connected to {name}, last error {}: {}; see ggrokctl status\n",
                ago(e.at, now),
                e.message
            )),
            None => out.push_str(&format!("not connected to {name} yet; see ggrokctl status\n")),
        }
    }
    out
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
    let inspector = s
        .inspector
        .as_deref()
        .unwrap_or("not listening (inspect = \"off\", or its port was busy: see the log)");
    out.push_str(&format!("inspector:   {inspector}\n"));
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
mod tests;
