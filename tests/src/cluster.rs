//! A ggrok-server and a ggrokd with tunnels, started as real processes and awaited until ready.

use crate::TEST_TOKEN;
use crate::bins::bin;
use crate::process::Process;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A `[[client]]` of the server configuration.
pub struct ClientDef<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its token.
    pub token: &'a str,
    /// Hosts it may claim.
    pub hosts: &'a [&'a str],
}

/// A running ggrok-server.
pub struct Server {
    /// Its configuration directory.
    pub dir: TempDir,
    /// The process.
    pub process: Process,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Server {
    /// Starts a server on 127.0.0.1:0 with these clients and waits until it listens.
    pub fn start(clients: &[ClientDef]) -> Self {
        Self::start_extra(clients, "")
    }

    /// Like [`Server::start`], with `extra` top-level TOML (e.g. `keepalive_interval = 1`).
    pub fn start_extra(clients: &[ClientDef], extra: &str) -> Self {
        let mut toml = format!("listen = \"127.0.0.1:0\"\n{extra}\n");
        for c in clients {
            let hosts: Vec<String> = c.hosts.iter().map(|h| format!("{h:?}")).collect();
            write!(
                toml,
                "\n[[client]]\nname = {:?}\ntoken = {:?}\nhosts = [{}]\n",
                c.name,
                c.token,
                hosts.join(", ")
            )
            .unwrap();
        }
        Self::start_with(&toml)
    }

    /// Starts a server with this configuration text (whose `listen` should use port 0).
    pub fn start_with(toml: &str) -> Self {
        Self::start_with_env(toml, &[])
    }

    /// Like [`Server::start_with`], with these environment variables (e.g. `GGROK_PROTOCOL_MAX`).
    pub fn start_with_env(toml: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(&path, toml).unwrap();
        let process = Process::spawn(&bin("ggrok-server"), &["--config", path.to_str().unwrap()], env);
        let line = process.wait_for(&["listening on"]);
        let addr =
            crate::process::listening_address(&line).unwrap_or_else(|| panic!("no address in {line:?}"));
        Self { dir, process, addr }
    }

    /// Kills the server and starts it again on the same address (and configuration).
    pub fn restart(&mut self) {
        self.process.stop();
        let path = self.dir.path().join("server.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"{}\"", self.addr), 1);
        std::fs::write(&path, text).unwrap();
        self.process = Process::spawn(&bin("ggrok-server"), &["--config", path.to_str().unwrap()], &[]);
        self.process.wait_for(&["listening on"]);
    }

    /// Stops the server as an operator does (SIGTERM: it drains, then exits) and waits for it to
    /// exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.process.signal("TERM");
        self.process.wait_exit()
    }

    /// Starts the server again, after it exited, with its configuration file as it is: the same
    /// addresses when they were given (not port 0), as a load balancer's fixed targets need.
    pub fn respawn(&mut self) {
        let path = self.dir.path().join("server.toml");
        self.process = Process::spawn(&bin("ggrok-server"), &["--config", path.to_str().unwrap()], &[]);
        let line = self.process.wait_for(&["listening on"]);
        self.addr =
            crate::process::listening_address(&line).unwrap_or_else(|| panic!("no address in {line:?}"));
    }

    /// `ws://` URL of its tunnel endpoint.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

/// A running ggrokd.
pub struct Daemon {
    /// Its configuration directory.
    pub dir: TempDir,
    /// Its configuration file.
    pub config: PathBuf,
    /// Its control socket.
    pub socket: PathBuf,
    /// The process.
    pub process: Process,
}

impl Daemon {
    /// Starts ggrokd toward `server_url` with `token` and `tunnels` (host, local), plus `extra`
    /// TOML appended verbatim. Does not wait.
    pub fn start(server_url: &str, token: &str, tunnels: &[(&str, &str)], extra: &str) -> Self {
        Self::start_env(server_url, token, tunnels, extra, &[])
    }

    /// Like [`Daemon::start`], with these environment variables (e.g. `GGROK_PROTOCOL_MAX`).
    pub fn start_env(
        server_url: &str,
        token: &str,
        tunnels: &[(&str, &str)],
        extra: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("ggrokd.toml");
        std::fs::write(&config, daemon_toml(server_url, token, tunnels, extra)).unwrap();
        let socket = dir.path().join("run/ggrokd.sock");
        let state = dir.path().join("state");
        let mut env = env.to_vec();
        env.push(("XDG_STATE_HOME", state.to_str().unwrap()));
        let process = Self::spawn(&config, &socket, &env);
        Self { dir, config, socket, process }
    }

