//! Which daemon serves which public TCP port, and the listening sockets of those ports.
//!
//! A port is bound when a TCP tunnel first claims it, on the IP of `listen`, and its accept loop
//! ([`crate::public::tcp`]) asks this table, for every connection, which daemon holds the port
//! now. The rules follow the host registry ([`super::registry`]): a port outside the client's
//! `ports` is refused; the same daemon claiming again keeps it; another ggrokd of the same client
//! takes it over only when its claim asks to; another client is refused while the holder is
//! connected. A port whose daemon went away stays bound, *offline*, for the same grace period as
//! hosts (its connections are closed at once), so a daemon that restarts gets the same socket
//! back; then it is closed. A released port is closed at once.

use super::registry::Owner;
use crate::access::Access;
use crate::config::PortRanges;
use ggrok_proto::access::AccessRules;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Who holds a bound port.
enum Holder<S> {
    Online(Arc<S>),
    Offline { client: String, since: Instant },
}

struct Entry<S> {
    holder: Holder<S>,
    /// The access rules of the latest claim granted (allowed and denied addresses).
    access: Access,
    /// Stops the port's accept loop (and so closes the socket).
    stop: CancellationToken,
}

impl<S> Drop for Entry<S> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The port table.
pub struct Ports<S> {
    ip: IpAddr,
    table: Mutex<HashMap<u16, Entry<S>>>,
    offline_grace: Duration,
}

/// A claim granted.
#[derive(Debug)]
pub struct Granted<S> {
    /// The port, as claimed or as picked for a claim of port 0.
    pub port: u16,
    /// A socket newly bound, to serve with an accept loop that stops on the token.
    pub bound: Option<(std::net::TcpListener, CancellationToken)>,
    /// The daemon of the same client it was taken from, to tell.
    pub took_over: Option<Arc<S>>,
}

/// Why a port claim was refused, in words for the person running ggrokd.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortRefused {
    /// Not in the client's `ports`.
    #[error(
        "client {client:?} may not claim TCP port {port}; its allowed ports are {allowed} ([[client]] ports in server.toml)"
    )]
    NotAllowed {
        /// The client.
        client: String,
        /// The port.
        port: u16,
        /// What it may claim.
        allowed: String,
    },
    /// Another client's connected daemon holds it.
    #[error("TCP port {0} is already served by another client")]
    Taken(u16),
    /// Another connected ggrokd of the same client holds it.
    #[error(
        "TCP port {0} is served by another ggrokd of the same client; restart or reload this one to take it over"
    )]
    HeldBySibling(u16),
    /// The server could not listen on it.
    #[error("the server cannot listen on {addr}: {error}")]
    Bind {
        /// Where it tried.
        addr: SocketAddr,
        /// The system's words.
        error: String,
    },
    /// A claim of port 0 found none free among the client's ports.
    #[error("no free TCP port among client {client:?}'s ports ({allowed})")]
    NoneFree {
        /// The client.
        client: String,
        /// What it may claim.
        allowed: String,
    },
}

impl<S: Owner> Ports<S> {
    /// A table binding ports on `ip`, keeping offline ports bound for `offline_grace`.
    pub fn new(ip: IpAddr, offline_grace: Duration) -> Self {
        Self { ip, table: Mutex::default(), offline_grace }
    }

    /// Claims `port` (0: any free one of `allowed`) for `owner`, of client `client`, behind the
    /// access rules `access` (which replace those of an earlier claim).
    pub fn claim(
        &self,
        port: u16,
        client: &str,
        allowed: &PortRanges,
        owner: &Arc<S>,
        takeover: bool,
        access: Access,
    ) -> Result<Granted<S>, PortRefused> {
        let mut table = self.table.lock().expect("ports lock");
        let granted = self.grant(&mut table, port, client, allowed, owner, takeover)?;
        if let Some(entry) = table.get_mut(&granted.port) {
            entry.access = access;
        }
        Ok(granted)
    }

