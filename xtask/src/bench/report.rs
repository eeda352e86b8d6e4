//! The benchmark's figures and their printing: per-path medians with their spread, per-round
//! ratios, and each target with whether this run met it (reported, never asserted).

use super::Plan;
use super::load::Rate;
use super::memory::ManyHosts;
use ggrok_tests::process::Process;
use std::time::Duration;

/// Values of one measurement per path, one per round.
pub struct ByPath<T> {
    paths: Vec<(&'static str, Vec<T>)>,
}

impl<T> Default for ByPath<T> {
    fn default() -> Self {
        Self { paths: Vec::new() }
    }
}

impl<T: Copy> ByPath<T> {
    /// The values of `path`, created empty on first use.
    pub fn entry(&mut self, path: &'static str) -> &mut Vec<T> {
        let at = match self.paths.iter().position(|(p, _)| *p == path) {
            Some(at) => at,
            None => {
                self.paths.push((path, Vec::new()));
                self.paths.len() - 1
            }
        };
        &mut self.paths[at].1
    }

    /// Whether no path has a value (the part did not run).
    pub fn is_empty(&self) -> bool {
        self.paths.iter().all(|(_, v)| v.is_empty())
    }

    pub fn get(&self, path: &str) -> Vec<T> {
        self.paths.iter().find(|(p, _)| *p == path).map(|(_, v)| v.clone()).unwrap_or_default()
    }

    /// One figure per round.
    pub fn series(&self, path: &str, f: impl Fn(T) -> f64) -> Series {
        Series(self.get(path).into_iter().map(f).collect())
    }

    /// `a / b` within each round.
    pub fn ratio(&self, a: &str, b: &str, f: impl Fn(T) -> f64) -> Series {
        let (a, b) = (self.series(a, &f), self.series(b, &f));
        Series(a.0.iter().zip(&b.0).map(|(x, y)| x / y).collect())
    }
}

/// A figure over the rounds.
pub struct Series(pub Vec<f64>);

impl Series {
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }
    /// "median (min–max)" with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        let v = self.sorted();
        match v.as_slice() {
            [] => "-".into(),
            [one] => format!("{one:.digits$}"),
            [first, .., last] => format!("{:.digits$} ({first:.digits$}–{last:.digits$})", self.median()),
        }
    }
}

/// Everything one run measured.
pub struct Report {
    pub small: ByPath<Rate>,
    pub download: ByPath<f64>,
    pub upload: ByPath<f64>,
    pub websocket: ByPath<(Duration, Duration)>,
    /// CPU time of the tunnel's own processes, per request (µs) and per GB moved (s).
    pub cpu_small: ByPath<f64>,
    /// How busy the whole machine was during each small-request measurement, in percent.
    pub busy_small: ByPath<f64>,
    pub cpu_download: ByPath<f64>,
    pub cpu_upload: ByPath<f64>,
    /// RSS of ggrok-server and ggrokd with their tunnels online, before any load, in KiB.
    pub idle: (u64, u64),
    /// Peak RSS of ggrok-server and ggrokd under each load, the largest over the rounds, in KiB.
    pub peaks: Vec<(&'static str, u64, u64)>,
    /// RSS of ggrok-server and ggrokd after each round, in KiB.
    pub after: Vec<(u64, u64)>,
    pub many: Option<ManyHosts>,
    /// RSS of rathole's server and client, idle and at their peak over the run, in KiB.
    pub rathole: [(u64, u64); 2],
    /// The `wrk` part (wrk against nginx), when it was asked for.
    pub wrk: Option<super::wrk::Outcome>,
    /// The `stalled` part, per path.
    pub stalled: Vec<super::stalled::Stalled>,
    /// The `tcp` part.
    pub tcp: super::tcp::Figures,
    /// Whether ggrokd held a TCP tunnel beside its HTTP ones (the `tcp` part ran).
    tcp_tunnel: bool,
    stalled_count: usize,
    bulk_mib: u64,
    /// Whether the benchmark's own parts (small, bulk, WebSocket, TCP, memory) ran: not with
    /// `--only wrk` or `--only stalled`.
    own: bool,
    header: String,
    tunnels: usize,
}

impl Report {
    pub fn new(plan: &Plan) -> Self {
        let header = format!(
            "small requests: GET of 100 bytes on {} keep-alive connections for {:?}; bulk: one stream of {} MiB \
             each way; WebSocket: {} round trips of 32 bytes; {} round(s), paths interleaved{}",
            plan.connections,
            plan.duration,
            plan.bulk_bytes >> 20,
            plan.ws_messages,
            plan.rounds,
            if plan.smoke { "; SMOKE RUN (debug builds, tiny loads): figures mean nothing" } else { "" },
        );
        Self {
            small: ByPath::default(),
            download: ByPath::default(),
            upload: ByPath::default(),
            websocket: ByPath::default(),
            cpu_small: ByPath::default(),
            busy_small: ByPath::default(),
            cpu_download: ByPath::default(),
            cpu_upload: ByPath::default(),
            idle: (0, 0),
            peaks: Vec::new(),
            after: Vec::new(),
            many: None,
            rathole: [(0, 0); 2],
            wrk: None,
            stalled: Vec::new(),
            tcp: super::tcp::Figures::new(plan),
            tcp_tunnel: plan.runs("tcp"),
            stalled_count: plan.stalled,
            bulk_mib: plan.bulk_bytes >> 20,
            own: !matches!(plan.only.as_deref(), Some("wrk" | "stalled")),
            header,
            tunnels: plan.tunnels,
        }
    }