    fn spawn(config: &Path, socket: &Path, env: &[(&str, &str)]) -> Process {
        Process::spawn(
            &bin("ggrokd"),
            &["--config", config.to_str().unwrap(), "--socket", socket.to_str().unwrap()],
            env,
        )
    }

    /// `ggrokctl status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let out = self.ctl(&["status", "--json"]);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Waits (up to a minute) until `status --json` answers and satisfies `done`; returns that
    /// status.
    pub fn wait_status(&self, what: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let out = self.ctl(&["status", "--json"]);
            let status = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
            if out.status.success() && done(&status) {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}: {status:#}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Kills the daemon and starts it again with the same config and socket.
    pub fn restart(&mut self) {
        self.process.stop();
        let state = self.dir.path().join("state");
        self.process =
            Self::spawn(&self.config, &self.socket, &[("XDG_STATE_HOME", state.to_str().unwrap())]);
    }

    /// Runs `ggrokctl --socket <this daemon's socket> ARGS` and returns its output.
    pub fn ctl(&self, args: &[&str]) -> std::process::Output {
        ctl(&self.socket, args)
    }

    /// Waits until the daemon logs that `host` is online for the second time (after a reconnect).
    pub fn wait_for_second_online(&self, host: &str) {
        self.process.wait_for_nth(&["tunnel online", &format!("host=\"{host}\"")], 2);
    }

    /// Waits until the daemon logs that `host` is online.
    pub fn wait_online(&self, host: &str) {
        self.process.wait_for(&["tunnel online", &format!("host=\"{host}\"")]);
    }
}

/// The text of a ggrokd.toml. A `server_url` that starts with `[` is a TOML list, written as is.
pub fn daemon_toml(server_url: &str, token: &str, tunnels: &[(&str, &str)], extra: &str) -> String {
    // An empty token writes none (anonymous clients).
    let token_line = if token.is_empty() { String::new() } else { format!("token = {token:?}") };
    let server = if server_url.starts_with('[') { server_url.to_owned() } else { format!("{server_url:?}") };
    // Each test daemon's inspector on a port of its own (the default, 4040, is one per machine).
    let inspect = if extra.contains("inspect =") { "" } else { "inspect = \"127.0.0.1:0\"\n" };
    let mut toml = format!("server = {server}\n{token_line}\n{inspect}{extra}\n");
    for (host, local) in tunnels {
        write!(toml, "\n[[tunnel]]\nhost = {host:?}\nlocal = {local:?}\n").unwrap();
    }
    toml
}

/// A server, and a daemon whose tunnels are all online.
pub struct Cluster {
    /// The server; its one client, `test`, may claim `*.test` and every tunnel host.
    pub server: Server,
    /// The daemon.
    pub daemon: Daemon,
}

impl Cluster {
    /// Starts both and waits until every tunnel is online.
    pub fn start(tunnels: &[(&str, &str)]) -> Self {
        Self::start_with(tunnels, "")
    }

    /// Like [`Cluster::start`], with extra TOML for the daemon's `[[tunnel]]`-free part.
    pub fn start_with(tunnels: &[(&str, &str)], extra: &str) -> Self {
        Self::start_full(tunnels, "", extra)
    }

    /// Like [`Cluster::start`], with extra TOML for the server (top level, or whole tables such
    /// as `[limits]`) and for the daemon.
    pub fn start_full(tunnels: &[(&str, &str)], server_extra: &str, extra: &str) -> Self {
        let mut hosts: Vec<&str> = tunnels.iter().map(|(h, _)| *h).collect();
        hosts.push("*.test");
        let server = Server::start_extra(
            &[ClientDef { name: "test", token: TEST_TOKEN, hosts: &hosts }],
            server_extra,
        );
        let daemon = Daemon::start(&server.ws_url(), TEST_TOKEN, tunnels, extra);
        for (host, _) in tunnels {
            daemon.wait_online(host);
        }
        Self { server, daemon }
    }

    /// The server's public address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }
}

/// Runs `ggrokctl --socket SOCKET ARGS` with a clean environment.
pub fn ctl(socket: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin("ggrokctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_clear()
        .output()
        .expect("run ggrokctl")
}

/// Runs `ggrokctl ARGS` with a clean environment and `line` on its standard input (a password,
/// say); it must succeed.
pub fn ctl_given(args: &[&str], line: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = std::process::Command::new(bin("ggrokctl"))
        .args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ggrokctl");
    writeln!(child.stdin.take().unwrap(), "{line}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    out
}
