//! Per-stream credit (protocol 3): how far ggrokd may send each stream's bytes towards the server,
//! set by the server stream by stream.
//!
//! HTTP/2 gives a receiver one lever per connection over the streams' windows, the initial window
//! in SETTINGS, and `h2` grants a stream more only as its data is taken. Under the buffer budget
//! ([`crate::budget`]) that window had to shrink for every stream at once, so a thousand stalled
//! downloads held a fast one to 16 KiB per round trip. With credit, the tunnel's HTTP/2 windows
//! stay wide and the server tells ggrokd, per stream, the byte offset it may send up to: the
//! budget's window at the start ([`HEADER_CREDIT`] on the request), then more as the stream's
//! bytes are taken ([`ServerMessage::Credit`](crate::control::ServerMessage::Credit) on the
//! control stream). A stream that keeps up is granted more each time (up to
//! [`tuning::STREAM_WINDOW`]), the part above the budget's window taken from a pool of a quarter of
//! the budget; one that stops reading is granted nothing more and holds at most what it was
//! granted last.
//!
//! - [`Grant`]: the server's side of one stream: counts what was taken, grants more.
//! - [`Credit`]: ggrokd's side of one stream: waits for room to send.
//! - [`Credits`]: ggrokd's streams on one connection, by stream id, for the control stream.

use crate::budget::Budget;
use crate::tuning;
use futures_util::task::AtomicWaker;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Request header from the server (protocol 3): the bytes the answer (or an upgraded stream's
/// bytes towards the server) may send before more credit comes. ggrokd removes it.
pub const HEADER_CREDIT: &str = "ggrok-credit";

/// A stream that takes its whole grant within this long is granted twice as much next time: the
/// grant follows what the stream moves in about this long (its bandwidth-delay product).
const GROW_WITHIN: Duration = Duration::from_millis(20);

/// A stream is granted at most this fraction of what it has moved so far: a reader that stalls
/// after its first bytes (which socket buffers take at any speed) holds little of the pool, and
/// one that has moved 32 MiB may have the full window.
const MOVED_PER_GRANT: u64 = 8;

/// Sends a grant to ggrokd: the stream id and the offset it may send up to.
pub type Teller = Arc<dyn Fn(u32, u64) + Send + Sync>;

/// What a connection's streams are granted from: the budget and the way to ggrokd.
#[derive(Clone)]
pub struct Plan {
    /// The budget whose window sets the grants.
    pub budget: Arc<Budget>,
    /// Sends a grant on the connection's control stream.
    pub tell: Teller,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan").field("window", &self.budget.window()).finish()
    }
}

impl Plan {
    /// The first grant of a new stream, for [`HEADER_CREDIT`].
    pub fn first(&self) -> u64 {
        u64::from(self.budget.window())
    }

    /// The grant of stream `stream` that started with `first`.
    pub fn grant(&self, stream: u32, first: u64) -> Grant {
        Grant {
            stream,
            plan: self.clone(),
            taken: 0,
            upto: first,
            size: first,
            extra: 0,
            since: Instant::now(),
        }
    }
}

/// The server's side of one stream's credit.
#[derive(Debug)]
pub struct Grant {
    stream: u32,
    plan: Plan,
    /// Bytes of the stream taken so far.
    taken: u64,
    /// Offset granted so far.
    upto: u64,
    /// The size of the last grant.
    size: u64,
    /// Of `size`, what is above the budget's window, held from the budget's pool.
    extra: u64,
    /// When the last grant was sent.
    since: Instant,
}

impl Grant {
    /// Notes `n` more bytes taken; once half of the last grant is, grants more.
    pub fn taken(&mut self, n: usize) {
        self.taken_at(n, Instant::now());
    }

    fn taken_at(&mut self, n: usize, now: Instant) {
        self.taken += n as u64;
        if self.upto.saturating_sub(self.taken) > self.size / 2 {
            return;
        }
        let base = u64::from(self.plan.budget.window());
        let fast = now.saturating_duration_since(self.since) < GROW_WITHIN;
        let wanted = if fast {
            (self.size * 2).min(u64::from(tuning::STREAM_WINDOW)).min(self.taken / MOVED_PER_GRANT)
        } else {
            // A stream that slowed down gives room back to the others.
            (self.size / 2).max(base)
        }
        .max(base);
        let extra = wanted - base;
        if extra > self.extra && !self.plan.budget.take_extra(extra - self.extra) {
            // No room in the pool: keep what is held.
        } else {
            if extra < self.extra {
                self.plan.budget.give_back_extra(self.extra - extra);
            }
            self.extra = extra;
        }
        self.size = base + self.extra;
        self.upto = self.taken + self.size;
        self.since = now;
        (self.plan.tell)(self.stream, self.upto);
    }

