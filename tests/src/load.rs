//! A steady public load with checksummed answers: `concurrency` clients, each on a keep-alive
//! HTTP/1.1 connection of its own, sending `GET /pattern/OFFSET/LEN` back to back (see
//! [`crate::upstream`]), every request a different offset and length, and every answer compared
//! byte for byte with what the local service sent. Each request is bounded in time
//! ([`REQUEST_BOUND`]): one that takes longer counts as hung.
//!
//! Like a browser or curl, a client may retry ([`Load::retry_closed`]), once and on a new connection, a GET whose reused
//! keep-alive connection closed before the answer's head arrived: the server may close an idle
//! connection just as a request is on its way (the keep-alive race, RFC 9112 section 9.3.1),
//! which a client cannot tell from a lost request, and a GET is safe to send again. Such retries
//! are counted apart. A failure on a new connection, or after a byte of the answer, is a failure.

use crate::upstream::{SEEN_FORWARDED_FOR, pattern};
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// The longest a request may take before it counts as hung.
pub const REQUEST_BOUND: Duration = Duration::from_secs(30);
/// Offsets of the pattern step by this prime, so no two requests of a load get the same body.
const OFFSET_STEP: u64 = 7919;

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 200 with exactly the bytes the local service sent.
    Ok,
    /// An error or an answer other than 200, told.
    Failed(String),
    /// 200 with a body other than the one sent for this request.
    WrongBody(String),
    /// No end within [`REQUEST_BOUND`].
    Hung,
}

/// One request of the load.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its number in the load.
    pub index: u64,
    /// When it was sent.
    pub started: Instant,
    /// When it ended.
    pub ended: Instant,
    /// How.
    pub outcome: Outcome,
    /// The replica (the address the server saw it from) that answered it or, when it failed, that
    /// answered the last request on its connection; `None` on a new connection.
    pub replica: Option<IpAddr>,
    /// Why its first try failed, when it was retried (see the module's documentation).
    pub retried: Option<String>,
}

/// A running load.
pub struct Running {
    stop: Arc<AtomicBool>,
    completed: Arc<AtomicU64>,
    started: Instant,
    clients: Vec<tokio::task::JoinHandle<Vec<Record>>>,
}

/// What a load saw.
pub struct Report {
    /// Every request, in no particular order.
    pub records: Vec<Record>,
    /// From the first request to the last answer.
    pub elapsed: Duration,
}

/// What load to send.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Clients sending at once, each on a connection of its own.
    pub concurrency: usize,
    /// Requests in all; `None`: until [`Running::finish`] (or five minutes).
    pub limit: Option<u64>,
    /// The largest answer, in bytes.
    pub max_len: u64,
    /// Whether to retry, once, a request whose reused connection closed before the answer's
    /// head (as browsers do); without, that request fails.
    pub retry_closed: bool,
}

impl Load {
    /// Starts the clients, sending requests for `host` to `addr`.
    pub fn start(self, addr: SocketAddr, host: &str) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let (next, completed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let deadline = Instant::now() + Duration::from_secs(300);
        let clients = (0..self.concurrency)
            .map(|_| {
                let client = Client {
                    addr,
                    host: host.to_owned(),
                    load: self,
                    conn: None,
                    stop: stop.clone(),
                    next: next.clone(),
                    completed: completed.clone(),
                };
                tokio::spawn(client.run(self.limit.unwrap_or(u64::MAX), deadline))
            })
            .collect();
        Running { stop, completed, started: Instant::now(), clients }
    }
}

