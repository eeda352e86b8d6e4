//! The part `tcp`: TCP tunnels, side by side with a direct connection and rathole, in front of the
//! raw-TCP local service [`super::tcp_service`] with the load of [`super::tcp_load`]. The paths:
//! `direct` (the service itself), `ggrok` (a `[[tunnel]] tcp = P` of the run's ggrokd, its server's
//! client allowed port P) and `rathole` (a second rathole service beside the HTTP one). Each round
//! measures one stream each way on every path (MB/s and the tunnel's CPU seconds per GB), then
//! many small connections on every path: `plan.connections` workers, each connecting, sending 65
//! bytes, reading the 64-byte echo to the service's close and closing, back to back for
//! `plan.duration` (connections per second, p50 and p99 of the whole connect-to-close time, the
//! tunnel's CPU per connection).

use super::Plan;
use super::load::Rate;
use super::report::{ByPath, Report, busy_line, cpu, rate_table};
use super::tcp_load;
use ggrok_tests::process::Process;
use std::net::SocketAddr;
use std::time::Duration;

/// One way to the TCP service, and the tunnel processes on it.
pub struct TcpPath<'a> {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub processes: Vec<&'a Process>,
}

impl TcpPath<'_> {
    /// User plus system time of the path's processes, in seconds.
    fn cpu_seconds(&self) -> f64 {
        self.processes.iter().map(|p| super::cpu_seconds(p.pid())).sum()
    }
}

/// What the part measured, per path, one value per round.
pub struct Figures {
    pub download: ByPath<f64>,
    pub upload: ByPath<f64>,
    /// CPU seconds of the tunnel's processes per GB moved.
    pub cpu_download: ByPath<f64>,
    pub cpu_upload: ByPath<f64>,
    pub connections: ByPath<Rate>,
    /// CPU µs of the tunnel's processes per small connection.
    pub cpu_connection: ByPath<f64>,
    /// How busy the whole machine was during the small connections, in percent.
    pub busy: ByPath<f64>,
    /// The loads, for the section's first line.
    header: String,
}

impl Figures {
    pub fn new(plan: &Plan) -> Self {
        let header = format!(
            "TCP tunnels: one stream of {} MiB each way; small connections: {} workers, each connecting, \
             sending 65 bytes, reading the 64-byte echo to the service's close and closing, back to back \
             for {:?}",
            plan.bulk_bytes >> 20,
            plan.connections,
            plan.duration
        );
        Self {
            download: ByPath::default(),
            upload: ByPath::default(),
            cpu_download: ByPath::default(),
            cpu_upload: ByPath::default(),
            connections: ByPath::default(),
            cpu_connection: ByPath::default(),
            busy: ByPath::default(),
            header,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.download.is_empty() && self.connections.is_empty()
    }
}

/// Checks that every path carries one small connection, so a broken path fails before any figure.
pub async fn probe(paths: &[TcpPath<'_>]) -> anyhow::Result<()> {
    for path in paths {
        tcp_load::ping(path.addr, 0)
            .await
            .map_err(|e| e.context(format!("probe the TCP path {}", path.name)))?;
    }
    Ok(())
}

/// One round: a download on every path, an upload on every path, then the small connections on
/// every path. `watched` (ggrok-server and ggrokd) get their memory peak reset before each load and
/// read after it, on the path `ggrok`.
pub async fn round(
    paths: &[TcpPath<'_>],
    plan: &Plan,
    report: &mut Report,
    watched: &[&Process; 2],
) -> anyhow::Result<()> {
    let gb = plan.bulk_bytes as f64 / 1e9;
    let context = |name: &str, what: &str| format!("TCP {what} on the path {name}");
    for path in paths {
        watched.iter().for_each(|p| p.reset_peak_rss());
        let cpu = path.cpu_seconds();
        let rate = tcp_load::download(path.addr, plan.bulk_bytes)
            .await
            .map_err(|e| e.context(context(path.name, "download")))?;
        report.tcp.download.entry(path.name).push(rate);
        report.tcp.cpu_download.entry(path.name).push((path.cpu_seconds() - cpu) / gb);
        report.peak(path.name, "TCP stream", watched);
    }
    for path in paths {
        watched.iter().for_each(|p| p.reset_peak_rss());
        let cpu = path.cpu_seconds();
        let rate = tcp_load::upload(path.addr, plan.bulk_bytes)
            .await
            .map_err(|e| e.context(context(path.name, "upload")))?;
        report.tcp.upload.entry(path.name).push(rate);
        report.tcp.cpu_upload.entry(path.name).push((path.cpu_seconds() - cpu) / gb);
        report.peak(path.name, "TCP stream", watched);
    }
    for path in paths {
        watched.iter().for_each(|p| p.reset_peak_rss());
        let (cpu, machine) = (path.cpu_seconds(), super::machine_ticks());
        let rate = tcp_load::connections(path.addr, plan.connections, plan.duration)
            .await
            .map_err(|e| e.context(context(path.name, "small connections")))?;
        report.tcp.busy.entry(path.name).push(super::busy_since(machine));
        report.tcp.cpu_connection.entry(path.name).push((path.cpu_seconds() - cpu) * 1e6 / rate.count as f64);
        report.tcp.connections.entry(path.name).push(rate);
        report.peak(path.name, "TCP connections", watched);
    }
    Ok(())
}

/// The section of the report.
pub fn print(figures: &Figures) {
    let paths = ["direct", "ggrok", "rathole"];
    println!("\n{}\n", figures.header);
    println!("{:<9} {:>26} {:>26}", "path", "TCP download MB/s", "TCP upload MB/s");
    for path in paths {
        println!(
            "{path:<9} {:>26} {:>26}",
            figures.download.series(path, |v| v).show(0),
            figures.upload.series(path, |v| v).show(0)
        );
    }
    for (what, rates) in [("download", &figures.download), ("upload", &figures.upload)] {
        println!(
            "  {what} ggrok/direct: {}; ggrok/rathole: {}",
            rates.ratio("ggrok", "direct", |v| v).show(2),
            rates.ratio("ggrok", "rathole", |v| v).show(2)
        );
    }
    cpu("tunnel CPU s per GB downloaded", &figures.cpu_download, 2);
    cpu("tunnel CPU s per GB uploaded", &figures.cpu_upload, 2);

    rate_table("TCP connections/s", &figures.connections, &paths);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let rate = |r: Rate| r.per_second;
    for other in ["direct", "rathole"] {
        println!(
            "  connections/s ggrok/{other}: {}; p50 ggrok/{other}: {}; p99 ggrok/{other}: {}",
            figures.connections.ratio("ggrok", other, rate).show(2),
            figures.connections.ratio("ggrok", other, |r| ms(r.p50)).show(2),
            figures.connections.ratio("ggrok", other, |r| ms(r.p99)).show(2)
        );
    }
    cpu("tunnel CPU µs per connection", &figures.cpu_connection, 1);
    busy_line(&figures.busy, &paths);
}
