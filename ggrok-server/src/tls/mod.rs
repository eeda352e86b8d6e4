//! HTTPS: certificates loaded from PEM files and chosen per connection by SNI, wildcard
//! certificates included, and certificates issued by an ACME CA ([`crate::acme`]). rustls with
//! the `ring` provider; no OpenSSL.
//!
//! Which certificate a handshake gets: a file certificate valid for the SNI name (files win for
//! their names), else an ACME certificate for exactly that name, else the first file certificate;
//! with none of these, the handshake fails. A hello that offers only the `acme-tls/1` protocol is
//! a CA's TLS-ALPN-01 validation (RFC 8737): it gets the challenge certificate for its name, or
//! nothing.

pub mod expiry;
pub mod info;

use anyhow::{Context, anyhow};
use arc_swap::ArcSwap;
use info::CertInfo;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio_rustls::TlsAcceptor;

/// The ALPN protocol of TLS-ALPN-01 validations (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// A certificate chain and its key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The certificates the HTTPS listener presents. A reload replaces the files whole
/// ([`Certificates::install`]), ACME replaces one name's at a time ([`Certificates::issue`]):
/// connections accepted afterwards get the new ones, connections already open keep what they
/// negotiated.
#[derive(Debug)]
pub struct Certificates {
    files: ArcSwap<SniResolver>,
    /// ACME certificates by exact (lower-case) name.
    issued: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
    /// TLS-ALPN-01 challenge certificates by name, while their orders wait for validation.
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// Whether `acme-tls/1` is offered (`[acme]` with TLS-ALPN-01).
    acme: bool,
    provider: Arc<CryptoProvider>,
    /// Notified when certificates change (for [`expiry`]).
    pub changed: tokio::sync::Notify,
}

/// Where a certificate in use comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A `[[tls.certificate]]` file.
    File(PathBuf),
    /// An ACME CA, for this name.
    Acme(String),
}