    /// Records the peak RSS of ggrok-server and ggrokd under the load `what` (peaks were reset
    /// before it).
    pub fn peak(&mut self, path: &str, what: &'static str, processes: &[&Process; 2]) {
        if path != "ggrok" {
            return;
        }
        let (server, daemon) = (processes[0].peak_rss_kib(), processes[1].peak_rss_kib());
        match self.peaks.iter_mut().find(|(w, ..)| *w == what) {
            Some(entry) => *entry = (what, entry.1.max(server), entry.2.max(daemon)),
            None => self.peaks.push((what, server, daemon)),
        }
    }

    pub fn print(&self, machine: &str) {
        println!("\nggrok benchmark on {machine}, loopback");
        if self.own {
            self.print_own();
        }
        if !self.stalled.is_empty() {
            let alone =
                |path: &str| Some(self.download.series(path, |v| v).median()).filter(|m| m.is_finite());
            super::stalled::print(&self.stalled, self.stalled_count, self.bulk_mib, alone);
        }
        if let Some(wrk) = &self.wrk {
            super::wrk::print(wrk);
        }
    }

    fn print_own(&self) {
        println!("{}", self.header);
        let optional = ["baseline", "insp-off", "no-budget", "ggrok×2"];
        let paths: Vec<&str> = ["direct", "ggrok", "rathole", "baseline", "insp-off", "no-budget", "ggrok×2"]
            .into_iter()
            .filter(|p| {
                !optional.contains(p) || !self.small.get(p).is_empty() || !self.download.get(p).is_empty()
            })
            .collect();
        // `--only` leaves the other parts' figures empty: their sections are left out.
        if !self.small.is_empty() {
            self.print_small(&paths);
        }
        if !self.download.is_empty() || !self.upload.is_empty() {
            self.print_bulk(&paths);
        }
        if !self.websocket.is_empty() {
            self.print_websocket(&paths);
        }
        if !self.tcp.is_empty() {
            super::tcp::print(&self.tcp);
        }
        self.print_memory();
    }

