//! What the inspector keeps: the latest requests through the tunnels, each with its headers and
//! the first `inspect_body_limit` bytes of each body, copied as they stream. The total is held
//! under `inspect_memory`: the oldest entries go first. Nothing is written to disk.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::broadcast;

/// Unix time in milliseconds.
fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Bytes an entry costs besides what its strings and bodies hold: the entry itself, its state,
/// the allocations' own overhead, its place in the list.
const ENTRY_OVERHEAD: u64 = 1024;

/// What one string costs: its bytes and its allocation's overhead.
fn string_cost(s: &str) -> u64 {
    s.len() as u64 + 32
}

/// Headers kept as one block of text, `name: value` lines: one allocation per request instead of
/// two per header, since most requests are never looked at. [`HeaderText::pairs`] splits them.
#[derive(Debug, Default, Clone)]
pub struct HeaderText(String);

impl HeaderText {
    /// `headers` as text, with `host` first when they have no `Host` (HTTP/2 carries it in
    /// `:authority`, and the local service gets it as `Host`).
    pub fn new(headers: &HeaderMap, host: Option<&str>) -> Self {
        let mut text = String::with_capacity(headers.len() * 32 + host.map_or(0, |h| h.len() + 7));
        if let Some(host) = host.filter(|_| !headers.contains_key(http::header::HOST)) {
            text.push_str("host: ");
            text.push_str(host);
            text.push('\n');
        }
        for (name, value) in headers {
            text.push_str(name.as_str());
            text.push_str(": ");
            // Header values hold no line breaks; bytes that are not UTF-8 are shown lossily.
            text.push_str(&String::from_utf8_lossy(value.as_bytes()));
            text.push('\n');
        }
        Self(text)
    }

    /// The headers as pairs, in order.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.0.lines().filter_map(|l| l.split_once(": ").map(|(n, v)| (n.to_owned(), v.to_owned()))).collect()
    }

    /// The value of the first header `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .lines()
            .find_map(|l| l.split_once(": ").filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v))
    }

    /// Bytes held.
    pub fn cost(&self) -> u64 {
        self.0.capacity() as u64 + 32
    }
}

/// The inspector's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of each body kept (the rest is counted and marked truncated).
    pub body: u64,
    /// Bytes all entries may hold together.
    pub memory: u64,
    /// Requests kept, at most (ggrokd's `request_log`).
    pub count: usize,
}

/// A body, as far as it was copied.
#[derive(Debug, Default, Clone)]
pub struct BodyCopy {
    /// Its first bytes, up to the limit.
    pub data: BytesMut,
    /// Its whole size so far.
    pub size: u64,
    /// Whether bytes beyond the limit were left out.
    pub truncated: bool,
}

/// What changes while a request is in flight.
#[derive(Debug, Default, Clone)]
pub struct Live {
    /// The answer's status, 0 until it is known.
    pub status: u16,
    /// The answer's headers.
    pub response_headers: HeaderText,
    /// The request body.
    pub request_body: BodyCopy,
    /// The answer's body.
    pub response_body: BodyCopy,
    /// From arrival to the end of the answer (or of the upgraded connection), once done.
    pub duration_us: Option<u64>,
    /// Bytes of an upgraded connection, each way (public to local, local to public).
    pub upgraded_bytes: Option<(u64, u64)>,
    /// Why it failed, if it did (the local service unreachable, the client gone).
    pub error: Option<String>,
}

/// One request, captured.
#[derive(Debug)]
pub struct Entry {
    /// Its id, increasing.
    pub id: u64,
    /// Unix time (milliseconds) it arrived.
    pub time_ms: u64,
    /// The public host.
    pub host: String,
    /// The tunnel (host or pattern) it went to.
    pub tunnel: String,
    /// The method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The request's headers, as the local service got them (before hop-by-hop removal).
    pub request_headers: HeaderText,
    /// The public client's address.
    pub client: Option<IpAddr>,
    /// The upgrade protocol (`websocket`), for upgraded connections.
    pub upgrade: Option<String>,
    /// The entry this one replayed.
    pub replay_of: Option<u64>,
    /// What changes while it is in flight.
    pub live: Mutex<Live>,
    shared: Arc<Shared>,
    charged: AtomicU64,
    evicted: AtomicBool,
}

/// Which body of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The request's.
    Request,
    /// The answer's.
    Response,
}

impl Entry {
    /// Copies `data` of the body on `side`, up to the limit; counts it whole.
    pub fn tap(&self, side: Side, data: &[u8]) {
        let limit = self.shared.limits.read().expect("limits lock").body;
        let mut live = self.live.lock().expect("entry lock");
        let body = match side {
            Side::Request => &mut live.request_body,
            Side::Response => &mut live.response_body,
        };
        body.size += data.len() as u64;
        let room = limit.saturating_sub(body.data.len() as u64) as usize;
        let take = room.min(data.len());
        if take < data.len() {
            body.truncated = true;
        }
        if take > 0 && !self.evicted.load(Relaxed) {
            body.data.extend_from_slice(&data[..take]);
            self.charge(take as u64);
        }
    }

    /// The answer's status and headers arrived.
    pub fn answered(&self, status: u16, headers: &HeaderMap) {
        let headers = HeaderText::new(headers, None);
        let size = headers.cost();
        {
            let mut live = self.live.lock().expect("entry lock");
            live.status = status;
            live.response_headers = headers;
        }
        self.charge(size);
        self.shared.notify(self.id);
    }

    /// The request is over (answer sent, connection closed, or abandoned).
    pub fn finished(
        &self,
        status: u16,
        duration_us: u64,
        upgraded: Option<(u64, u64)>,
        error: Option<String>,
    ) {
        {
            let mut live = self.live.lock().expect("entry lock");
            if live.status == 0 {
                live.status = status;
            }
            live.duration_us = Some(duration_us);
            live.upgraded_bytes = upgraded;
            if live.error.is_none() {
                live.error = error;
            }
        }
        self.shared.notify(self.id);
    }

