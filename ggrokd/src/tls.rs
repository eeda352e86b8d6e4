//! TLS toward the server for `wss://`, and toward `https://` local services: rustls (ring)
//! verifying the peer's certificate against the system roots, or against the CA certificates of
//! `ca_file` for self-hosted CAs. A bad certificate is an error that says so; it is never accepted
//! silently. Only a local service's may go unverified, when its tunnel says `tls_skip_verify = true`
//! (a self-signed development certificate), which `ggrokd --check` and the log name.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::UnixTime;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Reads the CA certificates of a PEM file; at least one.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read CA certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// `ca_file`'s CAs, or the system's (read once).
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    static SYSTEM: std::sync::OnceLock<RootCertStore> = std::sync::OnceLock::new();
    let Some(path) = ca_file else {
        let system = SYSTEM.get_or_init(|| {
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            roots
        });
        if system.is_empty() {
            return Err("no system root certificates found: install the ca-certificates package, \
                        or set ca_file in the config"
                .into());
        }
        return Ok(system.clone());
    };
    let mut roots = RootCertStore::empty();
    for cert in load_ca_file(path)? {
        roots.add(cert).map_err(|e| format!("{}: unusable CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The client configuration: `ca_file`'s CAs, or the system's.
pub fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(ca_file)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// What TLS to an `https://` local service offers by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `h2` and `http/1.1`: the service picks (the default).
    Either,
    /// `http/1.1` only (`app_protocol = "http1"`, and upgrades such as WebSocket).
    Http1,
    /// `h2` only (`app_protocol = "http2"`).
    Http2,
}

/// The client configurations toward one `https://` local service, one per [`Alpn`].
#[derive(Debug)]
pub struct LocalConfigs {
    either: Arc<ClientConfig>,
    http1: Arc<ClientConfig>,
    http2: Arc<ClientConfig>,
}

impl LocalConfigs {
    /// Verifying against `ca_file`'s CAs or the system's; verifying nothing with `skip_verify`.
    pub fn new(ca_file: Option<&Path>, skip_verify: bool) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let config = if skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth()
        } else {
            builder.with_root_certificates(roots(ca_file)?).with_no_client_auth()
        };
        let offering = |protocols: &[&[u8]]| {
            let mut config = config.clone();
            config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
            Arc::new(config)
        };
        Ok(Self {
            either: offering(&[b"h2", b"http/1.1"]),
            http1: offering(&[b"http/1.1"]),
            http2: offering(&[b"h2"]),
        })
    }

    /// The configuration offering `alpn`.
    pub fn offering(&self, alpn: Alpn) -> Arc<ClientConfig> {
        match alpn {
            Alpn::Either => self.either.clone(),
            Alpn::Http1 => self.http1.clone(),
            Alpn::Http2 => self.http2.clone(),
        }
    }
}

/// TLS over `tcp` to the local service at `host`; an untrusted certificate is an error that says
/// what to set.
pub async fn connect_local(
    config: Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host:?} is not a valid TLS name: {e}"))?;
    TlsConnector::from(config).connect(name, tcp).await.map_err(|e| {
        let hint = match failure(&e) {
            Failure::Untrusted => {
                "; the local service's certificate is not trusted: set ca_file to its CA, or \
                 tls_skip_verify = true for a self-signed development certificate"
            }
            Failure::NotTls => {
                "; the answer is not TLS: is the local service plain HTTP? Then use http:// (or just \
                 the port) in local"
            }
            Failure::Other => "",
        };
        format!("TLS handshake with {host} failed: {e}{hint}")
    })
}

/// What a failed handshake says of the peer, for a hint.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// Its certificate could not be verified.
    Untrusted,
    /// It answered with bytes that are no TLS record (a plain-HTTP service answering 400).
    NotTls,
    /// Anything else.
    Other,
}

fn failure(e: &std::io::Error) -> Failure {
    let tls = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    if matches!(tls, Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType))) {
        Failure::NotTls
    } else if e.to_string().contains("certificate") {
        Failure::Untrusted
    } else {
        Failure::Other
    }
}

/// Accepts any certificate (`tls_skip_verify = true`), still checking that the handshake is
/// signed by the key of the certificate shown.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// TLS over `tcp` to `host`, the certificate checked against `config`'s roots.
pub async fn connect(
    config: ClientConfig,
    host: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host:?} is not a valid TLS name: {e}"))?;
    TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| {
        let hint = match failure(&e) {
            Failure::Untrusted => {
                "; the server's certificate is not trusted: if it comes from your own CA, set ca_file"
            }
            Failure::NotTls => {
                "; the answer is not TLS: is the server's endpoint plain HTTP? Then use ws:// in server"
            }
            Failure::Other => "",
        };
        format!("TLS handshake with {host} failed: {e}{hint}")
    })
}

#[cfg(test)]
mod tests;
