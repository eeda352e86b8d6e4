//! `logs` on the control socket: the recent requests, one line each, then either an `end` line or,
//! when following, every new request as it completes until the client hangs up. A follower that
//! falls behind gets a `missed` line instead of the requests it lost; the daemon never waits for
//! it.

use crate::config::Public;
use crate::daemon::Daemon;
use crate::reqlog::Record;
use ggrok_proto::ctl::{CtlResponse, ErrorCode, Reply};
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// Requests written to a follower in one go, at most.
const BATCH: usize = 256;

/// Bytes gathered before they are written.
const WRITE_CHUNK: usize = 64 * 1024;

/// What `logs` asked for.
pub struct Query {
    /// Keep sending new requests.
    pub follow: bool,
    /// Only this host or pattern.
    pub host: Option<String>,
    /// How many recent requests first (all kept, when `None`).
    pub last: Option<u64>,
}

/// Answers `logs`. Returns when the answer is complete (without follow) or when the client hung
/// up or the connection failed (with follow).
pub async fn serve<R, W>(daemon: &Daemon, reader: &mut R, write: &mut W, query: Query) -> io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut out = Lines::default();
    let filter = match query.host.as_deref().map(|h| Public::parse_key(h.trim())) {
        None => None,
        Some(Ok(public)) => Some(public),
        Some(Err(e)) => {
            let message = format!("invalid host {e}");
            out.push(Reply::Error { code: ErrorCode::InvalidArgument, message });
            return out.write_to(write).await;
        }
    };
    let last = query.last.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    // With a filter, `last` counts the matching requests: take all, keep the last matches.
    let take = if filter.is_some() { None } else { last };
    let (backlog, live) = if query.follow {
        let (backlog, live) = daemon.requests.follow(take);
        (backlog, Some(live))
    } else {
        (daemon.requests.recent(take), None)
    };
    let matching: Vec<&Arc<Record>> = backlog.iter().filter(|r| wanted(&filter, r)).collect();
    let skip = matching.len().saturating_sub(last.unwrap_or(usize::MAX));
    for record in &matching[skip..] {
        out.push(Reply::Request(record.entry()));
        if out.buf.len() >= WRITE_CHUNK {
            out.write_to(write).await?;
        }
    }
    let Some(mut live) = live else {
        out.push(Reply::End { count: (matching.len() - skip) as u64 });
        return out.write_to(write).await;
    };
    drop(backlog);
    out.write_to(write).await?;
    loop {
        tokio::select! {
            received = live.recv() => {
                match received {
                    Ok(record) => out.push_if(&filter, &record),
                    Err(RecvError::Lagged(count)) => out.push(Reply::Missed { count }),
                    Err(RecvError::Closed) => return Ok(()),
                }
                // Whatever else is waiting goes out with it.
                for _ in 0..BATCH {
                    match live.try_recv() {
                        Ok(record) => out.push_if(&filter, &record),
                        Err(TryRecvError::Lagged(count)) => out.push(Reply::Missed { count }),
                        Err(_) => break,
                    }
                }
                out.write_to(write).await?;
            }
            () = hung_up(reader) => return Ok(()),
        }
    }
}

/// Whether `record` passes the filter: a host or pattern matching its host, or the TCP tunnel
/// (`tcp:PORT`) it went through.
fn wanted(filter: &Option<Public>, record: &Record) -> bool {
    filter.as_ref().is_none_or(|public| match public {
        Public::Http(pattern) => pattern.matches(&record.host),
        Public::Tcp(_) => public.to_string() == record.host,
    })
}

/// Resolves when the client closes its side (or the connection fails); what it sends meanwhile
/// is ignored.
async fn hung_up<R: AsyncBufRead + Unpin>(reader: &mut R) {
    loop {
        match reader.fill_buf().await {
            Ok([]) | Err(_) => return,
            Ok(data) => {
                let n = data.len();
                reader.consume(n);
            }
        }
    }
}

/// Response lines gathered before a write.
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
}

impl Lines {
    fn push(&mut self, reply: Reply) {
        serde_json::to_writer(&mut self.buf, &CtlResponse::new(reply)).expect("responses serialise");
        self.buf.push(b'\n');
    }

    fn push_if(&mut self, filter: &Option<Public>, record: &Record) {
        if wanted(filter, record) {
            self.push(Reply::Request(record.entry()));
        }
    }

    async fn write_to<W: AsyncWrite + Unpin>(&mut self, write: &mut W) -> io::Result<()> {
        if !self.buf.is_empty() {
            write.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }
}
