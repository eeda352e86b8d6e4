//! The `wrk` part: small requests measured with the tools users measure with, beside the
//! benchmark's own load and service. The local service is nginx (Debian's `nginx-light`, started
//! from a temporary directory) answering every `GET` with 100 bytes; the load is `wrk -t2 -cN -dS
//! --latency`. Three paths, interleaved in each round: nginx directly, through ggrok (its own
//! ggrok-server and ggrokd, the tunnels' local service nginx) and through rathole (the same).
//! Missing tools skip the part with a line saying so; `.ci/setup` installs them.

use super::Plan;
use super::load::Target;
use super::paths;
use super::report::{ByPath, cpu, target};
use anyhow::{Context, bail, ensure};
use ggrok_tests::process::Process;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What nginx answers to every request: exactly 100 bytes, like the benchmark's `/bytes/100`.
const BODY: &str =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyzAB";

/// One wrk measurement of one path.
#[derive(Clone, Copy, Debug)]
pub struct WrkRun {
    pub requests: u64,
    pub per_second: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Responses with another status than 2xx or 3xx.
    pub non_2xx: u64,
    /// wrk's socket errors: connect, read, write and timeout, summed.
    pub socket_errors: u64,
}

/// What the part measured, or why it did not run.
pub enum Outcome {
    Skipped(String),
    Measured(Figures),
}

pub struct Figures {
    /// The command line (without the URL), for the report.
    command: String,
    versions: String,
    rounds: usize,
    smoke: bool,
    runs: ByPath<WrkRun>,
    /// CPU time of the tunnel's own processes per request, in µs.
    cpu: ByPath<f64>,
    /// How busy the whole machine was during each measurement, in percent.
    busy: ByPath<f64>,
}

const PATHS: [&str; 3] = ["direct", "ggrok", "rathole"];

/// Runs the part: nginx, ggrok and rathole in front of it, `plan.rounds` rounds of wrk on each
/// path, interleaved. `plan.duration` is rounded down to whole seconds (at least 1; wrk takes no
/// less), so a smoke run measures 1 s.
pub async fn measure(bin: &Path, rathole_bin: &Path, plan: &Plan) -> anyhow::Result<Outcome> {
    let (wrk, nginx_bin) = match (find("wrk"), find("nginx")) {
        (Some(wrk), Some(nginx)) => (wrk, nginx),
        (wrk, nginx) => {
            let missing: Vec<&str> = [("wrk", wrk.is_none()), ("nginx", nginx.is_none())]
                .into_iter()
                .filter_map(|(name, missing)| missing.then_some(name))
                .collect();
            let why = format!(
                "{} not found (in PATH or /usr/sbin); `bash .ci/setup` as root installs them \
                 (apt-get install wrk nginx-light)",
                missing.join(" and ")
            );
            eprintln!("wrk part SKIPPED: {why}");
            return Ok(Outcome::Skipped(why));
        }
    };
    let nginx = Nginx::start(&nginx_bin)?;
    let ggrok = paths::start_ggrok(bin, nginx.addr, plan.tunnels)?;
    let rathole = paths::start_rathole(rathole_bin, nginx.addr, None).await?;
    let direct = Target { addr: nginx.addr, host: "direct.bench.test".into() };
    // Each path answers with nginx's 100 bytes before it is measured (the probe checks the length).
    for t in [&direct, &ggrok.target] {
        super::load::small_requests(t, 1, Duration::ZERO)
            .await
            .with_context(|| format!("probe {}", t.host))?;
    }
    let paths: [(&str, &Target, Vec<&Process>); 3] = [
        ("direct", &direct, vec![]),
        ("ggrok", &ggrok.target, vec![&ggrok.server, &ggrok.daemon]),
        ("rathole", &rathole.target, vec![&rathole.server, &rathole.client]),
    ];
    let threads = plan.connections.min(2);
    let seconds = plan.duration.as_secs().max(1);
    let mut figures = Figures {
        command: format!(
            "wrk -t{threads} -c{} -d{seconds}s --latency -H 'Host: <path's host>'",
            plan.connections
        ),
        versions: versions(&wrk, &nginx_bin),
        rounds: plan.rounds,
        smoke: plan.smoke,
        runs: ByPath::default(),
        cpu: ByPath::default(),
        busy: ByPath::default(),
    };
    for round in 0..plan.rounds {
        eprintln!("wrk round {} of {} ...", round + 1, plan.rounds);
        for (name, target, processes) in &paths {
            let cpu_seconds = || processes.iter().map(|p| super::cpu_seconds(p.pid())).sum::<f64>();
            let (cpu_before, machine) = (cpu_seconds(), super::machine_ticks());
            let (wrk, target) = (wrk.clone(), (*target).clone());
            let connections = plan.connections;
            let run =
                tokio::task::spawn_blocking(move || run_wrk(&wrk, &target, threads, connections, seconds))
                    .await??;
            figures.busy.entry(name).push(super::busy_since(machine));
            figures.cpu.entry(name).push((cpu_seconds() - cpu_before) * 1e6 / run.requests.max(1) as f64);
            figures.runs.entry(name).push(run);
            eprintln!(
                "  {name:<8} {:>9.0} req/s  p50 {:.2} ms  p99 {:.2} ms  {}",
                run.per_second,
                run.p50_us / 1e3,
                run.p99_us / 1e3,
                errors(&run)
            );
        }
    }
    drop(paths);
    ggrok.stop();
    drop(rathole);
    drop(nginx);
    Ok(Outcome::Measured(figures))
}

