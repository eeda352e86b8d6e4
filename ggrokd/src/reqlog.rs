//! The request log: the latest completed requests across all tunnels in a ring of fixed size
//! (`request_log` in ggrokd.toml), and a live feed of new ones for `ggrokctl logs -f`.
//!
//! Recording takes one short lock: push into the ring, and, only while someone follows, send on a
//! bounded broadcast channel. A follower takes its backlog and subscribes under that same lock, so
//! it neither misses nor repeats a request between the two. A follower that falls behind loses
//! the oldest requests it has not read (and is told how many); it never slows the requests down.

use ggrok_proto::ctl::LogEntry;
use http::Method;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

/// How many requests a follower may lag behind before it loses some.
pub const FOLLOW_BUFFER: usize = 1024;

/// Default number of requests kept (`request_log`).
pub const DEFAULT_CAPACITY: usize = 1000;

/// One completed request, as kept in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Arrival, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The public host, normalised.
    pub host: String,
    /// The method.
    pub method: Method,
    /// Path and query, cut to [`ggrok_proto::ctl::MAX_LOGGED_PATH`].
    pub path: Box<str>,
    /// The status the public client got (101 for upgrades, 0 for none).
    pub status: u16,
    /// From arrival to the end of the response or connection, in microseconds.
    pub duration_us: u64,
    /// Body bytes in.
    pub bytes_in: u64,
    /// Body bytes out.
    pub bytes_out: u64,
    /// The public client's address.
    pub client: Option<IpAddr>,
    /// The upgrade protocol, for upgraded connections.
    pub upgrade: Option<Box<str>>,
}

impl Record {
    /// The form `ggrokctl logs` receives.
    pub fn entry(&self) -> LogEntry {
        LogEntry {
            time: self.time_ms as f64 / 1e3,
            host: self.host.clone(),
            method: self.method.to_string(),
            path: self.path.to_string(),
            status: self.status,
            duration_ms: self.duration_us as f64 / 1e3,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            client: self.client.map(|c| c.to_string()),
            upgrade: self.upgrade.as_deref().map(str::to_owned),
        }
    }
}

struct Ring {
    records: VecDeque<Arc<Record>>,
    capacity: usize,
}

/// The ring of recent requests and the live feed.
pub struct RequestLog {
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<Record>>,
    /// Followers now; read under the ring's lock, so that recording without followers takes no
    /// other lock (the broadcast channel's own count would).
    followers: Arc<AtomicUsize>,
}

/// A follower's feed of the requests recorded after its backlog; while it exists, new requests
/// are broadcast.
pub struct Live {
    receiver: broadcast::Receiver<Arc<Record>>,
    followers: Arc<AtomicUsize>,
}

impl Live {
    /// The next request; `Lagged(n)` when `n` were lost because this follower fell behind.
    pub async fn recv(&mut self) -> Result<Arc<Record>, RecvError> {
        self.receiver.recv().await
    }