    fn grant(
        &self,
        table: &mut HashMap<u16, Entry<S>>,
        port: u16,
        client: &str,
        allowed: &PortRanges,
        owner: &Arc<S>,
        takeover: bool,
    ) -> Result<Granted<S>, PortRefused> {
        if port == 0 {
            // Every port of the client is tried in file order; ports held are skipped, so the
            // daemon's own ports are not handed out twice.
            let mut last_error = None;
            for candidate in allowed.iter().filter(|p| !table.contains_key(p)) {
                match self.bind(candidate) {
                    Ok(listener) => return Ok(Self::insert(table, candidate, owner, listener)),
                    Err(e) => last_error = Some(e),
                }
            }
            let allowed = allowed.to_string();
            return Err(last_error.unwrap_or(PortRefused::NoneFree { client: client.to_owned(), allowed }));
        }
        if !allowed.allows(port) {
            return Err(PortRefused::NotAllowed {
                client: client.to_owned(),
                port,
                allowed: allowed.to_string(),
            });
        }
        let none = || Granted { port, bound: None, took_over: None };
        match table.get_mut(&port).map(|e| &mut e.holder) {
            Some(Holder::Online(holder)) if holder.id() == owner.id() => Ok(none()),
            Some(holder @ Holder::Online(_)) => {
                let Holder::Online(old) = &*holder else { unreachable!() };
                if old.client() != owner.client() {
                    return Err(PortRefused::Taken(port));
                }
                let same_daemon = old.identity() == owner.identity();
                if !same_daemon && !takeover {
                    return Err(PortRefused::HeldBySibling(port));
                }
                let old = std::mem::replace(holder, Holder::Online(owner.clone()));
                let Holder::Online(old) = old else { unreachable!() };
                Ok(Granted { took_over: (!same_daemon).then_some(old), ..none() })
            }
            Some(holder @ Holder::Offline { .. }) => {
                *holder = Holder::Online(owner.clone());
                Ok(none())
            }
            None => {
                let listener = self.bind(port)?;
                Ok(Self::insert(table, port, owner, listener))
            }
        }
    }

    fn insert(
        table: &mut HashMap<u16, Entry<S>>,
        port: u16,
        owner: &Arc<S>,
        listener: std::net::TcpListener,
    ) -> Granted<S> {
        let stop = CancellationToken::new();
        table.insert(port, Entry { holder: Holder::Online(owner.clone()), access: None, stop: stop.clone() });
        Granted { port, bound: Some((listener, stop)), took_over: None }
    }

    fn bind(&self, port: u16) -> Result<std::net::TcpListener, PortRefused> {
        let addr = SocketAddr::new(self.ip, port);
        let refused = |e: std::io::Error| PortRefused::Bind { addr, error: e.to_string() };
        let listener = std::net::TcpListener::bind(addr).map_err(refused)?;
        listener.set_nonblocking(true).map_err(refused)?;
        Ok(listener)
    }

    /// Releases `port` if the owner `owner` holds it, closing its socket; returns whether it did.
    pub fn release(&self, port: u16, owner: u64) -> bool {
        let mut table = self.table.lock().expect("ports lock");
        if matches!(table.get(&port).map(|e| &e.holder), Some(Holder::Online(s)) if s.id() == owner) {
            table.remove(&port);
            return true;
        }
        false
    }

    /// The daemon serving `port` now, if it is online, and the port's access rules.
    pub fn holder(&self, port: u16) -> Option<(Arc<S>, Access)> {
        match self.table.lock().expect("ports lock").get(&port) {
            Some(Entry { holder: Holder::Online(s), access, .. }) => Some((s.clone(), access.clone())),
            _ => None,
        }
    }

    /// The owner `owner` went away: its ports go offline (still bound); returns them.
    pub fn remove_owner(&self, owner: u64) -> Vec<u16> {
        let now = Instant::now();
        let mut gone = Vec::new();
        for (port, entry) in self.table.lock().expect("ports lock").iter_mut() {
            if let Holder::Online(s) = &entry.holder
                && s.id() == owner
            {
                entry.holder = Holder::Offline { client: s.client().to_owned(), since: now };
                gone.push(*port);
            }
        }
        gone
    }

    /// Keeps the ports, online or offline, for which `keep(client, port, rules)` holds and
    /// closes the others at once (a reload no longer allows them); `rules` are an online port's
    /// access rules (empty when it has none), `None` for an offline one. Returns each port closed
    /// with the owner that was serving it, if it was online.
    pub fn retain_allowed(
        &self,
        keep: impl Fn(&str, u16, Option<&AccessRules>) -> bool,
    ) -> Vec<(u16, Option<Arc<S>>)> {
        let none = AccessRules::default();
        let mut removed = Vec::new();
        self.table.lock().expect("ports lock").retain(|port, entry| {
            let rules = entry.access.as_ref().map_or(&none, |g| g.rules());
            let (client, holder, rules) = match &entry.holder {
                Holder::Online(s) => (s.client().to_owned(), Some(s.clone()), Some(rules)),
                Holder::Offline { client, .. } => (client.clone(), None, None),
            };
            let kept = keep(&client, *port, rules);
            if !kept {
                removed.push((*port, holder));
            }
            kept
        });
        removed
    }

