//! Access rules' metrics: public requests and connections turned away by a tunnel's rules, by
//! reason (`ggrok_access_denied_total{reason}`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Why a tunnel's access rules turned a client away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The client's address is in `deny_ips`, or not in `allow_ips`: 403 (TCP: closed).
    Ip,
    /// No credentials where `basic_auth` asks for them: 401 (a browser's first request).
    NoAuth,
    /// Wrong user or password: 401, and a failure counted against the address.
    Auth,
    /// The address failed too often lately: 429 without checking anything.
    Rate,
}

impl Denial {
    /// Every reason, in the order of [`AccessSeries`]' counters.
    pub const ALL: [Denial; 4] = [Denial::Ip, Denial::NoAuth, Denial::Auth, Denial::Rate];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Denial::Ip => "ip",
            Denial::NoAuth => "no_auth",
            Denial::Auth => "auth",
            Denial::Rate => "rate",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DenialLabels {
    reason: &'static str,
}

/// The counters, one per reason, all present from the start (at zero).
pub struct AccessSeries {
    denied: [Counter; Denial::ALL.len()],
}

impl AccessSeries {
    /// Registers the family.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let family = Family::<DenialLabels, Counter>::default();
        let denied = Denial::ALL.map(|d| family.get_or_create_owned(&DenialLabels { reason: d.label() }));
        registry.register(
            "access_denied",
            "Public requests and connections turned away by a tunnel's access rules, by reason \
             (ip: allow_ips/deny_ips; no_auth: no credentials; auth: wrong credentials; rate: too many failures)",
            family,
        );
        Self { denied }
    }

    /// Counts one client turned away.
    pub fn denied(&self, why: Denial) {
        self.denied[why as usize].inc();
    }
}
