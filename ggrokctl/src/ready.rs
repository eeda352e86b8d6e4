//! `ggrokctl ready`: whether ggrokd holds a connection to every server of its config, to every
//! replica seen behind each, and with `replicas = "all"` to every address each name resolves to.
//! For readiness probes and deploy scripts: exit 0 when it does, 1 when not (saying what is
//! missing), 3 when ggrokd cannot be reached; `--wait` polls until it does or the time is up.

use crate::{client, exit};
use ggrok_proto::ctl::{Command, ConnectionInfo, LinkState, Reply, ServerInfo};
use std::path::Path;
use std::time::{Duration, Instant};

/// How often `--wait` asks again.
const POLL: Duration = Duration::from_millis(200);

/// Whether every one of `servers` is held in full (and there is at least one).
pub fn all_ready(servers: &[ServerInfo]) -> bool {
    !servers.is_empty() && servers.iter().all(|s| s.ready)
}

/// Whether one of `connections` to `server` is up at `address`.
pub fn holds(connections: &[ConnectionInfo], server: &ServerInfo, address: &str) -> bool {
    connections.iter().any(|c| {
        c.server == server.server && c.state == LinkState::Connected && c.address.as_deref() == Some(address)
    })
}

/// What is missing of `server`, as one line; `connections` are the daemon's.
pub fn missing(server: &ServerInfo, connections: &[ConnectionInfo]) -> String {
    let mut what = vec![format!("{}/{} connections up", server.up, server.connections)];
    let unheld: Vec<&str> =
        server.known_replicas.iter().filter(|k| !server.replicas.contains(k)).map(String::as_str).collect();
    if !unheld.is_empty() {
        what.push(format!("replicas not held: {}", unheld.join(", ")));
    }
    let unheld: Vec<&str> =
        server.addresses.iter().filter(|a| !holds(connections, server, a)).map(String::as_str).collect();
    if !unheld.is_empty() {
        what.push(format!("addresses not held: {}", unheld.join(", ")));
    }
    if server.state != LinkState::Connected {
        what.push(server.state.as_str().to_owned());
    }
    // Why (a token the server refuses never clears by itself).
    if let Some(e) = server.last_error(connections) {
        what.push(format!("last error: {}", e.message));
    }
    format!("{}: {}", server.server, what.join("; "))
}

/// Runs `ggrokctl ready`, waiting up to `wait`; returns the exit code.
pub fn run(socket: &Path, wait: Duration, json: bool) -> u8 {
    let deadline = Instant::now() + wait;
    loop {
        let (servers, connections) = match client::call(socket, Command::Status) {
            Ok(response) => match response.reply {
                Reply::Status(status) => (status.servers, status.connections),
                other => {
                    eprintln!("ggrokctl: unexpected answer to status: {other:?}");
                    return exit::FAILED;
                }
            },
            Err(e) => {
                eprintln!("ggrokctl: {e}");
                return exit::NO_DAEMON;
            }
        };
        let ready = all_ready(&servers);
        if ready || Instant::now() + POLL > deadline {
            if json {
                let doc = serde_json::json!({ "ready": ready, "servers": servers });
                println!("{}", serde_json::to_string_pretty(&doc).expect("status serialises"));
            } else if ready {
                println!("ready: every server, replica and address is held");
            } else {
                println!("not ready:");
                for server in servers.iter().filter(|s| !s.ready) {
                    println!("  {}", missing(server, &connections));
                }
            }
            return if ready { exit::OK } else { exit::FAILED };
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(ready: bool, known: &[&str], held: &[&str]) -> ServerInfo {
        ServerInfo {
            server: "ws://a:80/$$ggrok".into(),
            state: LinkState::Connected,
            connections: 3,
            up: 2,
            replicas: held.iter().map(|s| s.to_string()).collect(),
            known_replicas: known.iter().map(|s| s.to_string()).collect(),
            addresses: Vec::new(),
            ready,
        }
    }

    #[test]
    fn ready_needs_every_server_and_says_what_is_missing() {
        assert!(!all_ready(&[]), "no server: nothing held");
        assert!(all_ready(&[server(true, &["a"], &["a"])]));
        assert!(!all_ready(&[server(true, &[], &[]), server(false, &["a", "b"], &["a"])]));
        let line = missing(&server(false, &["a", "b", "c"], &["a"]), &[]);
        assert_eq!(line, "ws://a:80/$$ggrok: 2/3 connections up; replicas not held: b, c");
        let mut dns = server(false, &[], &[]);
        dns.addresses = vec!["127.0.0.1:80".into(), "127.0.0.2:80".into()];
        let line = missing(&dns, &[]);
        assert!(line.ends_with("addresses not held: 127.0.0.1:80, 127.0.0.2:80"), "{line}");
    }

    #[test]
    fn not_ready_says_the_last_error_of_the_connections_down() {
        let mut down = server(false, &[], &[]);
        (down.state, down.up, down.connections) = (LinkState::Disconnected, 0, 1);
        let connection = |state, message: &str, at| ConnectionInfo {
            attempt: 2,
            last_error: Some(ggrok_proto::ctl::TimedError { at, message: message.into() }),
            ..ConnectionInfo::new(0, down.server.clone(), state)
        };
        let connections = [
            connection(LinkState::Disconnected, "cannot connect", 1),
            connection(LinkState::Disconnected, "unauthorized (401)", 2),
            // An error of a connection that is up again is history.
            connection(LinkState::Connected, "later, but over", 3),
        ];
        let line = missing(&down, &connections);
        assert_eq!(
            line,
            "ws://a:80/$$ggrok: 0/1 connections up; disconnected; last error: unauthorized (401)"
        );
    }
}
