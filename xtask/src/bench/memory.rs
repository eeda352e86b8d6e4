//! The server's memory with many tunnels: `sessions` ggrokd processes holding `hosts_each` hosts
//! each, all online at once, every client with its own token.

use super::load::{self, Target};
use super::paths::start_daemon;
use anyhow::Context;
use ggrok_tests::process::{Process, listening_address};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// What the many-tunnel server used.
pub struct ManyHosts {
    pub sessions: usize,
    pub hosts: usize,
    /// RSS before any ggrokd connected, in KiB.
    pub empty_kib: u64,
    /// RSS with every host online, in KiB.
    pub loaded_kib: u64,
    /// Peak RSS over the whole run, in KiB.
    pub peak_kib: u64,
    /// RSS of one of the ggrokd, in KiB.
    pub daemon_kib: u64,
}

/// Starts a server, `sessions` ggrokd with `hosts_each` tunnels each, checks that a request reaches
/// the last host, and reads the server's memory.
pub async fn many_hosts(
    bin: &Path,
    upstream: SocketAddr,
    sessions: usize,
    hosts_each: usize,
) -> anyhow::Result<ManyHosts> {
    let dir = tempfile::tempdir()?;
    let mut server_toml = String::from("listen = \"127.0.0.1:0\"\nlog_level = \"warn,ggrok_server=info\"\n");
    for s in 0..sessions {
        server_toml += &format!(
            "\n[[client]]\nname = \"c{s}\"\ntoken = \"bench-token-{s:04}-0123456789\"\nhosts = [\"*.c{s}.mem.test\"]\n"
        );
    }
    let server_path = dir.path().join("server.toml");
    std::fs::write(&server_path, server_toml)?;
    let server =
        super::paths::spawn(bin, "ggrok-server", &["--config", server_path.to_str().context("UTF-8 path")?]);
    let addr = listening_address(&server.wait_for(&["listening on"])).context("server address")?;
    let empty_kib = server.rss_kib();
    let mut daemons = Vec::with_capacity(sessions);
    for s in 0..sessions {
        let mut config = format!("server = \"ws://{addr}\"\ntoken = \"bench-token-{s:04}-0123456789\"\n");
        for h in 0..hosts_each {
            config += &format!("\n[[tunnel]]\nhost = \"h{h}.c{s}.mem.test\"\nlocal = \"{upstream}\"\n");
        }
        daemons.push(start_daemon(bin, dir.path(), &format!("ggrokd-{s}"), &config, hosts_each)?);
    }
    let last = Target { addr, host: format!("h{}.c{}.mem.test", hosts_each - 1, sessions - 1) };
    load::small_requests(&last, 1, Duration::ZERO).await.context("a request to the last host")?;
    let result = ManyHosts {
        sessions,
        hosts: sessions * hosts_each,
        empty_kib,
        loaded_kib: server.rss_kib(),
        peak_kib: server.peak_rss_kib(),
        daemon_kib: daemons.last().map_or(0, Process::rss_kib),
    };
    Ok(result)
}
