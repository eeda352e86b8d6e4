//! Which daemon serves which host.
//!
//! Keys are normalised hosts or wildcard patterns (`*.example.com`). A lookup tries the exact host,
//! then the wildcard for its first label. Hosts are held by an *owner*: one ggrokd, with all its
//! connections ([`crate::tunnel::daemons::Daemon`]). A new owner object of the same daemon identity
//! (the daemon came back) gets its hosts at once; another daemon of the same client takes a host
//! over when its claim asks to (and the loser is told), else it is refused; a different client is
//! refused while the holder is connected. When an owner goes away without releasing its hosts,
//! they stay as *offline* for a grace period, so requests get "offline, reconnecting" instead of
//! 404, and any daemon of the same client may claim them.
//!
//! Each entry also carries a meter (`M`, the host's metric handles), made by the registry's meter
//! function when the host is first claimed and kept while the entry lives, offline included, so a
//! reconnecting client keeps its host's series.

use crate::access::Access;
use ggrok_proto::access::AccessRules;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// What the registry needs to know of a host's holder.
pub trait Owner {
    /// Unique for the life of the server process.
    fn id(&self) -> u64;
    /// The `[[client]]` name it authenticated as.
    fn client(&self) -> &str;
    /// Which ggrokd it is: owners with the same client and identity are the same daemon.
    fn identity(&self) -> &str;
}

/// A host's entry: the session serving it, or the memory of one that went away; and its meter.
enum Entry<S, M> {
    /// Served by this owner, behind these access rules.
    Online(Arc<S>, M, Access),
    /// The session holding the host ended without releasing it: its client is expected back.
    Offline { client: String, since: Instant, meter: M },
}

impl<S, M> Entry<S, M> {
    fn meter(&self) -> &M {
        match self {
            Entry::Online(_, meter, _) | Entry::Offline { meter, .. } => meter,
        }
    }
}

/// Makes the meter of a newly claimed host.
type MeterFn<M> = Box<dyn Fn(&str) -> M + Send + Sync>;

/// The host table.
pub struct Registry<S, M = ()> {
    hosts: RwLock<HashMap<String, Entry<S, M>>>,
    /// How long a host whose session went away answers "offline, reconnecting" rather than 404.
    offline_grace: Duration,
    new_meter: MeterFn<M>,
}

/// How long offline hosts are remembered by default.
pub const OFFLINE_GRACE: Duration = Duration::from_secs(600);

impl<S> Default for Registry<S> {
    fn default() -> Self {
        Self::new(OFFLINE_GRACE)
    }
}

impl<S> Registry<S> {
    /// A registry without meters, remembering offline hosts for `offline_grace`.
    pub fn new(offline_grace: Duration) -> Self {
        Self::with_meters(offline_grace, |_| ())
    }
}

impl<S, M> Registry<S, M> {
    /// A registry remembering offline hosts for `offline_grace`, giving each new host the meter
    /// `new_meter` makes for it.
    pub fn with_meters(
        offline_grace: Duration,
        new_meter: impl Fn(&str) -> M + Send + Sync + 'static,
    ) -> Self {
        Self { hosts: RwLock::default(), offline_grace, new_meter: Box::new(new_meter) }
    }
}

/// What [`Registry::claim`] did.
#[derive(Debug)]
pub enum Claim<S> {
    /// The host was free, offline, or already this daemon's.
    Registered,
    /// The host belonged to another connected daemon of the same client, given here.
    TookOver(Arc<S>),
}

/// Why [`Registry::claim`] refused a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Another client's connected session holds it.
    #[error("{0} is already served by another client")]
    Taken(String),
    /// Another connected ggrokd of the same client holds it, and the claim did not ask to take
    /// it over.
    #[error("{0} is served by another ggrokd of the same client; restart or reload this one to take it over")]
    HeldBySibling(String),
    /// The client holds `max_hosts_per_client` hosts already.
    #[error("client {client:?} already holds {held} hosts, the most allowed (max_hosts_per_client)")]
    TooMany {
        /// The client's name.
        client: String,
        /// How many it holds.
        held: usize,
    },
}

/// Where a request for a host goes, with the meter of the entry it matched.
pub enum Route<S, M> {
    /// To this session, through these access rules.
    Online(Arc<S>, M, Access),
    /// Nowhere yet: the session that served it is gone and its client is expected back.
    Offline(M),
    /// Nowhere: no tunnel serves it.
    Unknown,
}

impl<S: Owner, M: Clone> Registry<S, M> {
    /// Gives `host` (a normalised host or pattern) to `owner`, behind the access rules `access`,
    /// or says why not. With `takeover`, a host held by another daemon of the same client is
    /// taken from it. A client may hold at most `max_per_client` hosts over all its daemons. The
    /// same owner claiming again (each of its connections does, and a reload with new rules)
    /// replaces the rules.
    pub fn claim(
        &self,
        host: &str,
        owner: &Arc<S>,
        max_per_client: usize,
        takeover: bool,
        access: Access,
    ) -> Result<Claim<S>, Refused> {
        let mut hosts = self.hosts.write().expect("registry lock");
        let (claim, new) = match hosts.get_mut(host) {
            Some(Entry::Online(holder, _, rules)) if holder.id() == owner.id() => {
                // Equal rules keep their guard, and with it the credentials verified lately.
                if rules.as_ref().map(|g| g.rules()) != access.as_ref().map(|g| g.rules()) {
                    *rules = access;
                }
                return Ok(Claim::Registered);
            }
            Some(Entry::Online(holder, ..))
                if holder.client() == owner.client() && holder.identity() == owner.identity() =>
            {
                (Claim::Registered, false)
            }
            Some(Entry::Online(holder, ..)) if holder.client() == owner.client() => {
                if !takeover {
                    return Err(Refused::HeldBySibling(host.to_owned()));
                }
                (Claim::TookOver(holder.clone()), false)
            }
            Some(Entry::Online(..)) => return Err(Refused::Taken(host.to_owned())),
            Some(Entry::Offline { .. }) | None => (Claim::Registered, true),
        };
        if new {
            let held = hosts
                .values()
                .filter(|e| matches!(e, Entry::Online(s, ..) if s.client() == owner.client()))
                .count();
            if held >= max_per_client {
                return Err(Refused::TooMany { client: owner.client().to_owned(), held });
            }
        }
        let meter = match hosts.get(host) {
            Some(entry) => entry.meter().clone(),
            None => (self.new_meter)(host),
        };
        hosts.insert(host.to_owned(), Entry::Online(owner.clone(), meter, access));
        Ok(claim)
    }

