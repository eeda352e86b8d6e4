//! The buffer budget (`buffer_memory`): how much of the bodies on their way through a process it
//! may hold, over all its tunnel connections and threads. In ggrok-server these are answers on
//! their way to public clients; in ggrokd, request bodies on their way to local services.
//!
//! What a process holds for a reader that stops reading is what the other end may send without
//! being asked: one stream window per body, plus the piece it took last and could not pass on,
//! which the server keeps under a window too (`public::paced`): two windows. So the budget sets the
//! stream window every tunnel connection grants, from the number of bodies in flight `n`:
//! `budget / (2n · (2 + log2 n))`, rounded down to a power of two, between [`MIN_WINDOW`] and
//! [`tuning::STREAM_WINDOW`]. The windows shrink as answers pile up — a SETTINGS change, which
//! applies to the streams already open too — and grow back as they finish. Since a window shrinks
//! as soon as an answer opens, even answers that stall one after another, each before the next
//! opens, hold in all less than the budget: the sum of two windows each over `n` is about 0.7 of
//! it (below the floor of [`MIN_WINDOW`], each adds its two floors).
//! A reader that moves gets its window back as it reads; none is cut for being slow.
//!
//! The budget also sizes the read buffers of the HTTP/1 connections bodies come in on (the
//! server's public connections, ggrokd's local ones): a body arrives in pieces of at most that
//! size, and a body that waits for window holds about two (the piece, the next read). Large reads
//! ([`LARGE_READ_BUFFER`]) move a bulk body with a quarter of the system calls; they go to at most
//! `budget / 2 MiB` connections at a time, so together they hold at most a quarter of the budget
//! however their bodies stall, and every other connection reads [`READ_BUFFER`] at a time
//! ([`Budget::read_buffer`]). A connection keeps its buffer size for life, idle or not: the first
//! connections of a busy process may hold the large ones while later bulk transfers read 64 KiB,
//! and after a reload that shrinks the budget, holders keep theirs until they close.

use crate::tuning;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::sync::watch;

/// The smallest stream window the budget grants: below it, frames get too small to move data.
pub const MIN_WINDOW: u32 = 16 << 10;

/// The budgets `buffer_memory` may set, in bytes.
pub const LIMITS: std::ops::RangeInclusive<u64> = 1 << 20..=1 << 40;

/// What a `buffer_memory` outside [`LIMITS`] is told.
pub const LIMITS_MESSAGE: &str = "must be between 1 MiB and 1 TiB";

/// The read buffer of a connection bodies come in on while [`LARGE_READ_BUFFER`]s are all taken.
pub const READ_BUFFER: usize = 64 << 10;

/// The read buffer of a connection bodies come in on while few connections hold one this large.
pub const LARGE_READ_BUFFER: usize = 256 << 10;

/// The process-wide budget; see the module comment.
#[derive(Debug)]
pub struct Budget {
    limit: AtomicU64,
    open: AtomicUsize,
    window: watch::Sender<u32>,
    /// Connections holding a [`LARGE_READ_BUFFER`].
    large_reads: AtomicUsize,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<Self> {
        let (window, _) = watch::channel(window_for(limit, 0));
        Arc::new(Self {
            limit: AtomicU64::new(limit),
            open: AtomicUsize::new(0),
            window,
            large_reads: AtomicUsize::new(0),
        })
    }

    /// The read buffer for a new connection bodies come in on, held until the returned value is
    /// dropped: [`LARGE_READ_BUFFER`] while fewer than `budget / 2 MiB` connections hold one (two
    /// such buffers each are then at most a quarter of the budget), else [`READ_BUFFER`].
    pub fn read_buffer(self: &Arc<Self>) -> ReadBuffer {
        let most = (self.limit() / (8 * LARGE_READ_BUFFER as u64)) as usize;
        let taken = self
            .large_reads
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < most).then_some(n + 1));
        match taken {
            Ok(_) => ReadBuffer { size: LARGE_READ_BUFFER, budget: Some(self.clone()) },
            Err(_) => ReadBuffer { size: READ_BUFFER, budget: None },
        }
    }

    /// Connections holding a [`LARGE_READ_BUFFER`] now.
    pub fn large_reads(&self) -> usize {
        self.large_reads.load(Ordering::Relaxed)
    }

    /// Changes the budget to `limit` bytes (a reloaded configuration): the window follows at once.
    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
        let window = window_for(limit, self.open());
        self.window.send_if_modified(|w| std::mem::replace(w, window) != window);
    }

    /// The budget, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// The stream window every connection should grant now, and its changes.
    pub fn windows(&self) -> watch::Receiver<u32> {
        self.window.subscribe()
    }

    /// The stream window granted now.
    pub fn window(&self) -> u32 {
        *self.window.borrow()
    }

    /// Answers whose bodies are on their way now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Counts an answer whose body is on its way until the returned guard is dropped.
    pub fn answer(self: &Arc<Self>) -> Answer {
        let n = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.adjust(n);
        Answer(self.clone())
    }

    /// Shrinks the window at once when `n` asks for a smaller one; grows it only once `n` has
    /// halved, so a count going up and down by one does not send SETTINGS each time.
    fn adjust(&self, n: usize) {
        let limit = self.limit();
        let smaller = window_for(limit, n);
        let larger = window_for(limit, n.saturating_mul(2));
        self.window.send_if_modified(|w| {
            let next = if smaller < *w {
                smaller
            } else if larger > *w {
                larger
            } else {
                return false;
            };
            *w = next;
            true
        });
    }
}

