//! `cargo xtask bench`: ggrok against a direct connection and against rathole, side by side in one
//! run on loopback, in front of one local service ([`upstream`]). Rounds interleave the paths
//! (direct, ggrok, rathole, direct, …) so the machine's drift hits all of them alike; the report
//! gives per-path medians with their spread and the ratios ggrok/direct and ggrok/rathole, each
//! the median of the per-round ratios. It prints figures and never asserts a speed.
//!
//! Measured: small requests (req/s, p50, p99), one 1 GiB stream each way (MB/s), WebSocket round
//! trips, TCP tunnels ([`tcp`]: one stream each way and many small connections to a raw-TCP
//! service, [`tcp_service`]), the memory of ggrok-server and ggrokd (idle with 10 tunnels, peak
//! under each load, after each round), and a server holding 1,000 hosts over 100 ggrokd sessions.
//! The part `wrk` ([`wrk`]) measures small requests again with the tools users measure with, wrk,
//! against nginx as the local service.

mod load;
mod memory;
mod paths;
mod report;
mod stalled;
mod tcp;
mod tcp_load;
mod tcp_service;
mod upstream;
mod wrk;

use anyhow::{Context, bail};
use ggrok_tests::process::Process;
use load::Target;
use report::Report;
use std::path::Path as FsPath;
use std::process::Command;
use std::time::Duration;

const USAGE: &str = "usage: cargo xtask bench [--smoke] [--rounds R] [--seconds S] [--connections N] \
     [--bulk-mib M] [--only small|bulk|websocket|tcp|memory|stalled|wrk] [--compare DIR] [--two-tunnels] [--inspector-cost] [--budget-cost]";

/// Settings of one run.
pub struct Plan {
    pub smoke: bool,
    pub rounds: usize,
    pub duration: Duration,
    pub connections: usize,
    pub bulk_bytes: u64,
    pub ws_messages: usize,
    pub tunnels: usize,
    pub sessions: usize,
    pub hosts_each: usize,
    /// Downloads that read nothing, held open beside one bulk download (the part `stalled`).
    pub stalled: usize,
    /// Run only this part (for profiling one of them).
    pub only: Option<String>,
    /// A directory with another build of ggrok-server and ggrokd, measured as the path
    /// `baseline` beside this one (the cost of a change, side by side).
    pub compare: Option<std::path::PathBuf>,
    /// Also measure small requests over two independent ggrok-server/ggrokd pairs, the
    /// connections split between them (the path `ggrok×2`): a model of a design with one
    /// server thread and one ggrokd thread per tunnel connection.
    pub two_tunnels: bool,
    /// Also measure ggrok with `inspect = "off"` (the path `insp-off`), beside ggrok with its
    /// default inspector capturing: the inspector's cost, side by side.
    pub inspector_cost: bool,
    /// Also measure ggrok with `buffer_memory` at its largest on both ends (the path `no-budget`):
    /// windows always 4 MiB and 256 KiB reads on every connection; the budget's cost, side by side.
    pub budget_cost: bool,
}

impl Plan {
    fn full() -> Self {
        Self {
            smoke: false,
            rounds: 3,
            duration: Duration::from_secs(10),
            connections: 64,
            bulk_bytes: 1 << 30,
            ws_messages: 2000,
            tunnels: 10,
            sessions: 100,
            hosts_each: 10,
            stalled: 200,
            only: None,
            compare: None,
            two_tunnels: false,
            inspector_cost: false,
            budget_cost: false,
        }
    }

