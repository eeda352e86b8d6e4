//! HTTPS: certificates loaded from PEM files and chosen per connection by SNI, wildcard
//! certificates included. rustls with the `ring` provider; no OpenSSL.

use anyhow::{Context, anyhow};
use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// A certificate chain and its key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The certificates the HTTPS listener presents. A reload replaces them whole
/// ([`Certificates::replace`]): connections accepted afterwards get the new ones, connections
/// already open keep what they negotiated.
#[derive(Debug)]
pub struct Certificates {
    current: ArcSwap<SniResolver>,
    provider: Arc<CryptoProvider>,
}

impl Certificates {
    /// Loads every pair. The first pair is the default for clients that send no SNI or a name no
    /// certificate covers.
    pub fn load(pairs: &[CertPair]) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let resolver = SniResolver::load(pairs, &provider)?;
        Ok(Self { current: ArcSwap::from_pointee(resolver), provider })
    }

    /// Loads `pairs` for [`Certificates::install`]; the reason when any of them is unusable
    /// (nothing changes then).
    pub fn prepare(&self, pairs: &[CertPair]) -> anyhow::Result<Loaded> {
        SniResolver::load(pairs, &self.provider).map(Loaded)
    }

    /// Presents the certificates of `loaded` from the next handshake on.
    pub fn install(&self, loaded: Loaded) {
        self.current.store(Arc::new(loaded.0));
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
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Whether the certificate a client that asked for `sni` was presented also covers `host`. A
    /// client may reuse a connection for another name only then (HTTP/2 connection coalescing);
    /// a request for a name it does not cover gets 421 (`public::misdirected`).
    pub fn covers(&self, sni: &str, host: &str) -> bool {
        let resolver = self.current.load();
        let presented = resolver.covering(sni).or_else(|| resolver.certs.first().cloned());
        let host = ServerName::try_from(host);
        presented.zip(host.ok()).is_some_and(|(cert, host)| valid_for(&cert, &host))
    }
}

/// Certificates loaded by [`Certificates::prepare`], not presented yet.
#[derive(Debug)]
pub struct Loaded(SniResolver);

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load().resolve(hello)
    }
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

/// Picks the first certificate valid for the SNI name (exact or wildcard), else the first one.
#[derive(Debug)]
struct SniResolver {
    certs: Vec<Arc<CertifiedKey>>,
}

impl SniResolver {
    fn load(pairs: &[CertPair], provider: &CryptoProvider) -> anyhow::Result<Self> {
        let certs = pairs.iter().map(|p| load(p, provider)).collect::<anyhow::Result<Vec<_>>>()?;
        if certs.is_empty() {
            return Err(anyhow!("TLS needs at least one certificate"));
        }
        Ok(Self { certs })
    }

    fn covering(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = ServerName::try_from(name).ok()?;
        self.certs.iter().find(|c| valid_for(c, &name)).cloned()
    }
}

fn valid_for(cert: &CertifiedKey, name: &ServerName<'_>) -> bool {
    webpki::EndEntityCert::try_from(&cert.cert[0])
        .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(name).is_ok())
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello.server_name().and_then(|n| self.covering(n)).or_else(|| self.certs.first().cloned())
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
    fn sni_picks_exact_and_wildcard_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let a = pair(dir.path(), "a", &["api.example.com"]);
        let w = pair(dir.path(), "w", &["*.alice.example.com"]);
        let certs = vec![load(&a, &provider).unwrap(), load(&w, &provider).unwrap()];
        let resolver = SniResolver { certs: certs.clone() };
        assert!(Arc::ptr_eq(&resolver.covering("api.example.com").unwrap(), &certs[0]));
        assert!(Arc::ptr_eq(&resolver.covering("x.alice.example.com").unwrap(), &certs[1]));
        assert!(resolver.covering("a.b.alice.example.com").is_none());
        assert!(resolver.covering("other.example.com").is_none());
    }

    #[test]
    fn the_presented_certificate_covers_other_names_it_holds_only() {
        let dir = tempfile::tempdir().unwrap();
        let a = pair(dir.path(), "a", &["api.example.com", "www.example.com"]);
        let w = pair(dir.path(), "w", &["*.alice.example.com"]);
        let certs = Certificates::load(&[a, w]).unwrap();
        assert!(certs.covers("api.example.com", "www.example.com"));
        assert!(certs.covers("x.alice.example.com", "y.alice.example.com"));
        assert!(!certs.covers("x.alice.example.com", "api.example.com"));
        assert!(!certs.covers("api.example.com", "x.alice.example.com"));
        // A name no certificate covers got the first one.
        assert!(certs.covers("unknown.test", "www.example.com"));
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
