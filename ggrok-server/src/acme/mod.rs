//! `[acme]`: certificates from an RFC 8555 CA for the HTTPS listener.
//!
//! - Names come from `[acme] names` (ordered at start, renewed forever) and, with `on_demand`,
//!   from exact hosts that authenticated clients claim ([`Acme::demand`], called by the tunnel's
//!   claim handling; never by the TLS handshake, so a stranger's SNI orders nothing). Wildcards
//!   are never ordered (they need DNS-01), nor names a certificate file covers (files win).
//! - The CA validates with HTTP-01 ([`Acme::answer_http`], answered on the plain listener before
//!   routing and before the redirect to HTTPS) or TLS-ALPN-01 (a challenge certificate for
//!   `acme-tls/1` hellos, in [`crate::tls::Certificates`]); a failed validation moves to the next
//!   type in `[acme] challenge`.
//! - [`supervise`] is the one background task that orders: one order at a time, renewals first,
//!   at most `max_orders_per_day` in any 24 hours, with a growing, jittered wait after failures.
//! - The account, keys and certificates live in [`cache`] and are presented again at once after
//!   a restart, without asking the CA.
//!
//! - [`book`]: what is known of each name and when to order next;
//! - [`order`]: one order; `http`: the HTTPS client for the CA; [`report`]: the state for
//!   people (`--check`, `GET /certificates`).

pub mod book;
pub mod cache;
mod http;
pub mod order;
pub mod report;
mod supervise;

pub use supervise::supervise;

use crate::config::AcmeSettings;
use crate::tls::Certificates;
use crate::tls::info::CertInfo;
use anyhow::Context;
use book::{Book, Origin, Status};
use cache::Cache;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, mpsc};
use tracing::{debug, info, warn};

/// The path prefix of HTTP-01 challenges (RFC 8555 §8.3).
pub const HTTP_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";
/// Claims waiting for the supervisor; more are dropped (the host is claimed again on the next
/// reconnect or reload).
const DEMAND_QUEUE: usize = 1024;

/// When certificates are renewed.
#[derive(Debug, Clone)]
pub struct RenewalPolicy {
    /// Renew when a third of the lifetime is left, or this much, whichever comes first.
    pub renew_before_max: Duration,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        Self { renew_before_max: book::RENEW_BEFORE_MAX }
    }
}

impl RenewalPolicy {
    /// When `cert` is due for renewal.
    pub fn renew_at(&self, cert: &CertInfo) -> SystemTime {
        cert.expires() - (cert.lifetime() / 3).min(self.renew_before_max)
    }
}

/// ACME's shared state: the challenge tokens the plain listener answers, what is known of each
/// name, and the queue of claims for the supervisor.
pub struct Acme {
    /// HTTP-01 token → key authorization, while orders wait for validation.
    tokens: Mutex<HashMap<String, String>>,
    book: Mutex<Book>,
    demands: mpsc::Sender<String>,
    queue: Mutex<Option<mpsc::Receiver<String>>>,
    reconfigured: Notify,
    cache: Cache,
    policy: RenewalPolicy,
}

impl Acme {
    /// Creates the cache folder and presents the certificates cached for the names wanted
    /// (configured ones, and any with `on_demand`): a restart asks the CA nothing for them.
    pub fn start(settings: &AcmeSettings, certificates: &Certificates) -> anyhow::Result<Self> {
        let cache = Cache::new(&settings.account.cache_dir, &settings.account.directory);
        cache.create().with_context(|| format!("cannot create the ACME cache {}", cache.dir().display()))?;
        let (demands, queue) = mpsc::channel(DEMAND_QUEUE);
        let acme = Self {
            tokens: Mutex::default(),
            book: Mutex::default(),
            demands,
            queue: Mutex::new(Some(queue)),
            reconfigured: Notify::new(),
            cache,
            policy: RenewalPolicy::default(),
        };
        let now = SystemTime::now();
        for name in acme.cache.names() {
            let origin = match settings.names.contains(&name) {
                true => Origin::Configured,
                false if settings.on_demand => Origin::OnDemand,
                false => continue,
            };
            if certificates.file_covers(&name) {
                continue;
            }
            match acme.load_cached(&name, certificates) {
                Ok(info) => {
                    info!(name, "ACME: certificate from the cache: {}", info.describe(now));
                    acme.book().issued(&name, origin, info, &acme.policy);
                }
                Err(e) => {
                    warn!(name, "ACME: the cached certificate is not usable, ordering a new one: {e:#}")
                }
            }
        }
        Ok(acme)
    }

    fn load_cached(&self, name: &str, certificates: &Certificates) -> anyhow::Result<CertInfo> {
        let (chain, key) = self.cache.certificate(name).context("missing")?;
        let certified = certificates.certified(&chain, &key)?;
        let info = CertInfo::parse(&certified.cert[0]).map_err(anyhow::Error::msg)?;
        certificates.issue(name, certified);
        Ok(info)
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().expect("acme book lock")
    }

    /// An authenticated client of `client` claimed `host`: with `on_demand`, the supervisor
    /// orders a certificate for it unless it has one (or a file covers it). Never blocks, never
    /// for a wildcard or an anonymous client.
    pub fn demand(
        &self,
        settings: Option<&AcmeSettings>,
        host: &ggrok_proto::host::HostPattern,
        client: &str,
    ) {
        let ggrok_proto::host::HostPattern::Exact(name) = host else { return };
        if !settings.is_some_and(|s| s.on_demand) || client.starts_with(crate::tunnel::auth::ANONYMOUS) {
            return;
        }
        if self.book().get(name).is_some_and(|n| n.status != Status::Idle) {
            return;
        }
        debug!(host = %name, client, "ACME: claimed host handed to the supervisor");
        if self.demands.try_send(name.clone()).is_err() {
            warn!(host = %name, "ACME: too many claims waiting; this one orders nothing until claimed again");
        }
    }

    /// The key authorization for `GET /.well-known/acme-challenge/<token>`, while an order waits
    /// for it.
    pub fn answer_http(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(HTTP_CHALLENGE_PREFIX)?;
        self.tokens.lock().expect("tokens lock").get(token).cloned()
    }

    /// The configuration was reloaded: names may have been added or removed.
    pub fn reconfigured(&self) {
        self.reconfigured.notify_one();
    }

    /// Names by status, for metrics: (pending, valid, failed, idle).
    pub fn counts(&self) -> [(&'static str, usize); 4] {
        let book = self.book();
        let count = |s: Status| book.names().values().filter(|n| n.status == s).count();
        [
            ("pending", count(Status::Pending)),
            ("valid", count(Status::Valid)),
            ("failed", count(Status::Failed)),
            ("idle", count(Status::Idle)),
        ]
    }
}
