//! Which session serves which host.
//!
//! Keys are normalised hosts or wildcard patterns (`*.example.com`). A lookup tries the exact host,
//! then the wildcard for its first label. A session of the same client takes a host over from an
//! older session at once (a reconnect is never locked out by its own ghost); a different client is
//! refused while the holder is connected.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// What the registry needs to know of a session.
pub trait Owner {
    /// Unique for the life of the server process.
    fn id(&self) -> u64;
    /// The `[[client]]` name it authenticated as.
    fn client(&self) -> &str;
}

/// The host table.
pub struct Registry<S> {
    hosts: RwLock<HashMap<String, Arc<S>>>,
}

impl<S> Default for Registry<S> {
    fn default() -> Self {
        Self { hosts: RwLock::default() }
    }
}

/// What [`Registry::claim`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The host was free, or already this session's.
    Registered,
    /// The host belonged to an older session of the same client (given by id).
    TookOver(u64),
}

impl<S: Owner> Registry<S> {
    /// Gives `host` (a normalised host or pattern) to `session`, or says why not.
    pub fn claim(&self, host: &str, session: &Arc<S>) -> Result<Claim, String> {
        let mut hosts = self.hosts.write().expect("registry lock");
        match hosts.get(host) {
            Some(holder) if holder.id() == session.id() => Ok(Claim::Registered),
            Some(holder) if holder.client() == session.client() => {
                let old = holder.id();
                hosts.insert(host.to_owned(), session.clone());
                Ok(Claim::TookOver(old))
            }
            Some(_) => Err(format!("{host} is already served by another client")),
            None => {
                hosts.insert(host.to_owned(), session.clone());
                Ok(Claim::Registered)
            }
        }
    }

    /// Releases `host` if `session` holds it; returns whether it did.
    pub fn release(&self, host: &str, session: u64) -> bool {
        let mut hosts = self.hosts.write().expect("registry lock");
        if hosts.get(host).is_some_and(|s| s.id() == session) {
            hosts.remove(host);
            return true;
        }
        false
    }

    /// Releases every host `session` holds; returns them.
    pub fn remove_session(&self, session: u64) -> Vec<String> {
        let mut hosts = self.hosts.write().expect("registry lock");
        let mine: Vec<String> =
            hosts.iter().filter(|(_, s)| s.id() == session).map(|(h, _)| h.clone()).collect();
        for host in &mine {
            hosts.remove(host);
        }
        mine
    }

    /// The session serving the normalised `host`, exact names first.
    pub fn lookup(&self, host: &str) -> Option<Arc<S>> {
        let hosts = self.hosts.read().expect("registry lock");
        if let Some(s) = hosts.get(host) {
            return Some(s.clone());
        }
        ggrok_proto::host::wildcard_for(host).and_then(|w| hosts.get(&w).cloned())
    }

    /// Number of hosts registered.
    pub fn len(&self) -> usize {
        self.hosts.read().expect("registry lock").len()
    }

    /// Whether no host is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct S(u64, &'static str);
    impl Owner for S {
        fn id(&self) -> u64 {
            self.0
        }
        fn client(&self) -> &str {
            self.1
        }
    }

    #[test]
    fn exact_before_wildcard() {
        let r = Registry::default();
        let (a, b) = (Arc::new(S(1, "alice")), Arc::new(S(2, "alice")));
        r.claim("*.example.com", &a).unwrap();
        r.claim("api.example.com", &b).unwrap();
        assert_eq!(r.lookup("api.example.com").unwrap().id(), 2);
        assert_eq!(r.lookup("www.example.com").unwrap().id(), 1);
        assert!(r.lookup("example.com").is_none());
        assert!(r.lookup("a.b.example.com").is_none());
    }

    #[test]
    fn same_client_takes_over_other_client_is_refused() {
        let r = Registry::default();
        let old = Arc::new(S(1, "alice"));
        let new = Arc::new(S(2, "alice"));
        let mallory = Arc::new(S(3, "mallory"));
        assert_eq!(r.claim("a.test", &old), Ok(Claim::Registered));
        assert_eq!(r.claim("a.test", &old), Ok(Claim::Registered));
        assert_eq!(r.claim("a.test", &new), Ok(Claim::TookOver(1)));
        assert!(r.claim("a.test", &mallory).unwrap_err().contains("another client"));
        // The old session going away must not take the host from the new one.
        assert!(r.remove_session(1).is_empty());
        assert_eq!(r.lookup("a.test").unwrap().id(), 2);
        assert!(!r.release("a.test", 3));
        assert!(r.release("a.test", 2));
        assert!(r.is_empty());
    }

    #[test]
    fn remove_session_releases_all_its_hosts() {
        let r = Registry::default();
        let a = Arc::new(S(1, "a"));
        let b = Arc::new(S(2, "b"));
        r.claim("x.test", &a).unwrap();
        r.claim("y.test", &a).unwrap();
        r.claim("z.test", &b).unwrap();
        let mut gone = r.remove_session(1);
        gone.sort();
        assert_eq!(gone, ["x.test", "y.test"]);
        assert_eq!(r.len(), 1);
    }
}
