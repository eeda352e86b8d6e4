//! Where a link landed: whether it keeps the replica and worker it reached, or dials again to
//! cover one that no other link to the same server holds ([`crate::coverage`]); the replicas
//! seen per server, and exploring for more with `replicas = "all"`.

use super::Daemon;
use crate::config::{Replicas, ServerUrl};
use crate::coverage::{self, Landing, Seen};
use crate::link::Link;
use std::sync::Arc;

impl Daemon {
    /// Link `link` landed on `replica` (if the server names itself) and `worker` of `workers`:
    /// whether it keeps the connection (and now holds them), or should dial again to land on a
    /// replica or worker that no other link to the same server holds ([`coverage`]).
    pub fn keep_landing(
        &self,
        link: &Link,
        replica: Option<&str>,
        worker: Option<u32>,
        workers: Option<u32>,
    ) -> bool {
        let _step = self.coverage.lock().expect("coverage lock");
        let mates: Vec<_> =
            self.links().into_iter().filter(|l| l.index != link.index && l.server == link.server).collect();
        if let Some(replica) = replica
            && !self.keep_replica(link, replica, &mates)
        {
            return false;
        }
        if let (Some(worker), Some(workers)) = (worker, workers) {
            let others: Vec<u32> = mates
                .iter()
                .filter(|l| l.replica().as_deref() == replica)
                .filter_map(|l| l.worker())
                .collect();
            if coverage::should_redial(worker, workers, &others, link.redials()) {
                return false;
            }
            link.hold_worker(worker);
        }
        true
    }

    /// The replica half of [`Daemon::keep_landing`]: learns a new replica, counts exploring misses.
    fn keep_replica(&self, link: &Link, replica: &str, mates: &[Arc<Link>]) -> bool {
        let others: Vec<String> = mates.iter().filter_map(|l| l.replica()).collect();
        let mut groups = self.groups.write().expect("groups lock");
        let Some(group) = groups.iter_mut().find(|g| g.endpoint.server == link.server) else {
            return true;
        };
        let per_replica = {
            let setting = *self.connections.read().expect("connections lock");
            if group.announced.version_one { 1 } else { setting.wanted(group.announced.workers) }
        };
        let landing = coverage::landing(&Seen {
            replica,
            others: &others,
            known: &group.known,
            per_replica,
            redials: link.redials(),
            misses: group.misses + 1,
            exploring: group.exploring,
        });
        let mut replan = false;
        if !group.known.iter().any(|k| k == replica) {
            tracing::info!(server = %link.server.authority, replica, "a new replica of the server");
            group.known.push(replica.to_owned());
            group.misses = 0;
            replan = true;
        }
        match landing {
            Landing::Explore => group.misses += 1,
            Landing::Settle => {
                tracing::debug!(server = %link.server.authority, "explored: every landing found a replica held");
                (group.exploring, group.misses, replan) = (false, 0, true);
            }
            Landing::Keep | Landing::Redial => {}
        }
        drop(groups);
        if replan {
            self.update_wanted();
        }
        !matches!(landing, Landing::Redial | Landing::Explore)
    }

    /// Forgets the replicas seen that no connected link holds (gone, or renamed as pods are on
    /// every restart, so the list cannot grow without bound) and, with `replicas = "all"`, looks
    /// again for replicas, which finds them if they are back: called now and then
    /// ([`crate::links`]).
    pub fn explore_again(&self) {
        let all = *self.replicas.read().expect("replicas lock") == Replicas::All;
        let holders: Vec<(ServerUrl, String)> =
            self.links().iter().filter_map(|l| Some((l.server.clone(), l.replica()?))).collect();
        let mut replan = false;
        for group in self.groups.write().expect("groups lock").iter_mut() {
            let server = group.endpoint.server.clone();
            let before = group.known.len();
            group.known.retain(|k| holders.iter().any(|(s, r)| *s == server && r == k));
            if group.known.len() < before {
                tracing::info!(server = %server.authority, "forgot {} replicas no connection holds", before - group.known.len());
                replan = true;
                if all {
                    (group.exploring, group.misses) = (true, 0);
                }
            }
        }
        if replan {
            self.update_wanted();
        }
    }
}
