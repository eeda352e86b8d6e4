//! One order for one name (RFC 8555 §7.4): the CA's challenge answered the chosen way, a fresh
//! ECDSA P-256 key and its CSR, the chain fetched. The challenge answers are withdrawn when the
//! order ends, however it ends.

use super::Acme;
use crate::config::ChallengeKind;
use crate::tls::Certificates;
use anyhow::{Context, anyhow, bail};
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};
use std::time::Duration;

/// How long the CA may take to validate, and then to issue.
const POLL_TIMEOUT: Duration = Duration::from_secs(90);

/// A certificate fresh from the CA.
pub struct Issued {
    /// The chain, leaf first, as PEM.
    pub chain: String,
    /// Its private key, as PEM (PKCS#8).
    pub key: String,
}

/// Orders a certificate for `name`, answering the CA's `kind` challenge.
pub async fn order(
    account: &Account,
    acme: &Acme,
    certificates: &Certificates,
    name: &str,
    kind: ChallengeKind,
) -> anyhow::Result<Issued> {
    let identifiers = [Identifier::Dns(name.to_owned())];
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await.context("new order")?;
    let mut answers = Answers { acme, certificates, tokens: Vec::new(), alpn: Vec::new() };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.context("authorization")?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => bail!("the CA's authorization of {name} is {other:?}"),
        }
        let wanted = match kind {
            ChallengeKind::Http01 => ChallengeType::Http01,
            ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let mut challenge = authz
            .challenge(wanted)
            .ok_or_else(|| anyhow!("the CA offers no {} challenge for {name}", kind.name()))?;
        let key_authorization = challenge.key_authorization();
        match kind {
            ChallengeKind::Http01 => {
                answers.token(challenge.token.clone(), key_authorization.as_str().to_owned());
            }
            ChallengeKind::TlsAlpn01 => {
                answers.alpn(name, key_authorization.digest().as_ref())?;
            }
        }
        challenge.set_ready().await.context("challenge ready")?;
    }
    let policy = RetryPolicy::new().initial_delay(Duration::from_millis(250)).timeout(POLL_TIMEOUT);
    let status = order.poll_ready(&policy).await.context("waiting for validation")?;
    if status != OrderStatus::Ready {
        let mut why = format!("the order is {status:?}");
        let mut authorizations = order.authorizations();
        while let Some(Ok(authz)) = authorizations.next().await {
            if let Some(problem) = authz.challenges.iter().find_map(|c| c.error.as_ref()) {
                why = format!("{} validation failed: {problem}", kind.name());
            }
        }
        bail!(why);
    }
    drop(answers);
    let key = rcgen::KeyPair::generate().context("key")?;
    let csr = rcgen::CertificateParams::new(vec![name.to_owned()])
        .and_then(|p| p.serialize_request(&key))
        .context("CSR")?;
    order.finalize_csr(csr.der()).await.context("finalize")?;
    let chain = order.poll_certificate(&policy).await.context("waiting for the certificate")?;
    Ok(Issued { chain, key: key.serialize_pem() })
}

/// The challenge answers of one order, withdrawn when dropped.
struct Answers<'a> {
    acme: &'a Acme,
    certificates: &'a Certificates,
    tokens: Vec<String>,
    alpn: Vec<String>,
}

impl Answers<'_> {
    /// Answers `GET /.well-known/acme-challenge/<token>` on the plain listener.
    fn token(&mut self, token: String, key_authorization: String) {
        self.acme.tokens.lock().expect("tokens lock").insert(token.clone(), key_authorization);
        self.tokens.push(token);
    }

    /// Answers `acme-tls/1` hellos for `name` with a self-signed certificate that carries the
    /// key authorization's digest in its critical acmeIdentifier extension (RFC 8737).
    fn alpn(&mut self, name: &str, digest: &[u8]) -> anyhow::Result<()> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()])?;
        params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
        let cert = params.self_signed(&key)?;
        let certified = self.certificates.challenge_key(&cert.pem(), &key.serialize_pem())?;
        self.certificates.set_challenge(name, Some(certified));
        self.alpn.push(name.to_owned());
        Ok(())
    }
}

impl Drop for Answers<'_> {
    fn drop(&mut self) {
        let mut tokens = self.acme.tokens.lock().expect("tokens lock");
        for token in &self.tokens {
            tokens.remove(token);
        }
        for name in &self.alpn {
            self.certificates.set_challenge(name, None);
        }
    }
}