    fn charge(&self, bytes: u64) {
        if !self.evicted.load(Relaxed) {
            self.charged.fetch_add(bytes, Relaxed);
            self.shared.used.fetch_add(bytes, Relaxed);
        }
    }
}

/// The request's or answer's headers, as pairs (values that are not UTF-8 shown lossily).
pub fn pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect()
}

/// What the entries and the inspector share.
#[derive(Debug)]
struct Shared {
    limits: RwLock<Limits>,
    used: AtomicU64,
    events: broadcast::Sender<u64>,
}

impl Shared {
    fn notify(&self, id: u64) {
        // Nobody follows most of the time: skip the channel's lock then.
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(id);
        }
    }
}

/// A request on its way in, before it is captured.
pub struct Arrival<'a> {
    /// The public host.
    pub host: &'a str,
    /// The tunnel (host or pattern).
    pub tunnel: &'a str,
    /// The method.
    pub method: &'a str,
    /// Path and query.
    pub path: &'a str,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The public client's address.
    pub client: Option<IpAddr>,
    /// The upgrade protocol.
    pub upgrade: Option<&'a str>,
    /// The entry replayed.
    pub replay_of: Option<u64>,
}

/// The captured requests, oldest first.
pub struct Store {
    shared: Arc<Shared>,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    list: VecDeque<Arc<Entry>>,
    next_id: u64,
    dropped: u64,
}

impl Store {
    /// An empty store with these limits.
    pub fn new(limits: Limits) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            shared: Arc::new(Shared { limits: RwLock::new(limits), used: AtomicU64::new(0), events }),
            entries: Mutex::new(Entries::default()),
        }
    }

    /// The limits now.
    pub fn limits(&self) -> Limits {
        *self.shared.limits.read().expect("limits lock")
    }

    /// Changes the limits (a reload); the oldest entries go if the memory cap is lower.
    pub fn set_limits(&self, limits: Limits) {
        *self.shared.limits.write().expect("limits lock") = limits;
        self.evict();
    }

    /// Captures a request that arrived.
    pub fn begin(&self, a: &Arrival) -> Arc<Entry> {
        let request_headers = HeaderText::new(a.headers, Some(a.host));
        let size = request_headers.cost()
            + string_cost(a.host)
            + string_cost(a.tunnel)
            + string_cost(a.method)
            + string_cost(a.path);
        let entry = {
            let mut entries = self.entries.lock().expect("entries lock");
            entries.next_id += 1;
            let entry = Arc::new(Entry {
                id: entries.next_id,
                time_ms: unix_ms(),
                host: a.host.to_owned(),
                tunnel: a.tunnel.to_owned(),
                method: a.method.to_owned(),
                path: a.path.to_owned(),
                request_headers,
                client: a.client,
                upgrade: a.upgrade.map(str::to_owned),
                replay_of: a.replay_of,
                live: Mutex::new(Live::default()),
                shared: self.shared.clone(),
                charged: AtomicU64::new(0),
                evicted: AtomicBool::new(false),
            });
            entries.list.push_back(entry.clone());
            entry
        };
        entry.charge(size + ENTRY_OVERHEAD);
        self.evict();
        self.shared.notify(entry.id);
        entry
    }

    /// Drops the oldest entries while there are more than the count, or the total is over the
    /// memory cap (the newest stays).
    pub fn evict(&self) {
        let Limits { memory, count, .. } = self.limits();
        let mut entries = self.entries.lock().expect("entries lock");
        let over =
            |entries: &Entries| entries.list.len() > count.max(1) || self.shared.used.load(Relaxed) > memory;
        while over(&entries) && entries.list.len() > 1 {
            let Some(old) = entries.list.pop_front() else { break };
            forget(&self.shared, &old);
            entries.dropped += 1;
        }
    }

    /// Every entry, oldest first, and how many were dropped for room since the last clear.
    pub fn all(&self) -> (Vec<Arc<Entry>>, u64) {
        let entries = self.entries.lock().expect("entries lock");
        (entries.list.iter().cloned().collect(), entries.dropped)
    }

    /// The entry `id`, if still kept.
    pub fn get(&self, id: u64) -> Option<Arc<Entry>> {
        let entries = self.entries.lock().expect("entries lock");
        let at = entries.list.binary_search_by_key(&id, |e| e.id).ok()?;
        Some(entries.list[at].clone())
    }

    /// Forgets every entry.
    pub fn clear(&self) {
        let mut entries = self.entries.lock().expect("entries lock");
        for old in entries.list.drain(..) {
            forget(&self.shared, &old);
        }
        entries.dropped = 0;
        drop(entries);
        self.shared.notify(0);
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.shared.used.load(Relaxed)
    }

    /// Ids of entries as they arrive or change (0: the list was cleared).
    pub fn subscribe(&self) -> broadcast::Receiver<u64> {
        self.shared.events.subscribe()
    }
}

/// Uncharges `entry`, which no longer counts (it may live on while its request is in flight,
/// copying nothing more).
fn forget(shared: &Shared, entry: &Entry) {
    if !entry.evicted.swap(true, Relaxed) {
        shared.used.fetch_sub(entry.charged.load(Relaxed), Relaxed);
        let mut live = entry.live.lock().expect("entry lock");
        live.request_body.data = BytesMut::new();
        live.response_body.data = BytesMut::new();
    }
}

impl BodyCopy {
    /// The bytes kept.
    pub fn bytes(&self) -> Bytes {
        Bytes::copy_from_slice(&self.data)
    }
}

#[cfg(test)]
mod tests;