    fn print_small(&self, paths: &[&str]) {
        rate_table("requests/s", &self.small, paths);
        let rate = |r: Rate| r.per_second;
        target("requests/s ggrok/direct", self.small.ratio("ggrok", "direct", rate), ">=", 0.5);
        target("requests/s ggrok/rathole", self.small.ratio("ggrok", "rathole", rate), ">=", 1.0);
        target("p99 ggrok/rathole", self.small.ratio("ggrok", "rathole", |r| ms(r.p99)), "<=", 1.0);
        cpu("tunnel CPU µs per request", &self.cpu_small, 1);
        busy_line(&self.busy_small, paths);
        if paths.contains(&"ggrok×2") {
            println!(
                "  ggrok×2 (two server/ggrokd pairs, a model of one thread per tunnel connection): \
                 requests/s ×2/rathole {}, p99 ×2/rathole {}",
                self.small.ratio("ggrok×2", "rathole", rate).show(2),
                self.small.ratio("ggrok×2", "rathole", |r| ms(r.p99)).show(2)
            );
        }
        for other in ["baseline", "insp-off", "no-budget"].into_iter().filter(|p| paths.contains(p)) {
            println!(
                "  requests/s ggrok/{other}: {}; p99 ggrok/{other}: {}; tunnel CPU per request ggrok/{other}: {}",
                self.small.ratio("ggrok", other, rate).show(3),
                self.small.ratio("ggrok", other, |r| ms(r.p99)).show(3),
                self.cpu_small.ratio("ggrok", other, |v| v).show(3)
            );
        }
    }

    fn print_bulk(&self, paths: &[&str]) {
        println!("\n{:<9} {:>26} {:>26}", "path", "download MB/s", "upload MB/s");
        for &path in paths {
            println!(
                "{path:<9} {:>26} {:>26}",
                self.download.series(path, |v| v).show(0),
                self.upload.series(path, |v| v).show(0)
            );
        }
        target("download ggrok/direct", self.download.ratio("ggrok", "direct", |v| v), ">=", 0.6);
        target("download ggrok/rathole", self.download.ratio("ggrok", "rathole", |v| v), ">=", 2.0);
        target("upload ggrok/direct", self.upload.ratio("ggrok", "direct", |v| v), ">=", 0.6);
        target("upload ggrok/rathole", self.upload.ratio("ggrok", "rathole", |v| v), ">=", 2.0);
        cpu("tunnel CPU s per GB downloaded", &self.cpu_download, 2);
        cpu("tunnel CPU s per GB uploaded", &self.cpu_upload, 2);
        for other in ["baseline", "insp-off", "no-budget"].into_iter().filter(|p| paths.contains(p)) {
            for (what, rates, cpu) in
                [("download", &self.download, &self.cpu_download), ("upload", &self.upload, &self.cpu_upload)]
            {
                println!(
                    "  {what} ggrok/{other}: {}; tunnel CPU per GB ggrok/{other}: {}",
                    rates.ratio("ggrok", other, |v| v).show(3),
                    cpu.ratio("ggrok", other, |v| v).show(3)
                );
            }
        }
    }

    fn print_websocket(&self, paths: &[&str]) {
        println!("\n{:<9} {:>26} {:>26}", "path", "WebSocket p50 µs", "WebSocket p99 µs");
        for &path in paths {
            println!(
                "{path:<9} {:>26} {:>26}",
                self.websocket.series(path, |(p50, _)| us(p50)).show(0),
                self.websocket.series(path, |(_, p99)| us(p99)).show(0)
            );
        }
        let p50 = |(p50, _): (Duration, Duration)| us(p50);
        println!("  WebSocket p50 ggrok/direct: {}", self.websocket.ratio("ggrok", "direct", p50).show(2));
        println!("  WebSocket p50 ggrok/rathole: {}", self.websocket.ratio("ggrok", "rathole", p50).show(2));
    }