    /// A run of a few seconds on debug builds: checks that every part still works.
    fn smoke() -> Self {
        Self {
            smoke: true,
            rounds: 1,
            duration: Duration::from_millis(300),
            connections: 4,
            bulk_bytes: 16 << 20,
            ws_messages: 20,
            tunnels: 10,
            sessions: 4,
            hosts_each: 3,
            stalled: 20,
            only: None,
            compare: None,
            two_tunnels: true,
            inspector_cost: true,
            budget_cost: true,
        }
    }

    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut plan = if args.iter().any(|a| a == "--smoke") { Self::smoke() } else { Self::full() };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || -> anyhow::Result<u64> {
                let v = it.next().with_context(|| format!("{arg} needs a value; {USAGE}"))?;
                v.parse().with_context(|| format!("{arg} {v}: not a number; {USAGE}"))
            };
            match arg.as_str() {
                "--smoke" => {}
                "--two-tunnels" => plan.two_tunnels = true,
                "--inspector-cost" => plan.inspector_cost = true,
                "--budget-cost" => plan.budget_cost = true,
                "--rounds" => plan.rounds = value()?.max(1) as usize,
                "--seconds" => plan.duration = Duration::from_secs(value()?.max(1)),
                "--connections" => plan.connections = value()?.max(1) as usize,
                "--bulk-mib" => plan.bulk_bytes = value()?.max(1) << 20,
                "--only" => match it.next().map(String::as_str) {
                    Some(part @ ("small" | "bulk" | "websocket" | "tcp" | "memory" | "stalled" | "wrk")) => {
                        plan.only = Some(part.into())
                    }
                    _ => bail!("--only takes small, bulk, websocket, tcp, memory, stalled or wrk; {USAGE}"),
                },
                "--compare" => {
                    let dir = it.next().with_context(|| format!("--compare needs a directory; {USAGE}"))?;
                    plan.compare =
                        Some(std::fs::canonicalize(dir).with_context(|| format!("--compare {dir}"))?);
                }
                other => bail!("unknown option {other:?}; {USAGE}"),
            }
        }
        Ok(plan)
    }

    /// Whether this run measures `part`.
    fn runs(&self, part: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == part)
    }
}

/// Parses the options, builds the binaries (release; debug for `--smoke`), installs rathole, and
/// runs.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let plan = Plan::parse(args)?;
    let root = FsPath::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace root")?.to_owned();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let profile = if plan.smoke { "debug" } else { "release" };
    eprintln!("building ggrok-server and ggrokd ({profile}) ...");
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "-p", "ggrok-server", "-p", "ggrokd"]).current_dir(&root);
    if !plan.smoke {
        build.arg("--release");
    }
    if !build.status()?.success() {
        bail!("cargo build failed");
    }
    let rathole = paths::install_rathole(&root)?;
    measure(&root.join("target").join(profile), &rathole, &plan)
}

#[tokio::main]
async fn measure(bin: &FsPath, rathole: &FsPath, plan: &Plan) -> anyhow::Result<()> {
    let mut report = Report::new(plan);
    if plan.only.as_deref() != Some("wrk") {
        measure_own(bin, rathole, plan, &mut report).await?;
    }
    if plan.runs("wrk") {
        eprintln!("wrk against nginx, directly and through ggrok and rathole ...");
        report.wrk = Some(wrk::measure(bin, rathole, plan).await?);
    }
    report.print(&machine());
    Ok(())
}

