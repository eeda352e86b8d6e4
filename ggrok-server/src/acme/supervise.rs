//! The background task that orders and renews: one order at a time, whichever [`Book::next`]
//! says, until shutdown. The account is made (or read from the cache) at the first order, so a
//! server whose certificates are all cached asks the CA nothing.

use super::book::{Next, Origin};
use super::order::{Issued, order};
use super::{Acme, http::CaClient};
use crate::State;
use crate::config::{AcmeAccount, AcmeSettings};
use crate::tls::Certificates;
use crate::tls::info::CertInfo;
use anyhow::{Context, anyhow};
use instant_acme::{Account, NewAccount};
use std::sync::Arc;
use std::time::SystemTime;
use tracing::{info, warn};

/// Orders and renews until shutdown. `state.acme` and `state.certificates` must be set.
pub async fn supervise(state: Arc<State>) {
    let (Some(acme), Some(certificates)) = (state.acme.clone(), state.certificates.clone()) else { return };
    let Some(mut demands) = acme.queue.lock().expect("queue lock").take() else { return };
    let mut account: Option<Account> = None;
    let mut capped = false;
    loop {
        let config = state.config_now();
        let Some(settings) = &config.acme else { return };
        want_configured(&acme, settings, &certificates);
        let now = SystemTime::now();
        let next = acme.book().next(now, settings.max_orders_per_day);
        let wake = match next {
            Next::Order(name) => {
                let attempt = attempt(&state, &acme, &certificates, &mut account, settings, &name);
                tokio::select! {
                    () = attempt => {}
                    _ = state.shutdown.cancelled() => return,
                }
                continue;
            }
            Next::Capped(at) => {
                if !std::mem::replace(&mut capped, true) {
                    warn!(
                        max_orders_per_day = settings.max_orders_per_day,
                        "ACME: max_orders_per_day reached; the names due wait until {}",
                        crate::tls::info::rfc3339(crate::tls::info::unix(at))
                    );
                }
                Some(at)
            }
            Next::Wait(at) => {
                capped = false;
                Some(at)
            }
            Next::Idle => None,
        };
        let sleep = async {
            match wake {
                Some(at) => {
                    tokio::time::sleep(at.duration_since(SystemTime::now()).unwrap_or_default()).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = sleep => {}
            Some(host) = demands.recv() => claimed(&acme, settings, &certificates, &host),
            () = acme.reconfigured.notified() => {}
            _ = state.shutdown.cancelled() => return,
        }
    }
}

/// Puts every configured name in the book (a reload may have added some) and turns names no
/// longer configured into on-demand ones.
fn want_configured(acme: &Acme, settings: &AcmeSettings, certificates: &Certificates) {
    let now = SystemTime::now();
    let mut book = acme.book();
    let gone: Vec<String> = book
        .names()
        .iter()
        .filter(|(name, n)| n.origin == Origin::Configured && !settings.names.contains(name))
        .map(|(name, _)| name.clone())
        .collect();
    for name in gone {
        book.unconfigure(&name);
    }
    for name in &settings.names {
        // Files win: nothing to order (and a name a file covers stays idle in the book).
        if certificates.file_covers(name) {
            continue;
        }
        if book.want(name, Origin::Configured, now, &acme.policy) {
            info!(name, "ACME: a certificate is wanted for this name ([acme] names)");
        }
    }
}

/// A client claimed `host`: wanted, unless a file covers it or on-demand is off now.
fn claimed(acme: &Acme, settings: &AcmeSettings, certificates: &Certificates, host: &str) {
    if !settings.on_demand {
        return;
    }
    if certificates.file_covers(host) {
        return info!(host, "ACME: claimed host is covered by a certificate file; nothing to order");
    }
    if acme.book().want(host, Origin::OnDemand, SystemTime::now(), &acme.policy) {
        info!(host, "ACME: a client claimed this host; a certificate is wanted (on_demand)");
    }
}

/// One attempt at `name`'s certificate, with its outcome in the book, the cache, the metrics and
/// the certificates presented.
async fn attempt(
    state: &State,
    acme: &Acme,
    certificates: &Certificates,
    account: &mut Option<Account>,
    settings: &AcmeSettings,
    name: &str,
) {
    let now = SystemTime::now();
    let (origin, renewal, challenge) = {
        let book = acme.book();
        let Some(entry) = book.get(name) else { return };
        (entry.origin, entry.cert.is_some(), entry.challenge)
    };
    // An on-demand certificate is renewed only while a client holds its host, and on_demand is on.
    if origin == Origin::OnDemand && !settings.on_demand {
        info!(name, "ACME: not ordering: on_demand is off now and the name is not in [acme] names");
        return acme.book().idle(name);
    }
    if origin == Origin::OnDemand && renewal && !state.registry.holds(name) {
        info!(name, "ACME: not renewing: no client claims this host now (it is renewed when one does)");
        return acme.book().idle(name);
    }
    if certificates.file_covers(name) {
        info!(name, "ACME: a certificate file covers this name now; nothing to order");
        return acme.book().idle(name);
    }
    let kind = settings.challenges[challenge % settings.challenges.len()];
    acme.book().ordered(now);
    info!(name, challenge = kind.name(), renewal, "ACME: ordering a certificate");
    let result = async {
        let account = match account {
            Some(a) => a,
            None => account.insert(open_account(acme, &settings.account).await?),
        };
        let issued = order(account, acme, certificates, name, kind).await?;
        install(acme, certificates, name, &issued)
    }
    .await;
    match result {
        Ok(info) => {
            state.metrics.certificates.order(true);
            info!(name, "ACME: certificate issued: {}", info.describe(SystemTime::now()));
            acme.book().issued(name, origin, info, &acme.policy);
        }
        Err(e) => {
            state.metrics.certificates.order(false);
            let error = format!("{e:#}");
            acme.book().failed(name, error.clone(), SystemTime::now(), settings.challenges.len());
            let next = acme.book().get(name).and_then(|n| n.next_attempt);
            let retry = next.map(|t| crate::tls::info::until(t, SystemTime::now())).unwrap_or_default();
            warn!(name, challenge = kind.name(), "ACME: order failed, next attempt {retry}: {error}");
        }
    }
}

/// Checks and keeps a fresh certificate, and presents it from the next handshake on.
fn install(
    acme: &Acme,
    certificates: &Certificates,
    name: &str,
    issued: &Issued,
) -> anyhow::Result<CertInfo> {
    let certified = certificates.certified(&issued.chain, &issued.key)?;
    let info = CertInfo::parse(&certified.cert[0]).map_err(|e| anyhow!("the CA's certificate: {e}"))?;
    if !info.names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        return Err(anyhow!("the CA's certificate is for {}, not {name}", info.names.join(", ")));
    }
    acme.cache
        .save_certificate(name, &issued.chain, &issued.key)
        .with_context(|| format!("cannot write to the ACME cache {}", acme.cache.dir().display()))?;
    certificates.issue(name, certified);
    Ok(info)
}

/// The account from the cache, or a new one (agreeing to the CA's terms), kept in the cache.
async fn open_account(acme: &Acme, settings: &AcmeAccount) -> anyhow::Result<Account> {
    let http = || {
        CaClient::new(settings.ca_file.as_deref()).map(|c| Box::new(c) as Box<dyn instant_acme::HttpClient>)
    };
    if let Some(credentials) = acme.cache.account().map_err(anyhow::Error::msg)? {
        return Account::builder_with_http(http()?)
            .from_credentials(credentials)
            .await
            .with_context(|| format!("the ACME directory {}", settings.directory));
    }
    let contact = settings.email.as_ref().map(|e| format!("mailto:{e}"));
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let new = NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false };
    let (account, credentials) = Account::builder_with_http(http()?)
        .create(&new, settings.directory.clone(), None)
        .await
        .with_context(|| format!("creating an account at {}", settings.directory))?;
    acme.cache
        .save_account(&credentials)
        .with_context(|| format!("cannot write to the ACME cache {}", acme.cache.dir().display()))?;
    info!(directory = settings.directory, account = account.id(), "ACME: account created");
    Ok(account)
}
