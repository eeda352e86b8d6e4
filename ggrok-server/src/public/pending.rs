//! Connections that have not yet sent a request head — where slowloris and handshake floods live —
//! counted in all and per source address, with caps.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Which cap a connection hit.
#[derive(Debug, PartialEq, Eq)]
pub enum Over {
    /// Too many pending connections in all: 503.
    Total,
    /// Too many from this address: 429.
    PerIp,
}

/// The counters.
pub struct Pending {
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_total: usize,
    max_per_ip: usize,
}

/// A pending connection; dropping it (head read, or connection gone) frees its place.
pub struct Slot {
    pending: Arc<Pending>,
    ip: IpAddr,
}

impl Pending {
    /// Counters with these caps.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self { total: AtomicUsize::new(0), per_ip: Mutex::default(), max_total, max_per_ip })
    }

    /// Takes a place for a new connection from `ip`, or says which cap it hit.
    pub fn enter(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Over> {
        let mut per_ip = self.per_ip.lock().expect("pending lock");
        let mine = per_ip.entry(ip).or_insert(0);
        if *mine >= self.max_per_ip {
            return Err(Over::PerIp);
        }
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            return Err(Over::Total);
        }
        *mine += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Slot { pending: self.clone(), ip })
    }

    /// Pending connections now.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_ip = self.pending.per_ip.lock().expect("pending lock");
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        self.pending.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Lets a log line of each kind through at most once a second, counting the ones held back, so
/// an attack cannot flood the log.
#[derive(Default)]
pub struct LogLimiter {
    kinds: Mutex<HashMap<&'static str, (u64, u64)>>,
}

impl LogLimiter {
    /// `Some(n)` when a line of `kind` may be logged, `n` being the lines of that kind held back
    /// since the last one.
    pub fn allow(&self, kind: &'static str) -> Option<u64> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut kinds = self.kinds.lock().expect("log limiter lock");
        let (second, held_back) = kinds.entry(kind).or_insert((u64::MAX, 0));
        if *second == now {
            *held_back += 1;
            return None;
        }
        *second = now;
        Some(std::mem::take(held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_ip_and_in_all_and_frees_on_drop() {
        let p = Pending::new(3, 2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let a1 = p.enter(a).unwrap();
        let _a2 = p.enter(a).unwrap();
        assert_eq!(p.enter(a).err(), Some(Over::PerIp));
        let _b1 = p.enter(b).unwrap();
        assert_eq!(p.enter(b).err(), Some(Over::Total));
        drop(a1);
        assert_eq!(p.total(), 2);
        assert!(p.enter(b).is_ok());
    }

    #[test]
    fn the_log_limiter_lets_one_line_a_second_through() {
        let l = LogLimiter::default();
        assert_eq!(l.allow("a"), Some(0));
        assert_eq!(l.allow("b"), Some(0), "kinds are limited separately");
        let held = (0..100).filter(|_| l.allow("a").is_none()).count();
        assert!(held >= 99, "{held}");
    }
}