/// An answer counted by [`Budget::answer`].
#[derive(Debug)]
pub struct Answer(Arc<Budget>);

impl Drop for Answer {
    fn drop(&mut self) {
        let n = self.0.open.fetch_sub(1, Ordering::Relaxed) - 1;
        self.0.adjust(n);
    }
}

/// A connection's read buffer size, from [`Budget::read_buffer`].
#[derive(Debug)]
pub struct ReadBuffer {
    size: usize,
    /// The budget whose large buffer this is.
    budget: Option<Arc<Budget>>,
}

impl ReadBuffer {
    /// The size, in bytes.
    pub fn size(&self) -> usize {
        self.size
    }
}

impl Drop for ReadBuffer {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.large_reads.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The stream window for `n` answers in flight under `limit`; see the module comment.
pub fn window_for(limit: u64, n: usize) -> u32 {
    let n = n.max(1) as f64;
    let share = limit as f64 / (2.0 * n * (2.0 + n.log2()));
    let clamped = share.clamp(MIN_WINDOW as f64, tuning::STREAM_WINDOW as f64) as u32;
    // A power of two at or below: fewer distinct values, fewer SETTINGS.
    1 << (31 - clamped.leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn few_answers_get_the_full_window() {
        assert_eq!(window_for(256 * MIB, 0), tuning::STREAM_WINDOW);
        assert_eq!(window_for(256 * MIB, 4), tuning::STREAM_WINDOW);
    }

    #[test]
    fn windows_shrink_with_answers_in_flight_down_to_the_floor() {
        let mut last = u32::MAX;
        for n in [32, 64, 128, 256, 512, 1000] {
            let w = window_for(256 * MIB, n);
            assert!(w <= last, "{n}: {w} > {last}");
            assert!(w.is_power_of_two());
            last = w;
        }
        assert_eq!(window_for(256 * MIB, 64), 256 << 10);
        assert_eq!(window_for(256 * MIB, 100_000), MIN_WINDOW);
    }

    #[test]
    fn answers_that_stall_one_after_another_hold_less_than_the_budget() {
        for limit in [16 * MIB, 64 * MIB, 256 * MIB, 1024 * MIB] {
            // Each answer fills the window it was opened with and a window's piece, then stalls
            // for good.
            let held: u64 = (1..=1000).map(|n| 2 * window_for(limit, n) as u64).sum();
            let floor = 2 * 1000 * MIN_WINDOW as u64;
            assert!(held <= limit.max(floor) + floor, "{limit}: {held}");
        }
    }

    #[tokio::test]
    async fn the_window_shrinks_at_once_and_grows_back_once_answers_halve() {
        let budget = Budget::new(256 * MIB);
        let mut windows = budget.windows();
        assert_eq!(*windows.borrow_and_update(), tuning::STREAM_WINDOW);
        let mut answers: Vec<Answer> = (0..300).map(|_| budget.answer()).collect();
        assert!(windows.has_changed().unwrap());
        let shrunk = *windows.borrow_and_update();
        assert_eq!(shrunk, window_for(256 * MIB, 300));
        answers.truncate(299);
        assert!(!windows.has_changed().unwrap(), "one fewer answer does not grow the window");
        answers.truncate(100);
        assert!(*windows.borrow_and_update() > shrunk);
        answers.clear();
        assert_eq!(budget.window(), tuning::STREAM_WINDOW);
        assert_eq!(budget.open(), 0);
    }

    #[test]
    fn large_read_buffers_go_to_a_quarter_of_the_budget_and_come_back() {
        let budget = Budget::new(64 * MIB);
        let buffers: Vec<ReadBuffer> = (0..40).map(|_| budget.read_buffer()).collect();
        let large = buffers.iter().filter(|b| b.size() == LARGE_READ_BUFFER).count();
        assert_eq!(large, 32, "64 MiB / 2 MiB");
        assert_eq!(budget.large_reads(), 32);
        assert!(buffers[32..].iter().all(|b| b.size() == READ_BUFFER));
        // Two buffers each, the piece waiting for window and the next read.
        assert!(2 * (large * LARGE_READ_BUFFER) as u64 <= 64 * MIB / 4);
        drop(buffers);
        assert_eq!(budget.large_reads(), 0);
        assert_eq!(budget.read_buffer().size(), LARGE_READ_BUFFER);
        assert_eq!(Budget::new(MIB).read_buffer().size(), READ_BUFFER, "too small a budget for one");
    }

    #[tokio::test]
    async fn a_new_limit_moves_the_window_at_once() {
        let budget = Budget::new(256 * MIB);
        let _answers: Vec<Answer> = (0..300).map(|_| budget.answer()).collect();
        let mut windows = budget.windows();
        budget.set_limit(16 * MIB);
        assert!(windows.has_changed().unwrap());
        assert_eq!(*windows.borrow_and_update(), window_for(16 * MIB, 300));
        budget.set_limit(16 * MIB);
        assert!(!windows.has_changed().unwrap(), "the same limit sends nothing");
        assert_eq!(budget.limit(), 16 * MIB);
    }
}
