//! The inspector: every request through the tunnels, captured as it streams ([`store`]), shown
//! on a local web page with a JSON API under `/api` ([`server`], [`api`]), exported as HAR
//! ([`har`]) and replayed to the tunnel's local service ([`replay`]).
//!
//! `inspect = "127.0.0.1:4040"` (the default; `"off"` disables it) in ggrokd.toml. Capture copies
//! the first `inspect_body_limit` bytes of each body as they pass, counts the rest, and keeps the
//! total under `inspect_memory`, dropping the oldest requests first. It listens on loopback only
//! and answers only requests whose `Host` is its own address.

pub mod api;
pub mod har;
pub mod listener;
pub mod replay;
pub mod server;
pub mod store;
pub mod view;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
pub use store::{Arrival, Entry, Limits, Side, Store};

/// `inspect_body_limit` when the file does not set it.
pub const DEFAULT_BODY_LIMIT: u64 = 64 << 10;

/// `inspect_memory` when the file does not set it.
pub const DEFAULT_MEMORY: u64 = 64 << 20;

/// `inspect` when the file does not set it.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:4040";

/// The inspector of one daemon.
pub struct Inspector {
    /// What it captured.
    pub store: Store,
    /// Its listener, which follows `inspect` through reloads.
    pub listener: listener::Listener,
    enabled: AtomicBool,
}

impl Inspector {
    /// An inspector with `limits`, capturing when `enabled`.
    pub fn new(enabled: bool, limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            store: Store::new(limits),
            listener: listener::Listener::default(),
            enabled: AtomicBool::new(enabled),
        })
    }

    /// Whether requests are captured.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Relaxed)
    }

    /// Turns capture on or off (a reload); what was captured stays until cleared.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Relaxed);
    }
}
