//! The certificates in use and ACME's state, for people: `ggrok-server --check` prints them,
//! the admin listener serves them as JSON (`GET /certificates`).

use super::Acme;
use super::cache::Cache;
use crate::config::{AcmeSettings, ServerConfig};
use crate::tls::info::{CertInfo, rfc3339, unix};
use crate::tls::{Certificates, Source};
use serde_json::{Value, json};
use std::time::SystemTime;

/// `GET /certificates`: every certificate presented, and what ACME knows of each name.
pub fn json(config: &ServerConfig, certificates: Option<&Certificates>, acme: Option<&Acme>) -> Value {
    let now = SystemTime::now();
    let in_use: Vec<Value> = certificates
        .map(|c| c.in_use())
        .unwrap_or_default()
        .into_iter()
        .map(|(source, info)| {
            let mut entry = cert_json(&info, now);
            match source {
                Source::File(path) => {
                    entry["source"] = "file".into();
                    entry["file"] = path.display().to_string().into();
                }
                Source::Acme(name) => {
                    entry["source"] = "acme".into();
                    entry["name"] = name.into();
                }
            }
            entry
        })
        .collect();
    let acme = match (&config.acme, acme) {
        (Some(settings), Some(acme)) => {
            let mut book = acme.book();
            let orders = book.orders_today(now);
            let names: serde_json::Map<String, Value> = book
                .names()
                .iter()
                .map(|(name, n)| {
                    let mut entry = serde_json::to_value(n).unwrap_or(Value::Null);
                    entry["next_attempt"] = n.next_attempt.map(|t| rfc3339(unix(t))).into();
                    entry["not_after"] = n.cert.as_ref().map(|c| rfc3339(c.not_after)).into();
                    entry["challenge"] =
                        settings.challenges[n.challenge % settings.challenges.len()].name().into();
                    (name.clone(), entry)
                })
                .collect();
            json!({
                "directory": settings.account.directory,
                "cache_dir": acme.cache.dir().display().to_string(),
                "on_demand": settings.on_demand,
                "challenges": settings.challenges.iter().map(|c| c.name()).collect::<Vec<_>>(),
                "orders_last_24h": orders,
                "max_orders_per_day": settings.max_orders_per_day,
                "names": names,
            })
        }
        _ => Value::Null,
    };
    json!({ "certificates": in_use, "acme": acme })
}

fn cert_json(info: &CertInfo, now: SystemTime) -> Value {
    json!({
        "names": info.names,
        "issuer": info.issuer,
        "not_before": rfc3339(info.not_before),
        "not_after": rfc3339(info.not_after),
        "expires_in_seconds": info.not_after - unix(now),
    })
}

/// The lines `--check` prints for `[acme]`: where the cache is, whether it holds an account,
/// and each wanted name's cached certificate (or that it has none yet). Reads only; creates
/// nothing.
pub fn check_lines(settings: &AcmeSettings, certificates: &Certificates) -> Vec<String> {
    let now = SystemTime::now();
    let cache = Cache::new(&settings.account.cache_dir, &settings.account.directory);
    let account = match cache.account() {
        Ok(Some(_)) => "an account".to_owned(),
        Ok(None) => "no account yet (made at the first order)".to_owned(),
        Err(e) => format!("an unreadable account: {e}"),
    };
    let mut lines = vec![format!(
        "acme: directory {}, cache {} ({account}), challenges {}, on_demand {}, at most {} orders a day",
        settings.account.directory,
        cache.dir().display(),
        settings.challenges.iter().map(|c| c.name()).collect::<Vec<_>>().join(", "),
        settings.on_demand,
        settings.max_orders_per_day
    )];
    let cached = cache.names();
    let mut names: Vec<&String> = settings.names.iter().collect();
    if settings.on_demand {
        names.extend(cached.iter().filter(|n| !settings.names.contains(n)));
    }
    for name in names {
        let line = if certificates.file_covers(name) {
            "covered by a certificate file (files win)".to_owned()
        } else {
            match cache.certificate(name).map(|(chain, key)| certificates.certified(&chain, &key)) {
                Some(Ok(c)) => match CertInfo::parse(&c.cert[0]) {
                    Ok(info) => info.describe(now),
                    Err(e) => format!("cached certificate unreadable: {e}"),
                },
                Some(Err(e)) => format!("cached certificate unusable (a new one is ordered): {e:#}"),
                None => "no certificate yet (ordered at start)".to_owned(),
            }
        };
        lines.push(format!("acme certificate {name}: {line}"));
    }
    lines
}