    /// Closes the offline ports older than the grace period.
    pub fn purge_offline(&self) {
        let grace = self.offline_grace;
        self.table
            .lock()
            .expect("ports lock")
            .retain(|_, e| !matches!(e.holder, Holder::Offline { since, .. } if since.elapsed() >= grace));
    }

    /// Closes the offline ports of `client` that went offline before `before` (its new session
    /// did not claim them again).
    pub fn forget_offline(&self, client: &str, before: Instant) {
        self.table.lock().expect("ports lock").retain(
            |_, e| !matches!(&e.holder, Holder::Offline { client: c, since } if c == client && *since < before),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[derive(Debug)]
    struct S(u64, &'static str, &'static str);
    impl Owner for S {
        fn id(&self) -> u64 {
            self.0
        }
        fn client(&self) -> &str {
            self.1
        }
        fn identity(&self) -> &str {
            self.2
        }
    }

    fn free_range(n: u16) -> PortRanges {
        // A range the system hands out nothing in for this test: probe n free ports in a row.
        loop {
            let base = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            if base > u16::MAX - n {
                continue;
            }
            let probes: Vec<_> =
                (base..base + n).map(|p| std::net::TcpListener::bind(("127.0.0.1", p))).collect();
            if probes.iter().all(Result::is_ok) {
                return PortRanges(vec![base..=base + n - 1]);
            }
        }
    }

    fn ports() -> Ports<S> {
        Ports::new(IpAddr::V4(Ipv4Addr::LOCALHOST), Duration::from_secs(600))
    }

    #[test]
    fn claims_follow_the_client_rules() {
        let p = ports();
        let range = free_range(3);
        let first = *range.0[0].start();
        let (a, a2, sib, bob) = (
            Arc::new(S(1, "a", "d1")),
            Arc::new(S(2, "a", "d1")),
            Arc::new(S(3, "a", "d2")),
            Arc::new(S(4, "b", "d3")),
        );
        let g = p.claim(first, "a", &range, &a, true, None).unwrap();
        assert!(g.bound.is_some(), "bound on first claim");
        assert!(p.claim(first, "a", &range, &a, true, None).unwrap().bound.is_none(), "again: nothing new");
        assert_eq!(p.claim(first, "b", &range, &bob, true, None).unwrap_err(), PortRefused::Taken(first));
        assert_eq!(
            p.claim(first, "a", &range, &sib, false, None).unwrap_err(),
            PortRefused::HeldBySibling(first)
        );
        assert!(
            p.claim(first, "a", &range, &a2, false, None).unwrap().took_over.is_none(),
            "same daemon back"
        );
        assert_eq!(p.holder(first).unwrap().0.id(), 2);
        let took = p.claim(first, "a", &range, &sib, true, None).unwrap();
        assert_eq!(took.took_over.as_ref().unwrap().id(), 2);
        let err = p.claim(1, "a", &range, &a, true, None).unwrap_err();
        assert!(err.to_string().contains("may not claim TCP port 1; its allowed ports are"), "{err}");
        // Port 0 picks the next free one of the range, never one held.
        let any = p.claim(0, "a", &range, &a, true, None).unwrap();
        assert_eq!(any.port, first + 1);
        drop((g, took, any));
    }

    #[test]
    fn offline_ports_stay_bound_for_the_client_and_release_closes() {
        let p = ports();
        let range = free_range(1);
        let port = *range.0[0].start();
        let a = Arc::new(S(1, "a", "d1"));
        let (listener, stop) = p.claim(port, "a", &range, &a, true, None).unwrap().bound.unwrap();
        assert_eq!(p.remove_owner(1), [port]);
        assert!(p.holder(port).is_none());
        assert!(!stop.is_cancelled(), "still bound while offline");
        let back = Arc::new(S(5, "a", "d1"));
        assert!(p.claim(port, "a", &range, &back, false, None).unwrap().bound.is_none(), "same socket back");
        assert!(!p.release(port, 1), "not the holder any more");
        assert!(p.release(port, 5));
        assert!(stop.is_cancelled(), "released: closed");
        drop(listener);
        let busy = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let err = p.claim(port, "a", &range, &a, true, None).unwrap_err();
        assert!(
            matches!(err, PortRefused::Bind { .. })
                && err.to_string().contains("cannot listen on 127.0.0.1:"),
            "{err}"
        );
        drop(busy);
    }
}