/// nginx serving [`BODY`] on a free loopback port, from a temporary directory. Stopped with
/// SIGTERM when dropped (a SIGKILL to the master would leave its worker running).
struct Nginx {
    process: Option<Process>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn start(nginx: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let d = dir.path().to_str().context("UTF-8 temporary path")?;
        // A port nothing listens on now; nginx cannot report a port it chose itself.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // As root, the master would run its worker as `nobody`; keep it root (the directory is
        // root's alone).
        let user = if effective_uid() == Some(0) { "user root;\n" } else { "" };
        let conf = format!(
            "{user}worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             keepalive_requests 1000000;\n  keepalive_timeout 75s;\n  \
             server {{\n    listen {addr};\n    default_type text/plain;\n    \
             location / {{ return 200 \"{BODY}\"; }}\n  }}\n}}\n"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let conf_path = conf_path.to_str().context("UTF-8 temporary path")?;
        let args = ["-p", d, "-e", &format!("{d}/error.log"), "-c", conf_path, "-g", "daemon off;"];
        let process = Process::spawn_echo(nginx, &args, &[], false);
        let nginx = Self { process: Some(process), addr, dir };
        // Ready when the port accepts a connection.
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
            if Instant::now() > deadline {
                bail!("nginx did not listen on {addr} within 20 s; {}", nginx.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }

    fn logs(&self) -> String {
        let error_log = std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
        let stderr = self.process.as_ref().map(Process::log).unwrap_or_default();
        format!("its stderr:\n{stderr}\nits error.log:\n{error_log}")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(process) = self.process.take() {
            process.terminate();
        }
    }
}

/// The effective user id, from `/proc/self/status` (`Uid: real effective saved fs`).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// `name` in `PATH`, or in /usr/sbin and /usr/local/sbin (nginx's place, not in every user's PATH).
fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// "nginx 1.22.1, wrk 4.1.0" from their version output (both print it to a different stream).
fn versions(wrk: &Path, nginx: &Path) -> String {
    let output = |program: &Path, arg: &str| {
        Command::new(program).arg(arg).output().map_or(String::new(), |out| {
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
        })
    };
    let nginx = output(nginx, "-v");
    let nginx = nginx.split("nginx/").nth(1).and_then(|v| v.split_whitespace().next()).unwrap_or("?");
    let wrk = output(wrk, "-v");
    let wrk = wrk.strip_prefix("wrk ").and_then(|v| v.split_whitespace().next()).unwrap_or("?");
    format!("nginx {nginx}, wrk {wrk}")
}

/// One run of wrk against `target`, parsed.
fn run_wrk(
    wrk: &Path,
    target: &Target,
    threads: usize,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<WrkRun> {
    let out = Command::new(wrk)
        .args([format!("-t{threads}"), format!("-c{connections}"), format!("-d{seconds}s")])
        .args(["--latency", "-H", &format!("Host: {}", target.host), &format!("http://{}/", target.addr)])
        .output()
        .with_context(|| format!("running {}", wrk.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "wrk against {} failed ({}): {stdout}{}",
        target.host,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    parse(&stdout).with_context(|| format!("wrk's output against {}:\n{stdout}", target.host))
}

/// Reads wrk 4's report: `N requests in`, `Requests/sec:`, the 50% and 99% lines of `Latency
/// Distribution`, and the error lines it prints only when there were errors.
pub fn parse(output: &str) -> anyhow::Result<WrkRun> {
    let mut run = WrkRun {
        requests: 0,
        per_second: f64::NAN,
        p50_us: f64::NAN,
        p99_us: f64::NAN,
        non_2xx: 0,
        socket_errors: 0,
    };
    let mut in_distribution = false;
    for line in output.lines().map(str::trim) {
        if line.starts_with("Latency Distribution") {
            in_distribution = true;
        } else if let Some(rest) = line.strip_prefix("Requests/sec:") {
            run.per_second = rest.trim().parse().context("Requests/sec")?;
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            run.non_2xx = rest.trim().parse().context("Non-2xx or 3xx responses")?;
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            run.socket_errors =
                rest.split(',').filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok()).sum();
        } else if let Some((count, _)) = line.split_once(" requests in ") {
            run.requests = count.trim().parse().context("requests in")?;
            in_distribution = false;
        } else if in_distribution {
            match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["50%", v] => run.p50_us = microseconds(v)?,
                ["99%", v] => run.p99_us = microseconds(v)?,
                _ => {}
            }
        }
    }
    ensure!(run.per_second.is_finite(), "no Requests/sec line");
    ensure!(run.p99_us.is_finite() && run.p50_us.is_finite(), "no Latency Distribution (--latency)");
    Ok(run)
}

/// wrk's durations: `850.00us`, `1.23ms`, `2.00s`, `1.00m`, in microseconds.
fn microseconds(value: &str) -> anyhow::Result<f64> {
    let at =
        value.find(|c: char| c.is_ascii_alphabetic()).with_context(|| format!("no unit in {value:?}"))?;
    let number: f64 = value[..at].parse().with_context(|| format!("latency {value:?}"))?;
    let scale = match &value[at..] {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        unit => bail!("unknown unit {unit:?} in {value:?}"),
    };
    Ok(number * scale)
}

fn errors(run: &WrkRun) -> String {
    match (run.non_2xx, run.socket_errors) {
        (0, 0) => "no errors".into(),
        (n, s) => format!("ERRORS: {n} non-2xx/3xx, {s} socket errors"),
    }
}

/// The part's section of the report.
pub fn print(outcome: &Outcome) {
    let figures = match outcome {
        Outcome::Skipped(why) => return println!("\nwrk against nginx: SKIPPED: {why}"),
        Outcome::Measured(figures) => figures,
    };
    println!(
        "\nwrk against nginx ({}): GET / answered with 100 bytes; `{}`; {} round(s), paths interleaved{}",
        figures.versions,
        figures.command,
        figures.rounds,
        if figures.smoke { "; SMOKE RUN (debug builds): figures mean nothing" } else { "" }
    );
    println!("{:<9} {:>26} {:>18} {:>18}   requests/s per round", "path", "requests/s", "p50 ms", "p99 ms");
    let runs = &figures.runs;
    for path in PATHS {
        let rounds: Vec<String> =
            runs.series(path, |r| r.per_second).0.iter().map(|v| format!("{v:.0}")).collect();
        println!(
            "{path:<9} {:>26} {:>18} {:>18}   {}",
            runs.series(path, |r| r.per_second).show(0),
            runs.series(path, |r| r.p50_us / 1e3).show(2),
            runs.series(path, |r| r.p99_us / 1e3).show(2),
            rounds.join(", ")
        );
    }
    let rate = |r: WrkRun| r.per_second;
    target("wrk requests/s ggrok/direct", runs.ratio("ggrok", "direct", rate), ">=", 0.5);
    target("wrk requests/s ggrok/rathole", runs.ratio("ggrok", "rathole", rate), ">=", 1.0);
    target("wrk p99 ggrok/rathole", runs.ratio("ggrok", "rathole", |r| r.p99_us), "<=", 1.0);
    cpu("tunnel CPU µs per request (wrk)", &figures.cpu, 1);
    let busy: Vec<String> =
        PATHS.iter().map(|p| format!("{p} {}", figures.busy.series(p, |v| v).show(0))).collect();
    println!("  machine CPU busy %: {}", busy.join(", "));
    let failed: Vec<String> = PATHS
        .iter()
        .flat_map(|&path| {
            let rounds = runs.get(path).into_iter().enumerate();
            rounds
                .filter(|(_, r)| r.non_2xx + r.socket_errors > 0)
                .map(move |(i, r)| format!("{path} round {}: {}", i + 1, errors(&r)))
        })
        .collect();
    match failed.as_slice() {
        [] => println!("  errors: none (no non-2xx/3xx responses, no socket errors)"),
        failed => println!(
            "  ERRORS in {} run(s), their figures count failed requests: {}",
            failed.len(),
            failed.join("; ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let out = "Running 1s test @ http://127.0.0.1:8080/\n  2 threads and 64 connections\n\
            \x20 Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     1.10ms  300.00us   9.00ms   90.00%\n\
            \x20 Latency Distribution\n     50%  850.00us\n     75%    1.20ms\n     90%    1.50ms\n     99%    2.50ms\n\
            \x20 45678 requests in 1.00s, 11.00MB read\n  Socket errors: connect 0, read 3, write 0, timeout 2\n\
            \x20 Non-2xx or 3xx responses: 7\nRequests/sec:  45600.12\nTransfer/sec:     11.00MB\n";
        let run = parse(out).unwrap();
        assert_eq!((run.requests, run.non_2xx, run.socket_errors), (45678, 7, 5));
        assert_eq!((run.p50_us, run.p99_us, run.per_second), (850.0, 2500.0, 45600.12));
        assert!(parse("Requests/sec: 1\n").is_err());
    }
}
