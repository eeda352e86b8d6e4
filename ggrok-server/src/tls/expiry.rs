//! A warning in the log when a certificate in use expires within a week: a file nobody
//! replaced, or an ACME certificate whose renewals keep failing (a renewed one replaces it, so
//! the one in use is always the newest). Checked at start, every hour and whenever a certificate
//! changes; each certificate is named at most once a day.

use crate::State;
use crate::tls::Source;
use crate::tls::info::until;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tracing::warn;

/// How close to its expiry a certificate gets a warning.
pub const WARN_BEFORE: Duration = Duration::from_secs(7 * 86_400);
/// How often the certificates are looked at, besides when they change.
const CHECK_EVERY: Duration = Duration::from_secs(3600);
/// How often one certificate is named.
const REPEAT_AFTER: Duration = Duration::from_secs(86_400);

/// Watches the certificates until shutdown.
pub async fn watch(state: Arc<State>) {
    let Some(certificates) = state.certificates.clone() else { return };
    let mut warned: HashMap<(String, i64), SystemTime> = HashMap::new();
    loop {
        let now = SystemTime::now();
        for (source, info) in certificates.in_use() {
            if info.expires() > now + WARN_BEFORE {
                continue;
            }
            let what = match &source {
                Source::File(path) => format!("certificate file {}", path.display()),
                Source::Acme(name) => format!("ACME certificate of {name}"),
            };
            let key = (what.clone(), info.not_after);
            if warned.get(&key).is_some_and(|t| now.duration_since(*t).is_ok_and(|d| d < REPEAT_AFTER)) {
                continue;
            }
            warned.insert(key, now);
            let remedy = match source {
                Source::File(_) => "replace the file and reload (SIGHUP)",
                Source::Acme(_) => {
                    "its renewal has not succeeded yet: see GET /certificates on the admin listener"
                }
            };
            warn!(
                names = %info.names.join(", "),
                "certificate expires soon: the {what} expires {} ({}); {remedy}",
                crate::tls::info::rfc3339(info.not_after),
                until(info.expires(), now)
            );
        }
        warned.retain(|_, t| now.duration_since(*t).is_ok_and(|d| d < REPEAT_AFTER * 8));
        tokio::select! {
            () = tokio::time::sleep(CHECK_EVERY) => {}
            () = certificates.changed.notified() => {}
            _ = state.shutdown.cancelled() => return,
        }
    }
}
