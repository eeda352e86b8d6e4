//! `ggrokctl logs`: the latest requests, or a live follow, as text lines or one JSON object per
//! line.

use crate::output::{bytes, millis};
use crate::{client, exit};
use ggrok_proto::ctl::{Command, CtlResponse, LogEntry, Reply};
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use time::{OffsetDateTime, UtcOffset};

/// How long ggrokd may take to send the next line of a listing (not of a follow).
const LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// The column heads of the text lines.
pub fn header() -> String {
    let heads = ["TIME", "STATUS", "METHOD", "DURATION", "IN", "OUT", "CLIENT", "REQUEST"];
    let [time, status, method, duration, bytes_in, bytes_out, client, request] = heads;
    format!(
        "{time:<12}  {status:<6}  {method:<7}  {duration:>8}  {bytes_in:>10}  {bytes_out:>10}  {client:<15}  {request}"
    )
}

/// Runs `logs` (the latest `last` requests, or all, of `host` or of every host; then new ones
/// when `follow`) and returns the exit code. `offset` is the local time zone's (taken while the
/// process is single-threaded, as `time` requires).
pub fn run(
    socket: &Path,
    follow: bool,
    host: Option<String>,
    last: Option<u64>,
    json: bool,
    offset: UtcOffset,
) -> u8 {
    let command = Command::Logs { follow, host: host.clone(), last };
    let mut responses = match client::open(socket, command, (!follow).then_some(LINE_TIMEOUT)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ggrokctl: {e}");
            return exit::NO_DAEMON;
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut header_due = !json;
    // Following: the heads at once say it works, before any request comes.
    if follow && std::mem::take(&mut header_due) && writeln!(out, "{}", header()).is_err() {
        return exit::OK;
    }
    let mut printed = 0u64;
    loop {
        let response = match responses.read() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("ggrokctl: {e}");
                return exit::NO_DAEMON;
            }
        };
        let line = match (&response.reply, json) {
            (Reply::End { .. }, _) => {
                if let Some(line) = none_found(host.as_deref(), last).filter(|_| printed == 0 && !json) {
                    let _ = writeln!(out, "{line}");
                }
                return exit::OK;
            }
            (Reply::Error { message, .. }, false) => {
                eprintln!("ggrokctl: {message}");
                return exit::FAILED;
            }
            (Reply::Error { .. }, true) => {
                println!("{}", json_line(&response));
                return exit::FAILED;
            }
            (_, true) => json_line(&response),
            (Reply::Request(entry), false) => text_line(entry, offset),
            (Reply::Missed { count }, false) => {
                format!("-- {count} requests skipped: this terminal fell behind (a filter may hide some) --")
            }
            (_, false) => continue,
        };
        if std::mem::take(&mut header_due) && writeln!(out, "{}", header()).is_err() {
            return exit::OK;
        }
        printed += 1;
        // A closed stdout (`| head`) ends the command quietly.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            return exit::OK;
        }
    }
}

/// What a listing that found no request says: that none passed the `host` filter, or that there
/// are none yet; nothing when none was asked for (`-n 0`).
pub fn none_found(host: Option<&str>, last: Option<u64>) -> Option<String> {
    match (host, last) {
        (_, Some(0)) => None,
        (Some(host), _) => Some(format!(
            "no requests for {host} among those ggrokd keeps; ggrokctl logs -f {host} shows new ones as \
             they complete"
        )),
        (None, _) => Some("no requests yet; ggrokctl logs -f shows them as they complete".into()),
    }
}

fn json_line(response: &CtlResponse) -> String {
    serde_json::to_string(response).expect("responses serialise")
}

/// One request as a text line, aligned under [`header`].
pub fn text_line(e: &LogEntry, offset: UtcOffset) -> String {
    let status = if e.status == 0 { "-".to_owned() } else { e.status.to_string() };
    let mut line = format!(
        "{}  {status:<6}  {:<7}  {:>8}  {:>10}  {:>10}  {:<15}  {}{}",
        clock(e.time, offset),
        e.method,
        millis(e.duration_ms),
        bytes(e.bytes_in),
        bytes(e.bytes_out),
        e.client.as_deref().unwrap_or("-"),
        e.host,
        e.path,
    );
    if let Some(protocol) = &e.upgrade {
        line.push_str(&format!("  [{protocol}]"));
    }
    line
}

/// `HH:MM:SS.mmm` in the time zone `offset`.
fn clock(unix_secs: f64, offset: UtcOffset) -> String {
    let nanos = (unix_secs * 1e3).round() as i128 * 1_000_000;
    match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => {
            let t = t.to_offset(offset);
            format!("{:02}:{:02}:{:02}.{:03}", t.hour(), t.minute(), t.second(), t.millisecond())
        }
        Err(_) => "--:--:--.---".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> LogEntry {
        LogEntry {
            time: 1_700_000_000.5,
            host: "api.test".into(),
            method: "POST".into(),
            path: "/up?x=1".into(),
            status: 201,
            duration_ms: 12.34,
            bytes_in: 2048,
            bytes_out: 10,
            client: Some("203.0.113.7".into()),
            upgrade: None,
        }
    }

    #[test]
    fn text_lines_sit_under_the_header() {
        let line = text_line(&entry(), UtcOffset::UTC);
        let expected = ["22:13:20.500", "201   ", "POST   ", "  12.3ms", "   2.0 KiB", "      10 B"];
        let expected = format!("{}  203.0.113.7      api.test/up?x=1", expected.join("  "));
        assert_eq!(line, expected);
        let header = header();
        let (line, header) = (line.as_str(), header.as_str());
        for head in ["STATUS", "METHOD", "CLIENT", "REQUEST"] {
            // Left-aligned: starts where its head starts.
            let at = header.find(head).unwrap();
            assert!(&line[at - 2..at] == "  " && &line[at..=at] != " ", "{head}:\n{header}\n{line}");
        }
        for head in [" DURATION ", " IN ", " OUT "] {
            // Right-aligned: ends where its head ends.
            let end = header.find(head).unwrap() + head.len() - 1;
            assert!(&line[end - 1..end] != " " && &line[end..=end] == " ", "{head}:\n{header}\n{line}");
        }
    }

    #[test]
    fn upgrades_and_abandoned_requests_say_so() {
        let mut e = entry();
        e.upgrade = Some("websocket".into());
        e.status = 101;
        assert!(text_line(&e, UtcOffset::UTC).ends_with("api.test/up?x=1  [websocket]"));
        e.status = 0;
        e.client = None;
        let line = text_line(&e, UtcOffset::UTC);
        assert_eq!(line.split_whitespace().nth(1), Some("-"));
        assert!(line.contains("  -  "), "{line}");
    }

    #[test]
    fn an_empty_listing_says_what_it_looked_for() {
        assert_eq!(none_found(None, Some(0)), None, "-n 0 asks for nothing");
        assert_eq!(none_found(Some("a.test"), Some(0)), None);
        let line = none_found(Some("nope.test"), Some(20)).unwrap();
        assert!(line.starts_with("no requests for nope.test among those ggrokd keeps"), "{line}");
        let line = none_found(None, None).unwrap();
        assert!(line.starts_with("no requests yet"), "{line}");
    }

    #[test]
    fn clock_follows_the_offset() {
        let plus_two = UtcOffset::from_hms(2, 0, 0).unwrap();
        assert_eq!(clock(1_700_000_000.042_9, plus_two), "00:13:20.043");
    }
}