impl Certificates {
    /// Loads every pair. The first pair is the default for clients that send no SNI or a name no
    /// certificate covers. Without `acme`, there must be at least one.
    pub fn load(pairs: &[CertPair], acme: bool) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let resolver = SniResolver::load(pairs, &provider, acme)?;
        Ok(Self {
            files: ArcSwap::from_pointee(resolver),
            issued: ArcSwap::default(),
            challenges: Mutex::default(),
            acme,
            provider,
            changed: tokio::sync::Notify::new(),
        })
    }

    /// Loads `pairs` for [`Certificates::install`]; the reason when any of them is unusable
    /// (nothing changes then).
    pub fn prepare(&self, pairs: &[CertPair]) -> anyhow::Result<Loaded> {
        SniResolver::load(pairs, &self.provider, self.acme).map(Loaded)
    }

    /// Presents the certificate files of `loaded` from the next handshake on.
    pub fn install(&self, loaded: Loaded) {
        self.files.store(Arc::new(loaded.0));
        self.changed.notify_one();
    }

    /// Whether a certificate file covers `name` (exactly or by a wildcard): files win, so ACME
    /// has nothing to order for it.
    pub fn file_covers(&self, name: &str) -> bool {
        self.files.load().covering(name).is_some()
    }

    /// A certificate and key from PEM text (an ACME CA's chain, our key), checked as a pair.
    pub fn certified(&self, chain_pem: &str, key_pem: &str) -> anyhow::Result<Arc<CertifiedKey>> {
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow!("cannot read the certificate chain: {e}"))?;
        if chain.is_empty() {
            return Err(anyhow!("the chain holds no certificate"));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| anyhow!("cannot read the private key: {e}"))?;
        CertifiedKey::from_der(chain, key, &self.provider)
            .map(Arc::new)
            .map_err(|e| anyhow!("the certificate and key do not make a usable pair: {e}"))
    }

    /// A TLS-ALPN-01 challenge certificate and its key. Not checked as a pair: webpki rejects
    /// the critical acmeIdentifier extension such a certificate must carry.
    pub fn challenge_key(&self, cert_pem: &str, key_pem: &str) -> anyhow::Result<Arc<CertifiedKey>> {
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| anyhow!("the challenge certificate: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| anyhow!("the challenge certificate's key: {e}"))?;
        let key = self
            .provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| anyhow!("the challenge key: {e}"))?;
        Ok(Arc::new(CertifiedKey::new(vec![cert], key)))
    }

    /// Presents `cert` for `name` (an ACME certificate) from the next handshake on.
    pub fn issue(&self, name: &str, cert: Arc<CertifiedKey>) {
        self.issued.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(name.to_owned(), cert.clone());
            map
        });
        self.changed.notify_one();
    }

    /// Answers TLS-ALPN-01 validations of `name` with `cert` (`None`: no longer).
    pub fn set_challenge(&self, name: &str, cert: Option<Arc<CertifiedKey>>) {
        let mut challenges = self.challenges.lock().expect("challenges lock");
        match cert {
            Some(cert) => challenges.insert(name.to_owned(), cert),
            None => challenges.remove(name),
        };
    }

    /// The certificates presented now: files first, then ACME's by name.
    pub fn in_use(&self) -> Vec<(Source, CertInfo)> {
        let mut all: Vec<(Source, CertInfo)> = self
            .files
            .load()
            .files
            .iter()
            .filter_map(|(path, c)| Some((Source::File(path.clone()), CertInfo::parse(&c.cert[0]).ok()?)))
            .collect();
        let issued = self.issued.load();
        let mut names: Vec<&String> = issued.keys().collect();
        names.sort();
        for name in names {
            if let Ok(info) = CertInfo::parse(&issued[name].cert[0]) {
                all.push((Source::Acme(name.clone()), info));
            }
        }
        all
    }

    /// The acceptor of the HTTPS listener, presenting these certificates as they are at each
    /// handshake.
    pub fn acceptor(self: &Arc<Self>) -> anyhow::Result<TlsAcceptor> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        // h2 first: clients that speak both get HTTP/2 (public::h2).
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        if self.acme {
            config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
        }
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// Certificates loaded by [`Certificates::prepare`], not presented yet.
#[derive(Debug)]
pub struct Loaded(SniResolver);

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map(str::to_ascii_lowercase);
        let mut alpn = hello.alpn();
        if self.acme && alpn.as_mut().is_some_and(|protocols| protocols.any(|p| p == ACME_TLS_ALPN)) {
            // A CA validating a name: its challenge certificate or nothing, never a real one.
            let challenges = self.challenges.lock().expect("challenges lock");
            return name.and_then(|n| challenges.get(&n).cloned());
        }
        self.presented(name.as_deref())
    }
}

impl Certificates {
    /// The certificate a client asking for `name` (its SNI) gets: a file covering it, else the
    /// ACME certificate of exactly that name, else the first file.
    fn presented(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let files = self.files.load();
        if let Some(name) = name {
            if let Some(cert) = files.covering(name) {
                return Some(cert);
            }
            if let Some(cert) = self.issued.load().get(name) {
                return Some(cert.clone());
            }
        }
        files.files.first().map(|(_, c)| c.clone())
    }

    /// Whether the certificate a client that asked for `sni` was presented also covers `host`. A
    /// client may reuse a connection for another name only then (HTTP/2 connection coalescing);
    /// a request for a name it does not cover gets 421 (`public::misdirected`).
    pub fn covers(&self, sni: &str, host: &str) -> bool {
        let presented = self.presented(Some(&sni.to_ascii_lowercase()));
        let host = ServerName::try_from(host);
        presented.zip(host.ok()).is_some_and(|(cert, host)| valid_for(&cert, &host))
    }
}

fn valid_for(cert: &CertifiedKey, name: &ServerName<'_>) -> bool {
    webpki::EndEntityCert::try_from(&cert.cert[0])
        .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(name).is_ok())
}

