//! TLS toward the server for `wss://`: rustls (ring) verifying the server's certificate against
//! the system roots, or against the CA certificates of `ca_file` for self-hosted CAs. A bad
//! certificate is an error that says so; it is never accepted silently.

use rustls::{ClientConfig, RootCertStore};
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

/// The client configuration: `ca_file`'s CAs, or the system's.
pub fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in load_ca_file(path)? {
                roots.add(cert).map_err(|e| format!("{}: unusable CA certificate: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err("no system root certificates found: install the ca-certificates package, \
                            or set ca_file in the config"
                    .into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
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
        let hint = if e.to_string().contains("certificate") {
            "; the server's certificate is not trusted: if it comes from your own CA, set ca_file"
        } else {
            ""
        };
        format!("TLS handshake with {host} failed: {e}{hint}")
    })
}
