//! The tunnels under test, started from their binaries on loopback: ggrok (ggrok-server and ggrokd
//! with release builds) and rathole (installed by [`install_rathole`]), both in front of the same
//! local service; for the part `tcp` each also carries one TCP tunnel to the raw-TCP service.

use super::load::Target;
use anyhow::{Context, bail};
use ggrok_tests::process::{Process, listening_address};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The rathole release the comparison uses.
pub const RATHOLE_VERSION: &str = "0.5.0";

/// A running ggrok: the server and one ggrokd.
pub struct Ggrok {
    pub server: Process,
    pub daemon: Process,
    pub target: Target,
    /// The public address of the TCP tunnel, when it was asked for.
    pub tcp: Option<SocketAddr>,
    _dir: tempfile::TempDir,
}

/// Starts ggrok-server and a ggrokd holding `tunnels` tunnels to `upstream`: `t0.bench.test`,
/// `t1.bench.test`, …; the target is the first. Returns when every tunnel is online. Both run
/// with their defaults, except for what these variables set (for measuring one setting against
/// another): `$GGROK_BENCH_SERVER_THREADS` (the server's `threads`), `$GGROK_BENCH_CONNECTIONS`
/// and `$GGROK_BENCH_TRANSPORT` (ggrokd's `connections` and `transport`).
pub fn start_ggrok(bin: &Path, upstream: SocketAddr, tunnels: usize) -> anyhow::Result<Ggrok> {
    start_ggrok_with(bin, upstream, tunnels, true, None, false)
}

/// Like [`start_ggrok`], with the inspector capturing (its default; on a free port here) or
/// `inspect = "off"`, and with `tcp` set one more tunnel: `[[tunnel]] tcp = P` to that address,
/// for a free port P the server's client may claim (`ports = ["P"]`), and with `unbudgeted`
/// `buffer_memory` at its largest (1024 GiB) on both ends: the buffer budget out of the way.
pub fn start_ggrok_with(
    bin: &Path,
    upstream: SocketAddr,
    tunnels: usize,
    inspect: bool,
    tcp: Option<SocketAddr>,
    unbudgeted: bool,
) -> anyhow::Result<Ggrok> {
    let budget = if unbudgeted { "buffer_memory = \"1024 GiB\"\n" } else { "" };
    let dir = tempfile::tempdir()?;
    let token = "bench-token-0123456789abcdef";
    let server_toml = dir.path().join("server.toml");
    let setting = |variable: &str, key: &str, quoted: bool| match std::env::var(variable) {
        Ok(v) if quoted => format!("{key} = {v:?}\n"),
        Ok(v) => format!("{key} = {v}\n"),
        Err(_) => String::new(),
    };
    let threads = setting("GGROK_BENCH_SERVER_THREADS", "threads", false);
    let tcp = match tcp {
        Some(local) => Some((free_port()?, local)),
        None => None,
    };
    let ports = tcp.map_or(String::new(), |(port, _)| format!("ports = [\"{port}\"]\n"));
    std::fs::write(
        &server_toml,
        format!(
            "listen = \"127.0.0.1:0\"\nlog_level = \"warn,ggrok_server=info\"\n{threads}\n\
             [limits]\n{budget}\n[[client]]\nname = \"bench\"\ntoken = \"{token}\"\nhosts = [\"*.bench.test\"]\n{ports}"
        ),
    )?;
    let server = spawn(bin, "ggrok-server", &["--config", path(&server_toml)]);
    let addr = listening_address(&server.wait_for(&["listening on"])).context("server address")?;
    let mut daemon_toml = format!("server = \"ws://{addr}\"\ntoken = \"{token}\"\nlog_level = \"info\"\n");
    daemon_toml += if inspect { "inspect = \"127.0.0.1:0\"\n" } else { "inspect = \"off\"\n" };
    daemon_toml += budget;
    daemon_toml += &setting("GGROK_BENCH_CONNECTIONS", "connections", false);
    daemon_toml += &setting("GGROK_BENCH_TRANSPORT", "transport", true);
    for i in 0..tunnels {
        daemon_toml += &format!("\n[[tunnel]]\nhost = \"t{i}.bench.test\"\nlocal = \"{upstream}\"\n");
    }
    if let Some((port, local)) = tcp {
        daemon_toml += &format!("\n[[tunnel]]\ntcp = {port}\nlocal = \"{local}\"\n");
    }
    let daemon = start_daemon(bin, dir.path(), "ggrokd", &daemon_toml, tunnels + usize::from(tcp.is_some()))?;
    let target = Target { addr, host: "t0.bench.test".into() };
    let tcp = tcp.map(|(port, _)| SocketAddr::from(([127, 0, 0, 1], port)));
    Ok(Ggrok { server, daemon, target, tcp, _dir: dir })
}

impl Ggrok {
    /// Stops ggrokd, then the server, with SIGTERM (so a profiler wrapping them writes its data).
    pub fn stop(self) {
        self.daemon.terminate();
        self.server.terminate();
    }
}

