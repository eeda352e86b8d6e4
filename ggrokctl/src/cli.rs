//! The command line.

use clap::{Parser, Subcommand};
use ggrok_proto::ctl::{Command, HostHeader};
use ggrok_proto::local::{LocalAddr, LocalScheme};
use std::path::PathBuf;

const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  ggrokd refused the command (it says why); nothing changed
     (ready: ggrokd does not hold every server, replica and address yet)
  2  the command line is wrong (add: LOCAL is checked before ggrokd is asked)
  3  ggrokd is not running, or its control socket cannot be used

Examples:
  ggrokctl add api.example.com 8080
  ggrokctl add myapp 8080          (myapp.<your domain>, when the server gives your client one)
  ggrokctl add 8080                (a random name under your domain, saved so it stays)
  ggrokctl add app.example.com http://localhost:5173 --rewrite-host
  ggrokctl add grpc.example.com h2c://localhost:50051      (gRPC without TLS)
  ggrokctl add demo.example.com 3000 --basic-auth guest:letmein --allow-ip 203.0.113.0/24
  ggrokctl add demo.example.com 3000 --basic-auth guest      (asks for the password)
  ggrokctl add --tcp 5432          (any public port the server picks, to local port 5432)
  ggrokctl add --tcp 20022 22
  ggrokctl add --tcp 5432 5432 --proxy-protocol
  ggrokctl list
  ggrokctl status --json
  ggrokctl logs -f api.example.com
  ggrokctl ready --wait 30
  ggrokctl replay 42
  ggrokctl remove api.example.com
  ggrokctl remove --tcp 20022";