    /// The offset granted so far.
    pub fn upto(&self) -> u64 {
        self.upto
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.plan.budget.give_back_extra(self.extra);
    }
}

/// ggrokd's side of one stream's credit: the offset it may send up to.
#[derive(Debug)]
pub struct Credit {
    upto: AtomicU64,
    waker: AtomicWaker,
}

impl Credit {
    /// A credit up to `upto` bytes.
    pub fn new(upto: u64) -> Arc<Self> {
        Arc::new(Self { upto: AtomicU64::new(upto), waker: AtomicWaker::new() })
    }

    /// Raises the offset to `upto` (grants only grow; an older one arriving late changes nothing).
    pub fn raise(&self, upto: u64) {
        self.upto.fetch_max(upto, Ordering::AcqRel);
        self.waker.wake();
    }

    /// Bytes that may be sent after `sent`; pending (woken by [`Credit::raise`]) while none.
    pub fn poll_room(&self, sent: u64, cx: &mut Context<'_>) -> Poll<u64> {
        let room = self.upto.load(Ordering::Acquire).saturating_sub(sent);
        if room > 0 {
            return Poll::Ready(room);
        }
        self.waker.register(cx.waker());
        match self.upto.load(Ordering::Acquire).saturating_sub(sent) {
            0 => Poll::Pending,
            room => Poll::Ready(room),
        }
    }

    /// The credit in the form of the header's value, if the request had [`HEADER_CREDIT`].
    pub fn from_header(headers: &mut http::HeaderMap) -> Option<Arc<Self>> {
        let value = headers.remove(HEADER_CREDIT)?;
        let upto = value.to_str().ok()?.trim().parse::<u64>().ok()?;
        Some(Self::new(upto))
    }
}

/// The streams of one connection that have a credit, by stream id.
#[derive(Debug, Default)]
pub struct Credits(Mutex<HashMap<u32, Arc<Credit>>>);

impl Credits {
    /// Keeps `credit` for stream `stream` until the returned guard is dropped.
    pub fn register(self: &Arc<Self>, stream: u32, credit: Arc<Credit>) -> Registered {
        self.0.lock().expect("credits lock").insert(stream, credit);
        Registered { credits: self.clone(), stream }
    }

    /// Applies a grant; one for a stream that is gone is dropped.
    pub fn raise(&self, stream: u32, upto: u64) {
        if let Some(credit) = self.0.lock().expect("credits lock").get(&stream) {
            credit.raise(upto);
        }
    }

    /// Streams with a credit now.
    pub fn len(&self) -> usize {
        self.0.lock().expect("credits lock").len()
    }

