//! `replicas = "all"` over DNS: the addresses each server's name resolves to, one connection (or
//! one per worker) to each. Every dial resolves the name afresh and takes the address the fewest
//! other links hold; the name is also resolved again every `resolve_interval`, so an address
//! added is dialled and the links to an address gone move to the others, forgetting the replicas
//! they held there.

use super::Daemon;
use crate::config::{Replicas, ServerUrl};
use crate::link::Link;
use anyhow::anyhow;
use ggrok_proto::tuning;
use std::net::SocketAddr;
use tracing::{info, warn};

/// The addresses `server`'s name resolves to, sorted, without duplicates.
async fn resolve(server: &ServerUrl) -> anyhow::Result<Vec<SocketAddr>> {
    let lookup = tokio::net::lookup_host(server.authority.as_str());
    let found = tokio::time::timeout(tuning::HANDSHAKE_TIMEOUT, lookup)
        .await
        .map_err(|_| anyhow!("resolving {} timed out", server.authority))?
        .map_err(|e| anyhow!("cannot resolve {}: {e}", server.authority))?;
    let mut addresses: Vec<SocketAddr> = found.collect();
    addresses.sort();
    addresses.dedup();
    if addresses.is_empty() {
        return Err(anyhow!("{} resolves to no address", server.authority));
    }
    Ok(addresses)
}

/// Of `addresses`, the one the fewest of `others` (the addresses the server's other links dial)
/// hold; on a tie `mine` (where this link was) if it is one of them, else any of them.
pub fn pick(addresses: &[SocketAddr], others: &[SocketAddr], mine: Option<SocketAddr>) -> Option<SocketAddr> {
    let held = |a: &SocketAddr| others.iter().filter(|o| *o == a).count();
    let fewest = addresses.iter().map(held).min()?;
    let least: Vec<SocketAddr> = addresses.iter().copied().filter(|a| held(a) == fewest).collect();
    match mine {
        Some(mine) if least.contains(&mine) => Some(mine),
        _ => Some(least[fastrand::usize(..least.len())]),
    }
}

impl Daemon {
    fn replicas_all(&self) -> bool {
        *self.replicas.read().expect("replicas lock") == Replicas::All
    }

    /// Where `link` dials next: with `replicas = "all"`, the address of its server's name that the
    /// fewest other links hold (resolved now); else `None`, any of them.
    pub async fn target(&self, link: &Link) -> anyhow::Result<Option<SocketAddr>> {
        if !self.replicas_all() {
            link.dialing(None);
            return Ok(None);
        }
        let addresses = resolve(&link.server).await?;
        self.follow_addresses(&link.server, addresses.clone());
        let _step = self.coverage.lock().expect("coverage lock");
        let others: Vec<SocketAddr> = self
            .links()
            .iter()
            .filter(|l| l.index != link.index && l.server == link.server)
            .filter_map(|l| l.address())
            .collect();
        let target = pick(&addresses, &others, link.address());
        link.dialing(target);
        Ok(target)
    }

    /// With `replicas = "all"`, resolves every server's name again (`resolve_interval`); a
    /// failure keeps the addresses known and is logged.
    pub async fn resolve_again(&self) {
        if !self.replicas_all() {
            return;
        }
        for endpoint in self.endpoints() {
            match resolve(&endpoint.server).await {
                Ok(addresses) => self.follow_addresses(&endpoint.server, addresses),
                Err(e) => warn!(server = %endpoint.server.authority, "{e}; keeping the addresses known"),
            }
        }
    }

    /// `server`'s name now resolves to `addresses`: more links for new ones; the links at
    /// addresses gone dial again (to the others), and the replicas only they held are forgotten.
    fn follow_addresses(&self, server: &ServerUrl, addresses: Vec<SocketAddr>) {
        let links: Vec<_> = self.links().into_iter().filter(|l| l.server == *server).collect();
        let mut moved = Vec::new();
        {
            let mut groups = self.groups.write().expect("groups lock");
            let Some(group) = groups.iter_mut().find(|g| g.endpoint.server == *server) else {
                return;
            };
            if group.addresses == addresses {
                return;
            }
            let added: Vec<_> = addresses.iter().filter(|a| !group.addresses.contains(a)).collect();
            let gone: Vec<_> = group.addresses.iter().filter(|a| !addresses.contains(a)).copied().collect();
            if !group.addresses.is_empty() || addresses.len() > 1 {
                info!(server = %server.authority, ?added, ?gone, "the server's name resolves to {} addresses", addresses.len());
            }
            let stays = |l: &Link| l.address().is_some_and(|a| addresses.contains(&a));
            for link in links.iter().filter(|l| l.address().is_some_and(|a| gone.contains(&a))) {
                if let Some(replica) = link.replica()
                    && !links.iter().any(|l| stays(l) && l.replica().as_deref() == Some(replica.as_str()))
                {
                    group.known.retain(|k| *k != replica);
                }
                moved.push(link.clone());
            }
            if !added.is_empty() {
                (group.exploring, group.misses) = (true, 0);
            }
            group.addresses = addresses;
        }
        for link in moved {
            link.request_reconnect();
        }
        self.update_wanted();
    }
}

#[cfg(test)]
mod tests {
    use super::pick;
    use std::net::SocketAddr;

    #[test]
    fn the_address_fewest_links_hold_and_the_own_one_on_a_tie() {
        let a = |n: u8| SocketAddr::from(([127, 0, 0, n], 80));
        let all = [a(1), a(2), a(3)];
        assert_eq!(pick(&all, &[a(1), a(3)], None), Some(a(2)));
        assert_eq!(pick(&all, &[a(1), a(2), a(3)], Some(a(3))), Some(a(3)), "stays where it was");
        let free = pick(&all, &[a(1)], Some(a(1))).unwrap();
        assert!(free == a(2) || free == a(3), "leaves a held address for a free one: {free}");
        assert_eq!(pick(&[], &[], None), None);
        for _ in 0..20 {
            assert!(all.contains(&pick(&all, &all, None).unwrap()));
        }
    }
}