    /// Releases `host` if the owner `session` holds it; returns whether it did.
    pub fn release(&self, host: &str, session: u64) -> bool {
        let mut hosts = self.hosts.write().expect("registry lock");
        if matches!(hosts.get(host), Some(Entry::Online(s, ..)) if s.id() == session) {
            hosts.remove(host);
            return true;
        }
        false
    }

    /// Marks every host the owner `session` holds as offline (its client is expected back);
    /// returns them.
    pub fn remove_owner(&self, session: u64) -> Vec<String> {
        let mut hosts = self.hosts.write().expect("registry lock");
        let now = Instant::now();
        let mut mine = Vec::new();
        for (host, entry) in hosts.iter_mut() {
            if let Entry::Online(s, meter, _) = entry
                && s.id() == session
            {
                let meter = meter.clone();
                *entry = Entry::Offline { client: s.client().to_owned(), since: now, meter };
                mine.push(host.clone());
            }
        }
        mine
    }

    /// Keeps the entries, online or offline, for which `keep(client, host, rules)` holds and
    /// removes the others at once (a reload no longer allows them); `rules` are an online entry's
    /// access rules (empty when it has none), `None` for an offline one. Returns each host removed
    /// with the owner that was serving it, if it was online.
    pub fn retain_allowed(
        &self,
        keep: impl Fn(&str, &str, Option<&AccessRules>) -> bool,
    ) -> Vec<(String, Option<Arc<S>>)> {
        let none = AccessRules::default();
        let mut removed = Vec::new();
        self.hosts.write().expect("registry lock").retain(|host, entry| {
            let (client, holder, rules) = match entry {
                Entry::Online(s, _, access) => {
                    let rules = access.as_ref().map_or(&none, |g| g.rules());
                    (s.client().to_owned(), Some(s.clone()), Some(rules))
                }
                Entry::Offline { client, .. } => (client.clone(), None, None),
            };
            let kept = keep(&client, host, rules);
            if !kept {
                removed.push((host.clone(), holder));
            }
            kept
        });
        removed
    }

    /// Forgets offline hosts older than the grace period.
    pub fn purge_offline(&self) {
        let grace = self.offline_grace;
        self.hosts
            .write()
            .expect("registry lock")
            .retain(|_, e| !matches!(e, Entry::Offline { since, .. } if since.elapsed() >= grace));
    }

    /// Forgets the offline hosts of `client` that went offline before `before`: its new session
    /// has had time to claim what it still serves, so the rest are gone for good.
    pub fn forget_offline(&self, client: &str, before: Instant) {
        self.hosts.write().expect("registry lock").retain(
            |_, e| !matches!(e, Entry::Offline { client: c, since, .. } if c == client && *since < before),
        );
    }

    /// Where a request for the normalised `host` goes: an online exact entry, else an online
    /// wildcard entry, else offline if either is offline (and recent).
    pub fn lookup(&self, host: &str) -> Route<S, M> {
        let hosts = self.hosts.read().expect("registry lock");
        let wildcard = ggrok_proto::host::wildcard_for(host);
        let candidates = [hosts.get(host), wildcard.as_deref().and_then(|w| hosts.get(w))];
        let mut offline = None;
        for entry in candidates.into_iter().flatten() {
            match entry {
                Entry::Online(s, meter, access) => {
                    return Route::Online(s.clone(), meter.clone(), access.clone());
                }
                Entry::Offline { since, meter, .. } if since.elapsed() < self.offline_grace => {
                    offline = offline.or(Some(meter));
                }
                Entry::Offline { .. } => {}
            }
        }
        match offline {
            Some(meter) => Route::Offline(meter.clone()),
            None => Route::Unknown,
        }
    }

    /// Whether `host` (a normalised host or pattern) is claimed: online, or offline within its
    /// grace period.
    pub fn holds(&self, host: &str) -> bool {
        match self.hosts.read().expect("registry lock").get(host) {
            Some(Entry::Online(..)) => true,
            Some(Entry::Offline { since, .. }) => since.elapsed() < self.offline_grace,
            None => false,
        }
    }

    /// The hosts online, each with its owner.
    pub fn online_hosts(&self) -> Vec<(String, Arc<S>)> {
        let hosts = self.hosts.read().expect("registry lock");
        let online = hosts.iter().filter_map(|(host, entry)| match entry {
            Entry::Online(owner, ..) => Some((host.clone(), owner.clone())),
            Entry::Offline { .. } => None,
        });
        online.collect()
    }

    /// Number of hosts online.
    pub fn online(&self) -> usize {
        self.hosts.read().expect("registry lock").values().filter(|e| matches!(e, Entry::Online(..))).count()
    }
}

#[cfg(test)]
mod tests;