    /// The next request if one is waiting.
    pub fn try_recv(&mut self) -> Result<Arc<Record>, TryRecvError> {
        self.receiver.try_recv()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.followers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RequestLog {
    /// A log keeping the latest `capacity` requests (0: none; followers still see new ones).
    pub fn new(capacity: usize) -> Self {
        Self::with_follow_buffer(capacity, FOLLOW_BUFFER)
    }

    fn with_follow_buffer(capacity: usize, buffer: usize) -> Self {
        Self {
            ring: Mutex::new(Ring { records: VecDeque::with_capacity(capacity), capacity }),
            live: broadcast::Sender::new(buffer),
            followers: Arc::default(),
        }
    }

    /// Adds a completed request, dropping the oldest when the ring is full.
    pub fn push(&self, record: Record) {
        let record = Arc::new(record);
        let evicted = {
            let mut ring = self.ring.lock().expect("request log lock");
            let evicted = if ring.records.len() >= ring.capacity { ring.records.pop_front() } else { None };
            if ring.capacity > 0 {
                ring.records.push_back(record.clone());
            }
            if self.followers.load(Ordering::Relaxed) > 0 {
                // Fails only when every follower left meanwhile.
                let _ = self.live.send(record);
            }
            evicted
        };
        // Freed outside the lock.
        drop(evicted);
    }

    /// The latest `last` requests (all kept, when `None`), oldest first.
    pub fn recent(&self, last: Option<usize>) -> Vec<Arc<Record>> {
        let ring = self.ring.lock().expect("request log lock");
        Self::tail(&ring, last)
    }

    /// The latest `last` requests and a receiver of every request recorded after them, taken
    /// together so that nothing falls between the two.
    pub fn follow(&self, last: Option<usize>) -> (Vec<Arc<Record>>, Live) {
        let ring = self.ring.lock().expect("request log lock");
        self.followers.fetch_add(1, Ordering::Relaxed);
        let live = Live { receiver: self.live.subscribe(), followers: self.followers.clone() };
        (Self::tail(&ring, last), live)
    }

    fn tail(ring: &Ring, last: Option<usize>) -> Vec<Arc<Record>> {
        let skip = ring.records.len().saturating_sub(last.unwrap_or(usize::MAX));
        ring.records.iter().skip(skip).cloned().collect()
    }

    /// Changes how many requests are kept (a reload); shrinking drops the oldest.
    pub fn set_capacity(&self, capacity: usize) {
        let dropped: Vec<Arc<Record>> = {
            let mut ring = self.ring.lock().expect("request log lock");
            ring.capacity = capacity;
            let excess = ring.records.len().saturating_sub(capacity);
            let dropped = ring.records.drain(..excess).collect();
            ring.records.shrink_to(capacity);
            dropped
        };
        drop(dropped);
    }

    /// How many requests are kept at most.
    pub fn capacity(&self) -> usize {
        self.ring.lock().expect("request log lock").capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u64) -> Record {
        Record {
            time_ms: n,
            host: "a.test".into(),
            method: Method::GET,
            path: format!("/{n}").into(),
            status: 200,
            duration_us: 1500,
            bytes_in: 0,
            bytes_out: 2,
            client: Some([127, 0, 0, 1].into()),
            upgrade: None,
        }
    }

    fn times(records: &[Arc<Record>]) -> Vec<u64> {
        records.iter().map(|r| r.time_ms).collect()
    }

    #[test]
    fn the_ring_keeps_the_latest_in_order() {
        let log = RequestLog::new(3);
        assert!(log.recent(None).is_empty());
        (1..=10).for_each(|n| log.push(record(n)));
        assert_eq!(times(&log.recent(None)), [8, 9, 10]);
        assert_eq!(times(&log.recent(Some(2))), [9, 10]);
        assert_eq!(times(&log.recent(Some(0))), Vec::<u64>::new());
        assert_eq!(times(&log.recent(Some(99))), [8, 9, 10]);
    }

    #[test]
    fn memory_stays_at_capacity() {
        let log = RequestLog::new(100);
        (0..10_000).for_each(|n| log.push(record(n)));
        let ring = log.ring.lock().unwrap();
        assert_eq!(ring.records.len(), 100);
        assert!(ring.records.capacity() < 200, "the ring grew to {}", ring.records.capacity());
    }

    #[test]
    fn zero_capacity_keeps_nothing_but_feeds_followers() {
        let log = RequestLog::new(0);
        let (backlog, mut live) = log.follow(None);
        log.push(record(1));
        assert!(backlog.is_empty() && log.recent(None).is_empty());
        assert_eq!(live.try_recv().unwrap().time_ms, 1);
    }

    #[test]
    fn follow_misses_and_repeats_nothing_between_backlog_and_live() {
        let log = Arc::new(RequestLog::new(1000));
        (0..50).for_each(|n| log.push(record(n)));
        let writer = {
            let log = log.clone();
            std::thread::spawn(move || (50..500).for_each(|n| log.push(record(n))))
        };
        // Subscribe while the writer runs: backlog and live must join up exactly.
        let (backlog, mut live) = log.follow(None);
        writer.join().unwrap();
        let mut seen = times(&backlog);
        while let Ok(r) = live.try_recv() {
            seen.push(r.time_ms);
        }
        assert_eq!(seen, (0..500).collect::<Vec<_>>());
    }

    #[test]
    fn a_lagging_follower_is_told_how_many_it_missed() {
        let log = RequestLog::with_follow_buffer(10, 4);
        let (_, mut live) = log.follow(Some(0));
        (0..10).for_each(|n| log.push(record(n)));
        assert!(matches!(live.try_recv(), Err(TryRecvError::Lagged(6))));
        assert_eq!(live.try_recv().unwrap().time_ms, 6);
    }

    #[test]
    fn without_followers_nothing_is_broadcast() {
        let log = RequestLog::new(10);
        let (_, mut live) = log.follow(None);
        log.push(record(1));
        assert_eq!(live.try_recv().unwrap().time_ms, 1);
        drop(live);
        log.push(record(2));
        assert_eq!((log.followers.load(Ordering::Relaxed), log.live.len()), (0, 0));
    }

    #[test]
    fn shrinking_drops_the_oldest() {
        let log = RequestLog::new(10);
        (0..10).for_each(|n| log.push(record(n)));
        log.set_capacity(4);
        assert_eq!(times(&log.recent(None)), [6, 7, 8, 9]);
        log.push(record(10));
        assert_eq!(times(&log.recent(None)), [7, 8, 9, 10]);
        log.set_capacity(6);
        log.push(record(11));
        assert_eq!((log.capacity(), log.recent(None).len()), (6, 5));
    }

    #[test]
    fn entries_carry_seconds_and_milliseconds() {
        let mut r = record(1_700_000_000_123);
        r.upgrade = Some("websocket".into());
        let entry = r.entry();
        assert_eq!((entry.time, entry.duration_ms), (1_700_000_000.123, 1.5));
        assert_eq!(
            (entry.client.as_deref(), entry.upgrade.as_deref()),
            (Some("127.0.0.1"), Some("websocket"))
        );
    }
}