/// Starts `name` from `bin`, under the command in `$GGROK_BENCH_WRAP_<NAME>` if set (the name in
/// capitals, `-` as `_`), e.g. `GGROK_BENCH_WRAP_GGROKD="valgrind --tool=callgrind"` to profile.
/// Their logs go to our stderr with `GGROK_TEST_ECHO` set.
pub fn spawn(bin: &Path, name: &str, args: &[&str]) -> Process {
    let program = bin.join(name);
    let variable = format!("GGROK_BENCH_WRAP_{}", name.to_uppercase().replace('-', "_"));
    let wrapper = std::env::var(variable).unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    // `GGROK_TEST_ECHO=1` shows their logs, as in the tests (`GGROK_TEST_LOG` sets the filter).
    let echo = std::env::var_os("GGROK_TEST_ECHO").is_some();
    match words.next() {
        Some(wrapper) => {
            let mut all: Vec<&str> = words.collect();
            all.push(path(&program));
            all.extend(args);
            Process::spawn_echo(Path::new(wrapper), &all, &[], echo)
        }
        None => Process::spawn_echo(&program, args, &[], echo),
    }
}

/// Starts one ggrokd with `config` (file and socket named after `name` in `dir`) and waits until
/// its `tunnels` tunnels are online.
pub fn start_daemon(
    bin: &Path,
    dir: &Path,
    name: &str,
    config: &str,
    tunnels: usize,
) -> anyhow::Result<Process> {
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, config)?;
    let socket = dir.join(format!("{name}.sock"));
    let daemon = spawn(bin, "ggrokd", &["--config", path(&config_path), "--socket", path(&socket)]);
    daemon.wait_for_nth(&["tunnel online"], tunnels);
    Ok(daemon)
}

/// A running rathole: its server and client, one TCP service to the local service (and one to
/// the raw-TCP service, when asked for).
pub struct Rathole {
    pub server: Process,
    pub client: Process,
    pub target: Target,
    /// The address of the service to the raw-TCP service, when it was asked for.
    pub tcp: Option<SocketAddr>,
    _dir: tempfile::TempDir,
}

/// Starts a rathole server and client forwarding one port to `upstream` and, with `tcp` set, a
/// second port to that address; returns once an HTTP request (and a small TCP connection) crosses.
pub async fn start_rathole(
    rathole: &Path,
    upstream: SocketAddr,
    tcp: Option<SocketAddr>,
) -> anyhow::Result<Rathole> {
    let dir = tempfile::tempdir()?;
    let (control, service) = (free_port()?, free_port()?);
    let token = "bench-token-0123456789abcdef";
    let mut server_config = format!(
        "[server]\nbind_addr = \"127.0.0.1:{control}\"\n\n\
         [server.services.bench]\ntoken = \"{token}\"\nbind_addr = \"127.0.0.1:{service}\"\n"
    );
    let mut client_config = format!(
        "[client]\nremote_addr = \"127.0.0.1:{control}\"\n\n\
         [client.services.bench]\ntoken = \"{token}\"\nlocal_addr = \"{upstream}\"\n"
    );
    let tcp = match tcp {
        Some(local) => {
            let port = free_port()?;
            server_config +=
                &format!("\n[server.services.tcp]\ntoken = \"{token}\"\nbind_addr = \"127.0.0.1:{port}\"\n");
            client_config +=
                &format!("\n[client.services.tcp]\ntoken = \"{token}\"\nlocal_addr = \"{local}\"\n");
            Some(SocketAddr::from(([127, 0, 0, 1], port)))
        }
        None => None,
    };
    let (server_toml, client_toml) = (dir.path().join("server.toml"), dir.path().join("client.toml"));
    std::fs::write(&server_toml, server_config)?;
    std::fs::write(&client_toml, client_config)?;
    let env = [("RUST_LOG", "warn")];
    let server = Process::spawn_echo(rathole, &["--server", path(&server_toml)], &env, false);
    let client = Process::spawn_echo(rathole, &["--client", path(&client_toml)], &env, false);
    let target =
        Target { addr: SocketAddr::from(([127, 0, 0, 1], service)), host: "rathole.bench.test".into() };
    // Ready when a request crosses: a service port opens once the client's control channel is up.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let crossed = match tcp {
            Some(tcp) => super::tcp_load::ping(tcp, 0).await,
            None => Ok(()),
        };
        let crossed = match crossed {
            Ok(()) => super::load::small_requests(&target, 1, Duration::ZERO).await.map(drop),
            Err(e) => Err(e),
        };
        match crossed {
            Ok(()) => break,
            Err(e) if Instant::now() > deadline => {
                bail!("rathole did not come up: {e}\nserver: {}\nclient: {}", server.log(), client.log())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    Ok(Rathole { server, client, target, tcp, _dir: dir })
}

/// The rathole binary: `~/.cache/ggrok/bench-tools/bin/rathole` (`$XDG_CACHE_HOME` if set; else
/// `target/bench-tools` when there is no home), installed there with `cargo install` on first use,
/// so every clone and CI run shares one copy. Installed without `--locked`: its lockfile pins a
/// `time` that no longer compiles.
pub fn install_rathole(root: &Path) -> anyhow::Result<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")));
    let tools = match cache {
        Some(cache) => cache.join("ggrok/bench-tools"),
        None => root.join("target/bench-tools"),
    };
    let binary = tools.join("bin/rathole");
    let installed = Command::new(&binary)
        .arg("--version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(RATHOLE_VERSION));
    if !installed {
        eprintln!("installing rathole {RATHOLE_VERSION} into {} (once) ...", tools.display());
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["install", "--quiet", "rathole", "--version", RATHOLE_VERSION])
            .args(["--no-default-features", "--features", "server,client", "--root"])
            .arg(&tools)
            .status()?;
        if !status.success() {
            bail!("cargo install rathole {RATHOLE_VERSION} failed");
        }
    }
    Ok(binary)
}

/// A port nothing listens on now (rathole cannot report a port it chose itself).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}