    /// Whether no stream has a credit.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A stream's place in [`Credits`], removed on drop.
#[derive(Debug)]
pub struct Registered {
    credits: Arc<Credits>,
    stream: u32,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.credits.0.lock().expect("credits lock").remove(&self.stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// The grants told, in order.
    type Told = Arc<Mutex<Vec<(u32, u64)>>>;

    fn plan(limit: u64) -> (Plan, Told) {
        let told = Arc::new(Mutex::new(Vec::new()));
        let log = told.clone();
        let tell: Teller = Arc::new(move |s, upto| log.lock().unwrap().push((s, upto)));
        (Plan { budget: Budget::new(limit), tell }, told)
    }

    #[test]
    fn a_stream_that_keeps_up_is_granted_more_up_to_the_stream_window() {
        let (plan, told) = plan(64 << 20);
        // Enough answers that the budget's window is at its floor.
        let _answers: Vec<_> = (0..2000).map(|_| plan.budget.answer()).collect();
        let first = plan.first();
        assert_eq!(first, u64::from(crate::budget::MIN_WINDOW));
        let mut grant = plan.grant(7, first);
        let start = grant.since;
        for i in 0..64 {
            let room = grant.upto() - grant.taken;
            grant.taken_at(room as usize, start + Duration::from_millis(i));
        }
        let last = told.lock().unwrap().last().copied().unwrap();
        assert_eq!(last.0, 7);
        assert_eq!(grant.size, u64::from(tuning::STREAM_WINDOW), "grown to the full window");
        assert_eq!(last.1, grant.taken + u64::from(tuning::STREAM_WINDOW));
        let held = grant.extra;
        assert!(held > 0 && plan.budget.extra() == held);
        drop(grant);
        assert_eq!(plan.budget.extra(), 0, "the pool gets it back");
    }

    #[test]
    fn a_stream_that_slows_down_gives_its_extra_back() {
        let (plan, _) = plan(64 << 20);
        let _answers: Vec<_> = (0..2000).map(|_| plan.budget.answer()).collect();
        let mut grant = plan.grant(7, plan.first());
        let start = grant.since;
        for i in 0..16 {
            let room = grant.upto() - grant.taken;
            grant.taken_at(room as usize, start + Duration::from_millis(i));
        }
        let grown = grant.size;
        assert!(grown > plan.first());
        // Then a reader at a trickle: a second between grants.
        for i in 0..16 {
            let room = grant.upto() - grant.taken;
            grant.taken_at(room as usize, start + Duration::from_secs(i + 1));
        }
        assert_eq!(grant.size, plan.first(), "back to the budget's window");
        assert_eq!(plan.budget.extra(), 0);
    }

    #[test]
    fn a_fast_start_is_not_enough_to_hold_much_of_the_pool() {
        let (plan, _) = plan(64 << 20);
        let _answers: Vec<_> = (0..2000).map(|_| plan.budget.answer()).collect();
        // What socket buffers take at once from a reader that then stops: 256 KiB in no time.
        let mut grant = plan.grant(1, plan.first());
        let start = grant.since;
        while grant.taken < 256 << 10 {
            let room = grant.upto() - grant.taken;
            grant.taken_at(room as usize, start);
        }
        assert!(grant.size <= (256 << 10) / MOVED_PER_GRANT + plan.first(), "{}", grant.size);
    }

    #[test]
    fn a_stream_that_stops_is_granted_nothing_more() {
        let (plan, told) = plan(64 << 20);
        let mut grant = plan.grant(1, 1 << 20);
        grant.taken(100 << 10);
        assert!(told.lock().unwrap().is_empty(), "less than half taken: no grant yet");
        grant.taken(500 << 10);
        assert_eq!(told.lock().unwrap().len(), 1);
        let upto = grant.upto();
        assert_eq!(upto, (600 << 10) + grant.size);
        // Nothing more taken: nothing more granted, whatever the time.
        assert_eq!(told.lock().unwrap().len(), 1);
    }

    #[test]
    fn the_pool_caps_what_fast_streams_hold_beyond_the_window() {
        let (plan, _) = plan(16 << 20);
        let _answers: Vec<_> = (0..2000).map(|_| plan.budget.answer()).collect();
        let mut grants: Vec<Grant> = (0..64).map(|s| plan.grant(s, plan.first())).collect();
        for _ in 0..64 {
            for g in &mut grants {
                let room = g.upto() - g.taken;
                let now = g.since;
                g.taken_at(room as usize, now);
            }
        }
        assert!(plan.budget.extra() <= (16 << 20) / 4, "{}", plan.budget.extra());
        let held: u64 = grants.iter().map(|g| g.upto() - g.taken).sum();
        assert!(held <= (16 << 20) / 4 + 64 * u64::from(crate::budget::MIN_WINDOW), "{held}");
    }

    #[test]
    fn credit_waits_for_room_and_ignores_late_grants() {
        let credit = Credit::new(100);
        let woken = Arc::new(AtomicUsize::new(0));
        struct W(Arc<AtomicUsize>);
        impl std::task::Wake for W {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let waker = std::task::Waker::from(Arc::new(W(woken.clone())));
        let mut cx = Context::from_waker(&waker);
        assert_eq!(credit.poll_room(40, &mut cx), Poll::Ready(60));
        assert_eq!(credit.poll_room(100, &mut cx), Poll::Pending);
        credit.raise(300);
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        credit.raise(200);
        assert_eq!(credit.poll_room(100, &mut cx), Poll::Ready(200), "a late, smaller grant changes nothing");
    }

    #[test]
    fn credits_by_stream_are_dropped_with_their_stream() {
        let credits = Arc::new(Credits::default());
        let credit = Credit::new(10);
        let registered = credits.register(3, credit.clone());
        credits.raise(3, 50);
        credits.raise(9, 50);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert_eq!(credit.poll_room(0, &mut cx), Poll::Ready(50));
        drop(registered);
        assert!(credits.is_empty());
    }

    #[test]
    fn the_header_is_read_and_removed() {
        let mut headers = http::HeaderMap::new();
        headers.insert(HEADER_CREDIT, "65536".parse().unwrap());
        let credit = Credit::from_header(&mut headers).unwrap();
        assert!(headers.is_empty());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert_eq!(credit.poll_room(0, &mut cx), Poll::Ready(65536));
        assert!(Credit::from_header(&mut http::HeaderMap::new()).is_none());
    }
}