fn load(pair: &CertPair, provider: &CryptoProvider) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain = CertificateDer::pem_file_iter(&pair.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("cannot read certificates from {}: {e}", pair.cert.display()))?;
    if chain.is_empty() {
        return Err(anyhow!("{} holds no certificate", pair.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&pair.key)
        .map_err(|e| anyhow!("cannot read a private key from {}: {e}", pair.key.display()))?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        anyhow!("{} and {} do not make a usable pair: {e}", pair.cert.display(), pair.key.display())
    })?;
    webpki::EndEntityCert::try_from(&certified.cert[0])
        .map_err(|e| anyhow!("{}: not a valid certificate: {e:?}", pair.cert.display()))?;
    Ok(Arc::new(certified))
}

/// The certificate files: the first valid for the SNI name (exact or wildcard), else the first.
#[derive(Debug, Default)]
struct SniResolver {
    files: Vec<(PathBuf, Arc<CertifiedKey>)>,
}

impl SniResolver {
    fn load(pairs: &[CertPair], provider: &CryptoProvider, acme: bool) -> anyhow::Result<Self> {
        let files = pairs
            .iter()
            .map(|p| Ok((p.cert.clone(), load(p, provider)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if files.is_empty() && !acme {
            return Err(anyhow!("TLS needs at least one certificate"));
        }
        Ok(Self { files })
    }

    fn covering(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = ServerName::try_from(name).ok()?;
        self.files.iter().map(|(_, c)| c).find(|c| valid_for(c, &name)).cloned()
    }
}

/// Resolves `path` against the directory of the config file.
pub fn relative_to(config: &Path, path: &str) -> PathBuf {
    config.parent().unwrap_or(Path::new(".")).join(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str, sans: &[&str]) -> CertPair {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pair = CertPair { cert: dir.join(format!("{name}.pem")), key: dir.join(format!("{name}.key")) };
        std::fs::write(&pair.cert, cert.pem()).unwrap();
        std::fs::write(&pair.key, key.serialize_pem()).unwrap();
        pair
    }

    #[test]
    fn the_presented_certificate_covers_other_names_it_holds_only() {
        let dir = tempfile::tempdir().unwrap();
        let a = pair(dir.path(), "a", &["api.example.com", "www.example.com"]);
        let w = pair(dir.path(), "w", &["*.alice.example.com"]);
        let certs = Certificates::load(&[a, w], false).unwrap();
        assert!(certs.covers("api.example.com", "www.example.com"));
        assert!(certs.covers("x.alice.example.com", "y.alice.example.com"));
        assert!(!certs.covers("x.alice.example.com", "api.example.com"));
        assert!(!certs.covers("api.example.com", "x.alice.example.com"));
        // A name no certificate covers got the first one.
        assert!(certs.covers("unknown.test", "www.example.com"));
    }

    #[test]
    fn sni_picks_exact_and_wildcard_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let a = pair(dir.path(), "a", &["api.example.com"]);
        let w = pair(dir.path(), "w", &["*.alice.example.com"]);
        let certs = [load(&a, &provider).unwrap(), load(&w, &provider).unwrap()];
        let resolver = SniResolver { files: certs.iter().map(|c| (PathBuf::new(), c.clone())).collect() };
        assert!(Arc::ptr_eq(&resolver.covering("api.example.com").unwrap(), &certs[0]));
        assert!(Arc::ptr_eq(&resolver.covering("x.alice.example.com").unwrap(), &certs[1]));
        assert!(resolver.covering("a.b.alice.example.com").is_none());
        assert!(resolver.covering("other.example.com").is_none());
    }

    #[test]
    fn mismatched_or_missing_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let a = pair(dir.path(), "a", &["a.test"]);
        let b = pair(dir.path(), "b", &["b.test"]);
        let mixed = CertPair { cert: a.cert.clone(), key: b.key.clone() };
        let err = load(&mixed, &provider).unwrap_err().to_string();
        assert!(err.contains("do not make a usable pair"), "{err}");
        let missing = CertPair { cert: dir.path().join("nope.pem"), key: a.key.clone() };
        let err = load(&missing, &provider).unwrap_err().to_string();
        assert!(err.contains("nope.pem"), "{err}");
    }
}