    fn print_memory(&self) {
        println!("\n{:<34} {:>14} {:>14}", "memory (RSS, MiB)", "ggrok-server", "ggrokd");
        let row = |what: &str, (server, daemon): (u64, u64), limit: &str| {
            println!("{what:<34} {:>14.1} {:>14.1}   {limit}", mib(server), mib(daemon));
        };
        let idle_ok = mib(self.idle.0.max(self.idle.1)) <= 12.0;
        let tcp = if self.tcp_tunnel { " + 1 TCP" } else { "" };
        row(&format!("idle, {} tunnels{tcp}", self.tunnels), self.idle, &verdict("≤ 12 MiB", idle_ok));
        for &(what, server, daemon) in &self.peaks {
            let ok = mib(server.max(daemon)) <= 48.0;
            row(&format!("peak under {what}"), (server, daemon), &verdict("≤ 48 MiB", ok));
        }
        for (i, &after) in self.after.iter().enumerate() {
            row(&format!("after round {}", i + 1), after, "");
        }
        // Round 1 fills what is bounded but starts empty (the request log, pools, allocator
        // arenas); growth is measured from the end of round 2 when there are three or more.
        let from = if self.after.len() >= 3 { 2 } else { 1 };
        if let (Some(first), Some(last)) = (self.after.get(from - 1), self.after.last()) {
            let growth = |a: u64, b: u64| mib(b) - mib(a);
            let (s, d) = (growth(first.0, last.0), growth(first.1, last.1));
            let ok = s <= 1.0 && d <= 1.0;
            println!(
                "  growth from round {from} to round {}: server {s:+.1} MiB, ggrokd {d:+.1} MiB   {}",
                self.after.len(),
                verdict("none beyond 1 MiB", ok || self.after.len() < 2)
            );
        }
        println!(
            "{:<34} {:>14.1} {:>14.1}   (rathole server and client, idle; peak over the run {:.1} and {:.1})",
            if self.tcp_tunnel { "rathole, idle, 2 services" } else { "rathole, idle, 1 service" },
            mib(self.rathole[0].0),
            mib(self.rathole[0].1),
            mib(self.rathole[1].0),
            mib(self.rathole[1].1)
        );
        if let Some(m) = &self.many {
            let ok = mib(m.loaded_kib.max(m.peak_kib)) <= 128.0;
            println!(
                "{} hosts over {} ggrokd sessions: server {:.1} MiB (peak {:.1}, empty {:.1}); one ggrokd {:.1} MiB   {}",
                m.hosts,
                m.sessions,
                mib(m.loaded_kib),
                mib(m.peak_kib),
                mib(m.empty_kib),
                mib(m.daemon_kib),
                verdict("≤ 128 MiB", ok)
            );
        }
    }
}

/// Per path: `what` (the rate per second), and the p50 and p99 latencies.
pub fn rate_table(what: &str, rates: &ByPath<Rate>, paths: &[&str]) {
    println!("\n{:<9} {:>26} {:>22} {:>22}", "path", what, "p50 ms", "p99 ms");
    for &path in paths {
        println!(
            "{path:<9} {:>26} {:>22} {:>22}",
            rates.series(path, |r| r.per_second).show(0),
            rates.series(path, |r| ms(r.p50)).show(2),
            rates.series(path, |r| ms(r.p99)).show(2),
        );
    }
}

/// How busy the whole machine was on each path.
pub fn busy_line(busy: &ByPath<f64>, paths: &[&str]) {
    let busy: Vec<String> = paths.iter().map(|p| format!("{p} {}", busy.series(p, |v| v).show(0))).collect();
    println!("  machine CPU busy % (under 100: waiting, not CPU, set the pace): {}", busy.join(", "));
}

/// The CPU the tunnel processes used (both ends; the load and the local service are not counted).
pub fn cpu(what: &str, figures: &ByPath<f64>, digits: usize) {
    println!(
        "  {what}: ggrok {}, rathole {}; ggrok/rathole {}",
        figures.series("ggrok", |v| v).show(digits),
        figures.series("rathole", |v| v).show(digits),
        figures.ratio("ggrok", "rathole", |v| v).show(2)
    );
}

pub fn target(what: &str, ratio: Series, op: &str, limit: f64) -> bool {
    let median = ratio.median();
    let met = if op == ">=" { median >= limit } else { median <= limit };
    println!("  {what}: {}   {}", ratio.show(2), verdict(&format!("target {op} {limit}"), met));
    met
}

fn verdict(target: &str, met: bool) -> String {
    format!("[{target}: {}]", if met { "met" } else { "MISSED" })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