/// The benchmark's own parts: its own load and local service ([`load`], [`upstream`]).
async fn measure_own(bin: &FsPath, rathole: &FsPath, plan: &Plan, report: &mut Report) -> anyhow::Result<()> {
    let upstream = upstream::start().await?;
    // The raw-TCP service and the tunnels to it only when the part `tcp` runs, so that the other
    // parts' figures (idle memory above all) stay those of the HTTP tunnels alone.
    let tcp_service = match plan.runs("tcp") {
        true => Some(tcp_service::start().await?),
        false => None,
    };
    let ggrok = paths::start_ggrok_with(bin, upstream, plan.tunnels, true, tcp_service, false)?;
    let rathole = paths::start_rathole(rathole, upstream, tcp_service).await?;
    let direct = Target { addr: upstream, host: "direct.bench.test".into() };
    let baseline = match &plan.compare {
        Some(dir) => Some(paths::start_ggrok(dir, upstream, plan.tunnels)?),
        None => None,
    };
    let uninspected = match plan.inspector_cost {
        true => Some(paths::start_ggrok_with(bin, upstream, plan.tunnels, false, None, false)?),
        false => None,
    };
    let unbudgeted = match plan.budget_cost {
        true => Some(paths::start_ggrok_with(bin, upstream, plan.tunnels, true, None, true)?),
        false => None,
    };
    let second = match plan.two_tunnels && plan.runs("small") {
        true => Some(paths::start_ggrok(bin, upstream, plan.tunnels)?),
        false => None,
    };
    let both = second.as_ref().map(|second| [ggrok.target.clone(), second.target.clone()]);
    fn path<'a>(name: &'static str, targets: &'a [Target], processes: Vec<&'a Process>) -> Path<'a> {
        Path { name, targets, processes }
    }
    let mut paths = vec![
        path("direct", std::slice::from_ref(&direct), vec![]),
        path("ggrok", std::slice::from_ref(&ggrok.target), vec![&ggrok.server, &ggrok.daemon]),
        path("rathole", std::slice::from_ref(&rathole.target), vec![&rathole.server, &rathole.client]),
    ];
    if let Some(b) = &baseline {
        paths.push(path("baseline", std::slice::from_ref(&b.target), vec![&b.server, &b.daemon]));
    }
    if let Some(u) = &uninspected {
        paths.push(path("insp-off", std::slice::from_ref(&u.target), vec![&u.server, &u.daemon]));
    }
    if let Some(u) = &unbudgeted {
        paths.push(path("no-budget", std::slice::from_ref(&u.target), vec![&u.server, &u.daemon]));
    }
    if let (Some(second), Some(both)) = (&second, &both) {
        let processes = vec![&ggrok.server, &ggrok.daemon, &second.server, &second.daemon];
        paths.push(path("ggrok×2", both, processes));
    }
    // The part `tcp` measures direct, ggrok and rathole only (not baseline, insp-off, no-budget or
    // ggrok×2).
    let tcp_paths: Vec<tcp::TcpPath> = match (tcp_service, ggrok.tcp, rathole.tcp) {
        (Some(direct), Some(through_ggrok), Some(through_rathole)) => vec![
            tcp::TcpPath { name: "direct", addr: direct, processes: vec![] },
            tcp::TcpPath {
                name: "ggrok",
                addr: through_ggrok,
                processes: vec![&ggrok.server, &ggrok.daemon],
            },
            tcp::TcpPath {
                name: "rathole",
                addr: through_rathole,
                processes: vec![&rathole.server, &rathole.client],
            },
        ],
        _ => vec![],
    };
    report.idle = (ggrok.server.rss_kib(), ggrok.daemon.rss_kib());
    tcp::probe(&tcp_paths).await?;
    let rathole_idle = (rathole.server.rss_kib(), rathole.client.rss_kib());
    let watched = [&ggrok.server, &ggrok.daemon];
    let bulk_gb = plan.bulk_bytes as f64 / 1e9;
    for round in 0..plan.rounds {
        eprintln!("round {} of {} ...", round + 1, plan.rounds);
        for path in paths.iter().filter(|_| plan.runs("small")) {
            let cpu = path.start(&watched);
            let machine = machine_ticks();
            let rate = load::small_requests_spread(path.targets, plan.connections, plan.duration).await?;
            report.busy_small.entry(path.name).push(busy_since(machine));
            report.small.entry(path.name).push(rate);
            report.cpu_small.entry(path.name).push(path.cpu_since(cpu) * 1e6 / rate.count as f64);
            report.peak(path.name, "small requests", &watched);
        }
        for path in paths.iter().filter(|p| plan.runs("bulk") && p.targets.len() == 1) {
            let cpu = path.start(&watched);
            let rate = load::download(&path.targets[0], plan.bulk_bytes).await?;
            report.download.entry(path.name).push(rate);
            report.cpu_download.entry(path.name).push(path.cpu_since(cpu) / bulk_gb);
            report.peak(path.name, "download", &watched);
        }
        for path in paths.iter().filter(|p| plan.runs("bulk") && p.targets.len() == 1) {
            let cpu = path.start(&watched);
            let rate = load::upload(&path.targets[0], plan.bulk_bytes).await?;
            report.upload.entry(path.name).push(rate);
            report.cpu_upload.entry(path.name).push(path.cpu_since(cpu) / bulk_gb);
            report.peak(path.name, "upload", &watched);
        }
        for path in paths.iter().filter(|p| plan.runs("websocket") && p.targets.len() == 1) {
            let (p50, p99) = load::websocket_round_trips(&path.targets[0], plan.ws_messages).await?;
            report.websocket.entry(path.name).push((p50, p99));
        }
        tcp::round(&tcp_paths, plan, report, &watched).await?;
        report.after.push((ggrok.server.rss_kib(), ggrok.daemon.rss_kib()));
    }
    if plan.runs("stalled") {
        eprintln!("{} stalled downloads beside one bulk download ...", plan.stalled);
        for path in paths.iter().filter(|p| p.targets.len() == 1 && p.processes.len() == 2) {
            let processes = [path.processes[0], path.processes[1]];
            let target = &path.targets[0];
            let figures =
                stalled::measure(path.name, target, processes, plan.stalled, plan.bulk_bytes).await?;
            report.stalled.push(figures);
        }
    }
    drop((paths, tcp_paths));
    report.rathole = [rathole_idle, (rathole.server.peak_rss_kib(), rathole.client.peak_rss_kib())];
    ggrok.stop();
    if let Some(second) = second {
        second.stop();
    }
    drop((rathole, baseline, uninspected, unbudgeted));
    if plan.runs("memory") {
        eprintln!("{} ggrokd sessions with {} hosts each ...", plan.sessions, plan.hosts_each);
        report.many = Some(memory::many_hosts(bin, upstream, plan.sessions, plan.hosts_each).await?);
    }
    Ok(())
}