/// Control a running ggrokd: add, remove and list tunnels, show status and requests.
///
/// ggrokctl talks to ggrokd over its control socket. Changes take effect at once and are written
/// back to ggrokd.toml (keeping your comments), unless --no-save is given.
#[derive(Parser)]
#[command(name = "ggrokctl", version, about, long_about, after_help = EXIT_CODES)]
pub struct Cli {
    /// Control socket [default: $GGROK_SOCKET, else $XDG_RUNTIME_DIR/ggrok/ggrokd.sock, else /tmp/ggrok-$UID/ggrokd.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print one JSON document instead of text, for scripts (logs: one JSON object per line;
    /// errors ggrokctl finds itself, exit 2 and 3, stay text on stderr)
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Subcommand)]
pub enum Sub {
    /// Start a tunnel now and save it to ggrokd.toml.
    ///
    /// Example: ggrokctl add api.example.com 8080
    ///
    /// When the server gives your client a domain (`domain` of its [[client]]), a bare name is a
    /// host under it (ggrokctl add myapp 8080: myapp.alice.example.com), and without a name the
    /// tunnel gets a random one under it (ggrokctl add 8080), saved to ggrokd.toml so it stays.
    /// A name another client holds is refused, never replaced by another. The public URL the
    /// server gives is printed.
    ///
    /// With --tcp, a TCP tunnel: ggrokctl add --tcp [PORT] LOCAL, where PORT is the public port
    /// on the server (left out or 0: any port of yours the server picks; the port granted is
    /// printed and saved to ggrokd.toml) and LOCAL a port or host:port.
    ///
    /// The tunnel is claimed on the server at once; the command waits (up to 5 s) for the server
    /// to accept it and fails, changing nothing, if the server refuses the host or port. With no
    /// connection to the server up, it is saved and goes online once one is; the command then
    /// says why none is (the last connection error, such as a token the server refuses).
    ///
    /// LOCAL is checked here, before ggrokd is asked: one that is not a port, host:port or
    /// http(s)/h2c URL is a wrong command line (exit 2).
    ///
    /// Access rules, enforced by the server before anything reaches your service: --basic-auth
    /// asks visitors for a user and password (401 until they give one; the password is hashed
    /// with argon2id here, and only the hash is sent to ggrokd and saved; --basic-auth USER alone
    /// asks for the password on the terminal, twice and without echo, or reads it as a line of
    /// standard input, so it stays out of the shell's history and the process list); --allow-ip lets in only
    /// the addresses or networks given, --deny-ip turns those given away (403). Each may be given
    /// several times.
    #[command(
        override_usage = "ggrokctl add [OPTIONS] [HOST|NAME] <LOCAL>\n       ggrokctl add --tcp [OPTIONS] [PORT] <LOCAL>",
        allow_missing_positional = true
    )]
    Add {
        /// Public host name, a pattern like *.example.com, or a bare NAME under your domain; left
        /// out: a random name under your domain. With --tcp, the public PORT (left out or 0: any
        /// port the server picks)
        #[arg(value_name = "HOST|NAME|PORT")]
        host: Option<String>,
        /// Local service: a port (8080, on localhost), host:port, http://host:port, https://host:port
        /// (its certificate verified against the system roots, or see --ca-file and
        /// --tls-skip-verify) or h2c://host:port (HTTP/2 without TLS, for gRPC). With --tcp: a port
        /// or host:port, without a scheme
        local: String,
        /// A TCP tunnel: a public port of the server to a local port
        #[arg(long, conflicts_with = "rewrite_host")]
        tcp: bool,
        /// Send the local address as Host instead of the public host (dev servers like Vite need it)
        #[arg(long)]
        rewrite_host: bool,
        /// Keep the tunnel only until ggrokd restarts; do not write ggrokd.toml
        #[arg(long)]
        no_save: bool,
        /// Ask visitors for this user and password (HTTP Basic); only a hash is saved. Repeatable
        #[arg(long = "basic-auth", value_name = "USER[:PASSWORD]", conflicts_with = "tcp")]
        basic_auth: Vec<String>,
        /// Let in only clients from this address or network (203.0.113.0/24). Repeatable
        #[arg(long = "allow-ip", value_name = "CIDR")]
        allow_ip: Vec<String>,
        /// Turn away clients from this address or network, whatever --allow-ip says. Repeatable
        #[arg(long = "deny-ip", value_name = "CIDR")]
        deny_ip: Vec<String>,
        /// With --tcp: send the local service a PROXY protocol v2 header naming the public client
        #[arg(long, requires = "tcp")]
        proxy_protocol: bool,
        /// An https:// local service: verify its certificate against this CA file
        #[arg(long, value_name = "PATH", conflicts_with_all = ["tcp", "tls_skip_verify"])]
        ca_file: Option<PathBuf>,
        /// An https:// local service: accept any certificate (a self-signed development one)
        #[arg(long, conflicts_with = "tcp")]
        tls_skip_verify: bool,
    },
    /// Print a basic_auth entry (USER:HASH, argon2id) for ggrokd.toml, reading the password from stdin.
    ///
    /// Example: ggrokctl hash-password alice   (then type the password and Enter)
    ///
    /// The first line of standard input is the password; the line printed goes into a tunnel's
    /// basic_auth list. With --json: {"user": USER, "entry": "USER:$argon2id$..."}. Needs no
    /// running ggrokd.
    HashPassword {
        /// The user name
        user: String,
    },
    /// Stop a tunnel and remove it from ggrokd.toml.
    ///
    /// Example: ggrokctl remove api.example.com (a TCP tunnel: ggrokctl remove --tcp 20022)
    #[command(
        override_usage = "ggrokctl remove [OPTIONS] <HOST>\n       ggrokctl remove [OPTIONS] --tcp <PORT>"
    )]
    Remove {
        /// Public host name or pattern, as added
        #[arg(required_unless_present = "tcp")]
        host: Option<String>,
        /// The TCP tunnel of this public port
        #[arg(long, value_name = "PORT", conflicts_with = "host")]
        tcp: Option<u16>,
        /// Stop it only until ggrokd restarts; leave ggrokd.toml as it is
        #[arg(long)]
        no_save: bool,
    },
    /// List tunnels with their state, requests, 4xx and 5xx answers, requests in flight, last error.
    ///
    /// Example: ggrokctl list
    ///
    /// Under the table, one line per server ggrokd has no connection up to, with the last
    /// connection error (why tunnels stay connecting); --json has them under servers_down.
    List,
    /// Show the daemon (version, uptime, config, server, the inspector's URL), each of its connections, and every tunnel's traffic.
    ///
    /// Example: ggrokctl status
    ///
    /// Per server (with several in ggrokd.toml, or once a server names its replica): its state,
    /// its connections up, whether it is retrying, and the replicas held of those seen there.
    ///
    /// Per connection: the server, the replica and worker it reached, the transport (websocket or
    /// raw), its state and since when, the requests it carried, and while it is down its failed
    /// attempts, when it tries next and its last error.
    ///
    /// Per tunnel: requests, 4xx and 5xx answers, requests the local service could not be reached
    /// for, body bytes in and out, requests in flight (open WebSockets included), and the median
    /// and 99th percentile duration of its latest 1,000 requests.
    Status,
    /// Show the latest requests across all tunnels, or follow them live.
    ///
    /// Example: ggrokctl logs -f api.example.com
    ///
    /// One line per request, when it completes: time, status, method, duration (to the end of the
    /// response body), request and response body bytes, the public client's address, host and
    /// path. A WebSocket (or other upgraded connection) is one line, when it closes, with its
    /// lifetime and the bytes each way; so is a TCP tunnel's connection (method TCP, host
    /// tcp:PORT, marked [tcp]). ggrokd keeps the latest `request_log` requests (default
    /// 1000). A follower that cannot keep up is told how many requests it skipped. A listing
    /// that finds none says so; -n 0 prints nothing.
    Logs {
        /// Only requests for this host, for the hosts matching a *.pattern, or of tcp:PORT
        host: Option<String>,
        /// Keep printing requests as they complete, until interrupted
        #[arg(short, long)]
        follow: bool,
        /// How many of the latest requests to print first: a number, or "all"
        #[arg(short = 'n', long = "lines", value_name = "N", default_value = "20")]
        lines: Count,
    },
    /// Re-read ggrokd.toml and apply only what changed (as SIGHUP does).
    ///
    /// Example: ggrokctl reload
    ///
    /// Tunnels that did not change keep serving, requests in flight included.
    Reload,
    /// Replay a request the inspector captured to its tunnel's local service, and print the answer.
    ///
    /// Example: ggrokctl replay 42
    ///
    /// The request goes as it was captured (method, path, headers, body) straight to the local
    /// service, not through the server, and appears in the inspector marked as a replay. A request
    /// whose body was cut at inspect_body_limit is not replayed (edit it in the inspector's page).
    /// IDs are those of the inspector (http://127.0.0.1:4040, or its API /api/requests).
    Replay {
        /// The request's id
        id: u64,
    },
    /// Say whether ggrokd holds every server, replica and address it knows of (exit 0) or not (1).
    ///
    /// Example: ggrokctl ready --wait 30
    ///
    /// Ready means: a connection up to every server of ggrokd.toml, to every replica seen behind
    /// each (`[cluster] replica` of the servers), and with `replicas = "all"` to every address
    /// each server's name resolves to. Not ready, it prints what is missing, with the last error
    /// of the connections down. For readiness probes (Kubernetes `exec`) and deploy scripts.
    Ready {
        /// Wait up to this many seconds for it to become ready, asking every 0.2 s
        #[arg(long, value_name = "SECS", value_parser = wait_secs)]
        wait: Option<std::time::Duration>,
    },
    /// Print a shell completion script.
    ///
    /// Example: ggrokctl completions bash > ~/.local/share/bash-completion/completions/ggrokctl
    ///
    /// With --json: {"shell": SHELL, "script": SCRIPT}.
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

