//! Text output for people: sentences and aligned tables.

use ggrok_proto::ctl::{Reply, StatusInfo, TimedError, TunnelInfo};
use std::time::{SystemTime, UNIX_EPOCH};

/// Prints a reply: errors on stderr, everything else on stdout.
pub fn print(reply: &Reply) {
    match reply {
        Reply::Done { message, .. } => println!("{message}"),
        Reply::Tunnels { tunnels } => print!("{}", tunnel_table(tunnels, now())),
        Reply::Status(status) => print!("{}", status_text(status, now())),
        Reply::Error { message, .. } => eprintln!("ggrokctl: {message}"),
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

/// The `list` table.
pub fn tunnel_table(tunnels: &[TunnelInfo], now: f64) -> String {
    if tunnels.is_empty() {
        return "no tunnels; add one with: ggrokctl add HOST PORT\n".into();
    }
    let mut rows = vec![["HOST", "LOCAL", "STATE", "REQUESTS", "ERRORS", "LAST ERROR"].map(String::from)];
    for t in tunnels {
        let mut state = t.state.clone();
        if let Some(reason) = &t.reason {
            state = format!("{state}: {reason}");
        }
        if !t.saved {
            state.push_str(" (not saved)");
        }
        rows.push([
            t.host.clone(),
            t.local.clone(),
            state,
            t.requests.to_string(),
            t.errors.to_string(),
            last_error(&t.last_error, now),
        ]);
    }
    let widths: Vec<usize> =
        (0..6).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c == 5 {
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

/// The `status` text.
pub fn status_text(s: &StatusInfo, now: f64) -> String {
    let mut connection = format!("{} for {}", s.connection, duration(now - s.since as f64));
    if s.connection != "connected" {
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
    if let Some(e) = &s.last_error {
        out.push_str(&format!("last error:  {}: {}\n", ago(e.at, now), e.message));
    }
    out.push_str(&format!("tunnels:     {} of {} online\n", s.tunnels_online, s.tunnels_total));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunnel(host: &str, state: &str) -> TunnelInfo {
        TunnelInfo {
            host: host.into(),
            local: "localhost:8080".into(),
            host_header: "keep".into(),
            state: state.into(),
            reason: None,
            requests: 12,
            errors: 0,
            last_error: None,
            saved: true,
        }
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