/// One way to the local service, and the tunnel processes on it.
struct Path<'a> {
    name: &'static str,
    /// Where the load goes; connections are spread over several.
    targets: &'a [Target],
    processes: Vec<&'a Process>,
}

impl Path<'_> {
    /// Before a measurement: starts a new memory peak for the `watched` processes and returns the
    /// CPU time this path's processes have used so far.
    fn start(&self, watched: &[&Process; 2]) -> f64 {
        watched.iter().for_each(|p| p.reset_peak_rss());
        self.cpu_seconds()
    }

    /// CPU seconds this path's processes used since `start` returned `before`.
    fn cpu_since(&self, before: f64) -> f64 {
        self.cpu_seconds() - before
    }

    /// User plus system time of the processes (`/proc/PID/stat`), in seconds.
    fn cpu_seconds(&self) -> f64 {
        self.processes.iter().map(|p| cpu_seconds(p.pid())).sum()
    }
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; 100 ticks a second
    // (USER_HZ, fixed at 100 on Linux).
    (ticks(11) + ticks(12)) / 100.0
}

/// Busy and total CPU ticks of the whole machine (`/proc/stat`).
fn machine_ticks() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: f64 = ticks.iter().sum();
    // idle and iowait are the fourth and fifth.
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}

/// The share of the machine's CPU that was busy since `before`, in percent: under 100 means the
/// path was limited by waiting (latency), not by CPU.
fn busy_since(before: (f64, f64)) -> f64 {
    let now = machine_ticks();
    100.0 * (now.0 - before.0) / (now.1 - before.1).max(1.0)
}

/// The CPU model and core count, for the report's first line.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores")
}
