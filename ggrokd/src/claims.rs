//! Where one tunnel stands with the server, connection by connection, and the rule that keeps two
//! ggrokd of one client from flapping.
//!
//! A tunnel is online while any connection has it accepted (with protocol version 2 the server
//! holds claims per daemon, so any connection's acceptance means all of them carry it). A claim
//! takes the tunnel over from another live ggrokd only while the tunnel is *fresh*: from its
//! creation (daemon start, `ggrokctl add`, a reload that adds or changes it) until some connection
//! got it accepted. Reconnects claim without takeover, so they never take a tunnel back. A tunnel
//! another ggrokd took (`Displaced`) is not claimed at all until it is made fresh again.

/// Where a tunnel stands with the server, over all of the daemon's connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelState {
    /// Not (yet) accepted on any connection.
    Connecting,
    /// The server routes its host here (over at least one connection).
    Online,
    /// The server refused the host.
    Refused(String),
    /// Another ggrokd of the same client took it over; not claimed again until it is made fresh
    /// (added again, a reload, a restart).
    Displaced(String),
}

/// Where a tunnel stands on one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum OnLink {
    /// No answer yet on this connection (or it is down).
    #[default]
    Unclaimed,
    /// Accepted.
    Online,
    /// Refused, with the reason.
    Refused(String),
}

/// A tunnel's claims with the server. New is fresh.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    /// By connection index.
    links: Vec<OnLink>,
    /// Taken over by another ggrokd, with the server's words.
    displaced: Option<String>,
    /// Some connection got it accepted since it was made fresh.
    accepted: bool,
}

impl Claims {
    /// The state over all connections: displaced, else online on any, else the latest refusal,
    /// else connecting.
    pub fn state(&self) -> TunnelState {
        if let Some(reason) = &self.displaced {
            return TunnelState::Displaced(reason.clone());
        }
        if self.links.contains(&OnLink::Online) {
            return TunnelState::Online;
        }
        let refusal = self.links.iter().rev().find_map(|l| match l {
            OnLink::Refused(reason) => Some(reason),
            _ => None,
        });
        match refusal {
            Some(reason) => TunnelState::Refused(reason.clone()),
            None => TunnelState::Connecting,
        }
    }

    /// The `takeover` flag of the next claim, or `None` when the tunnel must not be claimed
    /// (displaced): true only while fresh.
    pub fn takeover(&self) -> Option<bool> {
        self.displaced.is_none().then_some(!self.accepted)
    }

    fn link(&mut self, index: u32) -> &mut OnLink {
        let index = index as usize;
        if self.links.len() <= index {
            self.links.resize(index + 1, OnLink::Unclaimed);
        }
        &mut self.links[index]
    }

    /// Connection `link` got the claim accepted. After a displacement (an acceptance that crossed
    /// it) this changes nothing: the tunnel stays displaced until made fresh.
    pub fn claimed(&mut self, link: u32) {
        if self.displaced.is_none() {
            *self.link(link) = OnLink::Online;
            self.accepted = true;
        }
    }

    /// The tunnel this daemon was displaced from is free again: no longer displaced, and claimed
    /// without takeover (as on a reconnect), so that it takes the tunnel from nobody. Returns
    /// whether it was displaced.
    pub fn stand_in(&mut self) -> bool {
        let was = self.displaced.take().is_some();
        if was {
            self.accepted = true;
        }
        was
    }

    /// Connection `link` got the claim refused.
    pub fn refused(&mut self, link: u32, reason: String) {
        *self.link(link) = OnLink::Refused(reason);
    }

    /// Another ggrokd took the tunnel: on the server it is no longer this daemon's on any
    /// connection.
    pub fn displaced(&mut self, reason: String) {
        self.links.fill(OnLink::Unclaimed);
        self.displaced = Some(reason);
    }

    /// Whether connection `link` has the tunnel accepted now.
    pub fn online_on(&self, link: u32) -> bool {
        self.links.get(link as usize) == Some(&OnLink::Online)
    }

    /// Connection `link` is down: what it had is gone.
    pub fn link_down(&mut self, link: u32) {
        *self.link(link) = OnLink::Unclaimed;
    }

    /// Fresh again (the user asked anew for the tunnel: reload, or a changed spec): not
    /// displaced, and, unless some connection has it now, the next claim takes over.
    pub fn refresh(&mut self) {
        self.displaced = None;
        if !self.links.contains(&OnLink::Online) {
            self.accepted = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_while_any_connection_has_it() {
        let mut c = Claims::default();
        assert_eq!(c.state(), TunnelState::Connecting);
        c.claimed(0);
        c.claimed(2);
        c.link_down(0);
        assert_eq!(c.state(), TunnelState::Online, "connection 2 still carries it");
        c.link_down(2);
        assert_eq!(c.state(), TunnelState::Connecting);
    }

    #[test]
    fn an_acceptance_outweighs_a_refusal_on_another_connection() {
        let mut c = Claims::default();
        c.refused(0, "held by bob".into());
        assert_eq!(c.state(), TunnelState::Refused("held by bob".into()));
        c.claimed(1);
        assert_eq!(c.state(), TunnelState::Online);
        c.link_down(1);
        assert_eq!(c.state(), TunnelState::Refused("held by bob".into()));
        c.link_down(0);
        assert_eq!(c.state(), TunnelState::Connecting);
    }

    #[test]
    fn takeover_only_while_fresh() {
        let mut c = Claims::default();
        assert_eq!(c.takeover(), Some(true), "first claim");
        c.refused(0, "held".into());
        assert_eq!(c.takeover(), Some(true), "never accepted: still fresh");
        c.claimed(1);
        assert_eq!(c.takeover(), Some(false), "accepted once: reconnects do not take over");
        c.link_down(1);
        assert_eq!(c.takeover(), Some(false), "not even after every connection dropped");
        c.refresh();
        assert_eq!(c.takeover(), Some(true), "made fresh while offline");
        c.claimed(0);
        c.refresh();
        assert_eq!(c.takeover(), Some(false), "fresh while online: nothing to take back");
    }

    #[test]
    fn a_displaced_tunnel_is_not_claimed_until_made_fresh() {
        let mut c = Claims::default();
        c.claimed(0);
        c.claimed(1);
        c.displaced("taken over by ggrokd 3f2a on laptop".into());
        assert_eq!(c.state(), TunnelState::Displaced("taken over by ggrokd 3f2a on laptop".into()));
        assert_eq!(c.takeover(), None);
        c.claimed(1);
        assert!(matches!(c.state(), TunnelState::Displaced(_)), "a crossing acceptance changes nothing");
        c.refresh();
        assert_eq!(c.state(), TunnelState::Connecting);
        assert_eq!(c.takeover(), Some(true));
    }
}
