//! The connected daemons. A ggrokd holds several connections (sessions) to the server, one per
//! thread on its side, and names itself in its greeting (a daemon id kept in its state directory):
//! sessions with the same client and daemon id make one [`Daemon`], which holds hosts in the
//! registry and serves them over any of its sessions. A version-1 ggrokd sends no id: each of its
//! sessions is a daemon of its own.

use super::registry::Owner;
use super::session::Session;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// How the identity of a version-1 session, a daemon of its own, starts.
pub const SESSION_IDENTITY: &str = "session-";

/// One ggrokd and its live sessions.
#[derive(Debug)]
pub struct Daemon {
    id: u64,
    client: String,
    identity: String,
    sessions: RwLock<Arc<[Arc<Session>]>>,
}

impl Owner for Daemon {
    fn id(&self) -> u64 {
        self.id
    }
    fn client(&self) -> &str {
        &self.client
    }
    fn identity(&self) -> &str {
        &self.identity
    }
}

impl Daemon {
    /// Its live sessions.
    pub fn sessions(&self) -> Arc<[Arc<Session>]> {
        self.sessions.read().expect("daemon lock").clone()
    }

    /// The session a public request on worker `worker` should use: one of this daemon's
    /// sessions on the same worker when there is one, else any; among several, the less busy of
    /// two picked at random (the "power of two choices": close to the best spread without looking
    /// at them all, and idle sessions share the work instead of the first taking it all), and
    /// whether it is on `worker`. `None` once every session is gone.
    pub fn pick(&self, worker: u32) -> Option<(Arc<Session>, bool)> {
        let sessions = self.sessions.read().expect("daemon lock");
        let local = sessions.iter().filter(|s| s.worker == worker).count();
        let candidates = |i: usize| -> &Arc<Session> {
            if local == 0 {
                &sessions[i]
            } else {
                sessions.iter().filter(|s| s.worker == worker).nth(i).expect("counted")
            }
        };
        let n = if local == 0 { sessions.len() } else { local };
        let chosen = match n {
            0 => return None,
            1 => candidates(0).clone(),
            _ => {
                let a = fastrand::usize(..n);
                let mut b = fastrand::usize(..n - 1);
                if b >= a {
                    b += 1;
                }
                let (a, b) = (candidates(a), candidates(b));
                if b.load() < a.load() { b.clone() } else { a.clone() }
            }
        };
        Some((chosen, local > 0))
    }
}

impl Daemon {
    /// A session other than `not` for a request to send again: the least busy on `worker`, else
    /// the least busy of all; `None` when `not` was its only one.
    pub fn pick_other(&self, worker: u32, not: u64) -> Option<Arc<Session>> {
        let sessions = self.sessions();
        let others = || sessions.iter().filter(|s| s.id != not);
        others()
            .filter(|s| s.worker == worker)
            .min_by_key(|s| s.load())
            .or_else(|| others().min_by_key(|s| s.load()))
            .cloned()
    }
}

/// What [`Daemons::join`] did.
pub struct Joined {
    /// The daemon the session now belongs to.
    pub daemon: Arc<Daemon>,
    /// The session it replaced: the same connection of the same daemon, which the daemon dialled
    /// again (the old one is a ghost whose loss the server has not noticed yet). Close it.
    pub ghost: Option<Arc<Session>>,
    /// How many sessions the daemon has now.
    pub sessions: usize,
}

/// The daemons connected, by client and identity.
#[derive(Default)]
pub struct Daemons {
    table: Mutex<HashMap<(String, String), Arc<Daemon>>>,
    next_id: AtomicU64,
}

impl Daemons {
    /// Every connected daemon.
    pub fn all(&self) -> Vec<Arc<Daemon>> {
        self.table.lock().expect("daemons lock").values().cloned().collect()
    }

    /// Adds `session` to its daemon (made when it is the first). `identity` is the daemon id
    /// from its greeting; `None` (version 1) makes the session a daemon of its own.
    pub fn join(&self, session: &Arc<Session>, identity: Option<&str>) -> Joined {
        let identity = match identity {
            Some(id) => id.to_owned(),
            None => format!("{SESSION_IDENTITY}{}", session.id),
        };
        let mut table = self.table.lock().expect("daemons lock");
        let daemon = table
            .entry((session.client.clone(), identity.clone()))
            .or_insert_with(|| {
                Arc::new(Daemon {
                    id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
                    client: session.client.clone(),
                    identity,
                    sessions: RwLock::new(Arc::from([])),
                })
            })
            .clone();
        let mut sessions = daemon.sessions.write().expect("daemon lock");
        let mut list: Vec<Arc<Session>> = sessions.iter().cloned().collect();
        let ghost = match session.connection {
            Some(index) => {
                list.iter().position(|s| s.connection == Some(index)).map(|at| list.swap_remove(at))
            }
            None => None,
        };
        list.push(session.clone());
        let count = list.len();
        *sessions = list.into();
        drop(sessions);
        Joined { daemon, ghost, sessions: count }
    }

    /// Removes the session `id` from `daemon`; returns true when that left the daemon without
    /// sessions (it is then forgotten: its hosts go offline).
    pub fn leave(&self, daemon: &Arc<Daemon>, id: u64) -> bool {
        let mut table = self.table.lock().expect("daemons lock");
        let mut sessions = daemon.sessions.write().expect("daemon lock");
        let before = sessions.len();
        let list: Vec<Arc<Session>> = sessions.iter().filter(|s| s.id != id).cloned().collect();
        let left = list.len() < before;
        let empty = list.is_empty();
        *sessions = list.into();
        drop(sessions);
        let key = (daemon.client.clone(), daemon.identity.clone());
        if empty && table.get(&key).is_some_and(|d| Arc::ptr_eq(d, daemon)) {
            table.remove(&key);
        }
        left && empty
    }

    /// Each connected daemon: its client, its identity and how many sessions it has, sorted.
    pub fn sessions_per_daemon(&self) -> Vec<(String, String, usize)> {
        let table = self.table.lock().expect("daemons lock");
        let mut all: Vec<_> =
            table.values().map(|d| (d.client.clone(), d.identity.clone(), d.sessions().len())).collect();
        all.sort();
        all
    }

    /// How many daemons are connected.
    pub fn count(&self) -> usize {
        self.table.lock().expect("daemons lock").len()
    }
}