impl Sub {
    /// The command for ggrokd, or what is wrong with the command line (checked here, so that a
    /// wrong LOCAL is a usage error whether or not ggrokd runs).
    pub fn add_or_remove(self) -> Result<Command, String> {
        match self {
            Sub::Add {
                host,
                local,
                tcp: false,
                rewrite_host,
                no_save,
                basic_auth,
                allow_ip,
                deny_ip,
                ca_file,
                tls_skip_verify,
                ..
            } => {
                let parsed = LocalAddr::parse(&local).map_err(|e| match &host {
                    // `ggrokctl add myapp`: a name, and the local service left out.
                    None if !local.contains(':') && !local.bytes().all(|b| b.is_ascii_digit()) => format!(
                        "the local service is missing: ggrokctl add {local} LOCAL (or ggrokctl add LOCAL \
                         for a random name under your domain)"
                    ),
                    _ => e,
                })?;
                if parsed.scheme != LocalScheme::Https {
                    let flag = ca_file
                        .as_ref()
                        .map(|_| "--ca-file")
                        .or(tls_skip_verify.then_some("--tls-skip-verify"));
                    if let Some(flag) = flag {
                        return Err(format!(
                            "{flag}: applies to https:// local services only, not {local:?}"
                        ));
                    }
                }
                let basic_auth = basic_auth
                    .iter()
                    .map(|e| crate::password::basic_auth_entry(e, crate::password::ask))
                    .collect::<Result<_, _>>()?;
                Ok(Command::Add {
                    // Left out: a random name under the client's domain.
                    host: host.unwrap_or_default(),
                    local,
                    host_header: rewrite_host.then_some(HostHeader::Rewrite),
                    save: !no_save,
                    basic_auth,
                    allow_ips: allow_ip,
                    deny_ips: deny_ip,
                    proxy_protocol: false,
                    // ggrokd runs elsewhere: the path as an absolute one, checked here.
                    ca_file: match ca_file {
                        Some(path) => Some(
                            std::fs::canonicalize(&path)
                                .map_err(|e| format!("--ca-file {}: {e}", path.display()))?
                                .display()
                                .to_string(),
                        ),
                        None => None,
                    },
                    tls_skip_verify,
                })
            }
            Sub::Add { host, local, tcp: true, no_save, allow_ip, deny_ip, proxy_protocol, .. } => {
                let port = match host {
                    Some(port) => port.parse::<u16>().map_err(|_| {
                        format!("{port:?}: expected a port from 0 to 65535 (0: any the server picks)")
                    })?,
                    None => 0,
                };
                LocalAddr::parse_tcp(&local)?;
                Ok(Command::Add {
                    host: format!("tcp:{port}"),
                    local,
                    host_header: None,
                    save: !no_save,
                    basic_auth: vec![],
                    allow_ips: allow_ip,
                    deny_ips: deny_ip,
                    proxy_protocol,
                    ca_file: None,
                    tls_skip_verify: false,
                })
            }
            Sub::Remove { host, tcp, no_save } => {
                let host = match tcp {
                    Some(port) => format!("tcp:{port}"),
                    None => host.ok_or("give the tunnel's host, or --tcp PORT")?,
                };
                Ok(Command::Remove { host, save: !no_save })
            }
            _ => Err("not add or remove".into()),
        }
    }
}

/// `--wait`: seconds, from 0 to a day.
fn wait_secs(s: &str) -> Result<std::time::Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|n| (0.0..=86_400.0).contains(n))
        .map(std::time::Duration::from_secs_f64)
        .ok_or_else(|| format!("{s:?}: expected seconds, from 0 to 86400"))
}

/// A number of requests, or all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count(pub Option<u64>);

impl std::str::FromStr for Count {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("all") {
            return Ok(Self(None));
        }
        s.parse().map(|n| Self(Some(n))).map_err(|_| format!("{s:?} is not a number (or \"all\")"))
    }
}

#[cfg(test)]
mod tests;
