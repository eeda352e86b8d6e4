//! What public clients that stop reading cost, side by side (issue 20): 200 (by default) downloads of
//! 64 MiB that read nothing, held open on a path while one bulk download runs beside them. For
//! each path: the bulk download's speed, and the peak memory of the path's two processes. ggrok's
//! server shrinks its stream windows under its `buffer_memory` budget, so its memory stays bounded
//! and the bulk download slows; what rathole does is what its processes and kernel buffers show.

use super::load::{self, Target};
use ggrok_tests::process::Process;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// One path's figures.
pub struct Stalled {
    pub name: &'static str,
    /// The bulk download's speed beside the stalled ones, MB/s.
    pub download: f64,
    /// Peak RSS of the path's server and client while they were stalled, KiB.
    pub peak: (u64, u64),
}

/// Downloads that read nothing: a small receive buffer each, so the kernel does not absorb what
/// the path would otherwise hold.
async fn open_stalled(target: &Target, count: usize) -> anyhow::Result<Vec<TcpStream>> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(16 << 10)?;
        let mut conn = socket.connect(target.addr).await?;
        let head = format!("GET /bytes/{} HTTP/1.1\r\nHost: {}\r\n\r\n", 64u64 << 20, target.host);
        conn.write_all(head.as_bytes()).await?;
        held.push(conn);
    }
    Ok(held)
}

/// Waits until the processes' memory stops growing for a while (the stalled downloads have filled
/// what they can), at most `limit`.
async fn settle(processes: &[&Process], limit: Duration) {
    let rss = || processes.iter().map(|p| p.rss_kib()).sum::<u64>();
    let deadline = Instant::now() + limit;
    let mut last = rss();
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline && quiet_since.elapsed() < Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = rss();
        if now > last + 256 {
            quiet_since = Instant::now();
        }
        last = now;
    }
}

/// `count` stalled downloads on `target`, then one download of `bulk_bytes` beside them.
pub async fn measure(
    name: &'static str,
    target: &Target,
    processes: [&Process; 2],
    count: usize,
    bulk_bytes: u64,
) -> anyhow::Result<Stalled> {
    processes.iter().for_each(|p| p.reset_peak_rss());
    let held = open_stalled(target, count).await?;
    settle(&processes, Duration::from_secs(10)).await;
    let download = load::download(target, bulk_bytes).await?;
    let peak = (processes[0].peak_rss_kib(), processes[1].peak_rss_kib());
    drop(held);
    Ok(Stalled { name, download, peak })
}

/// The section of the report.
pub fn print(results: &[Stalled], count: usize, bulk_mib: u64, alone: impl Fn(&str) -> Option<f64>) {
    println!();
    println!("{count} stalled downloads (64 MiB asked, nothing read) beside one download of {bulk_mib} MiB");
    println!(
        "{:<10} {:>14} {:>16} {:>20} {:>14}",
        "path", "download MB/s", "vs alone", "peak RSS server MiB", "client MiB"
    );
    for r in results {
        let ratio = alone(r.name).map_or("".to_owned(), |a| format!("{:.2}", r.download / a));
        println!(
            "{:<10} {:>14.0} {:>16} {:>20.1} {:>14.1}",
            r.name,
            r.download,
            ratio,
            r.peak.0 as f64 / 1024.0,
            r.peak.1 as f64 / 1024.0
        );
    }
}