impl Running {
    /// Requests ended so far.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// Waits (up to `within`) until `n` more requests than now have ended; returns whether they
    /// did.
    pub async fn wait_more(&self, n: u64, within: Duration) -> bool {
        let (target, deadline) = (self.completed() + n, Instant::now() + within);
        while self.completed() < target {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Stops sending, waits for the requests on their way, and reports.
    pub async fn finish(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        self.join().await
    }

    /// Waits until the clients are done (the limit reached) and reports.
    pub async fn join(self) -> Report {
        let mut records = Vec::new();
        for client in self.clients {
            records.extend(client.await.expect("a load client panicked"));
        }
        let elapsed = self.started.elapsed();
        Report { records, elapsed }
    }
}

impl Report {
    /// The requests that did not end in [`Outcome::Ok`].
    pub fn failures(&self) -> Vec<&Record> {
        self.records.iter().filter(|r| r.outcome != Outcome::Ok).collect()
    }

    /// How many requests ended with `outcome`'s kind.
    pub fn count(&self, kind: fn(&Outcome) -> bool) -> usize {
        self.records.iter().filter(|r| kind(&r.outcome)).count()
    }

    /// The requests retried after their keep-alive connection closed before the answer.
    pub fn retried(&self) -> usize {
        self.records.iter().filter(|r| r.retried.is_some()).count()
    }

    /// A line of figures, then one line per failure (at most 20).
    pub fn summary(&self, what: &str) -> String {
        let n = self.records.len();
        let secs = self.elapsed.as_secs_f64();
        let mut replicas: Vec<(IpAddr, usize)> = Vec::new();
        for r in self.records.iter().filter(|r| r.outcome == Outcome::Ok) {
            match replicas.iter_mut().find(|(ip, _)| Some(*ip) == r.replica) {
                Some((_, count)) => *count += 1,
                None => replicas.extend(r.replica.map(|ip| (ip, 1))),
            }
        }
        replicas.sort();
        let served: Vec<String> = replicas.iter().map(|(ip, n)| format!("{ip} {n}")).collect();
        let mut text = format!(
            "{what}: {n} requests in {secs:.1} s ({:.0}/s): {} ok, {} failed, {} wrong bodies, {} hung; \
             {} retried after a keep-alive connection closed before the answer; served by {}",
            n as f64 / secs.max(1e-3),
            self.count(|o| *o == Outcome::Ok),
            self.count(|o| matches!(o, Outcome::Failed(_))),
            self.count(|o| matches!(o, Outcome::WrongBody(_))),
            self.count(|o| *o == Outcome::Hung),
            self.retried(),
            served.join(", "),
        );
        for r in self.failures().iter().take(20) {
            text.push_str(&format!("\n  request {} (replica {:?}): {:?}", r.index, r.replica, r.outcome));
        }
        text
    }
}

/// One client: one connection at a time, one request at a time.
struct Client {
    addr: SocketAddr,
    host: String,
    load: Load,
    /// The connection, the requests it carried, and the replica that answered them.
    conn: Option<(SendRequest<Empty<Bytes>>, u64, Option<IpAddr>)>,
    stop: Arc<AtomicBool>,
    next: Arc<AtomicU64>,
    completed: Arc<AtomicU64>,
}

impl Client {
    async fn run(mut self, limit: u64, deadline: Instant) -> Vec<Record> {
        let mut records = Vec::new();
        while !self.stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            if index >= limit {
                break;
            }
            let started = Instant::now();
            let mut retried = None;
            let outcome = match tokio::time::timeout(REQUEST_BOUND, self.request(index, &mut retried)).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::Hung,
            };
            let replica = self.conn.as_ref().and_then(|c| c.2);
            if outcome != Outcome::Ok {
                self.conn = None;
            }
            records.push(Record { index, started, ended: Instant::now(), outcome, replica, retried });
            self.completed.fetch_add(1, Ordering::Relaxed);
        }
        records
    }

    /// Sends request `index`, retrying once on a new connection when a reused one closed before
    /// the answer's head.
    async fn request(&mut self, index: u64, retried: &mut Option<String>) -> Outcome {
        let offset = index * OFFSET_STEP;
        let len = 1 + (index * 104_729) % self.load.max_len;
        loop {
            // A connection the server closed after its last answer is replaced before sending.
            let alive = match &mut self.conn {
                Some(conn) => conn.0.ready().await.is_ok(),
                None => false,
            };
            if !alive {
                match self.connect().await {
                    Ok(conn) => self.conn = Some(conn),
                    Err(e) => return Outcome::Failed(format!("connect: {e}")),
                }
            }
            let Some((sender, served, _)) = &mut self.conn else { unreachable!("connected above") };
            let reused = *served > 0;
            let req = Request::get(format!("/pattern/{offset}/{len}"))
                .header(header::HOST, &self.host)
                .body(Empty::new())
                .unwrap();
            let resp = match sender.send_request(req).await {
                Ok(resp) => resp,
                Err(e) if self.load.retry_closed && reused && retried.is_none() && !e.is_parse() => {
                    *retried = Some(error_chain(&e));
                    self.conn = None;
                    continue;
                }
                Err(e) => return Outcome::Failed(format!("no answer: {}", error_chain(&e))),
            };
            let (status, seen) = (resp.status(), resp.headers().get(SEEN_FORWARDED_FOR).cloned());
            let body = match resp.into_body().collect().await {
                Ok(body) => body.to_bytes(),
                Err(e) => {
                    return Outcome::Failed(format!("{status}, then the body failed: {}", error_chain(&e)));
                }
            };
            if let Some(conn) = &mut self.conn {
                conn.1 += 1;
                // ggrok's own answers (a 502) carry none: the connection is still where it was.
                if let Some(ip) = seen.and_then(|v| v.to_str().ok()?.parse().ok()) {
                    conn.2 = Some(ip);
                }
            }
            if status != StatusCode::OK {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                return Outcome::Failed(format!("{status}: {text}"));
            }
            if body != pattern(offset, len as usize) {
                return Outcome::WrongBody(format!(
                    "{} bytes, expected {len} from offset {offset}",
                    body.len()
                ));
            }
            return Outcome::Ok;
        }
    }

    async fn connect(&self) -> anyhow::Result<(SendRequest<Empty<Bytes>>, u64, Option<IpAddr>)> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok((sender, 0, None))
    }
}

/// An error and its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}
