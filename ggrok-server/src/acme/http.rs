//! The HTTPS client instant-acme talks to the CA through: one HTTP/1.1 connection per request
//! (an order makes a dozen), rustls with the system roots or `ca_file`, and a timeout on each.

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http::{Request, Uri, header};
use hyper_util::rt::TokioIo;
use instant_acme::{BodyWrapper, BytesResponse, Error, HttpClient};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How long one request to the CA may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTPS client for the CA's directory.
pub struct CaClient {
    tls: TlsConnector,
}

impl CaClient {
    /// Trusts `ca_file` (PEM) when given, else the system's roots.
    pub fn new(ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        match ca_file {
            Some(path) => {
                for cert in CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| anyhow!("acme.ca_file {}: {e}", path.display()))?
                {
                    roots.add(cert).with_context(|| format!("acme.ca_file {}", path.display()))?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
            }
        }
        if roots.is_empty() {
            return Err(anyhow!("no CA certificates to trust for the ACME directory (set acme.ca_file)"));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { tls: TlsConnector::from(Arc::new(config)) })
    }
}

impl HttpClient for CaClient {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
        let tls = self.tls.clone();
        Box::pin(async move {
            let uri = req.uri().to_string();
            match tokio::time::timeout(REQUEST_TIMEOUT, send(tls, req)).await {
                Ok(result) => result.map_err(|e| Error::Other(format!("{uri}: {e:#}").into())),
                Err(_) => Err(Error::Other(format!("{uri}: no answer within {REQUEST_TIMEOUT:?}").into())),
            }
        })
    }
}

async fn send(tls: TlsConnector, mut req: Request<BodyWrapper<Bytes>>) -> anyhow::Result<BytesResponse> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("https") {
        return Err(anyhow!("the CA must be reached over https://"));
    }
    let host = uri.host().context("no host in the URL")?.to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_owned())
        .context("not a host name")?;
    let tcp = TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
        .await
        .context("cannot connect")?;
    let stream = tls.connect(name, tcp).await.context("TLS")?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let authority = uri.authority().context("no authority")?.as_str().to_owned();
    *req.uri_mut() = Uri::builder()
        .path_and_query(uri.path_and_query().map_or("/", |p| p.as_str()))
        .build()
        .context("the URL's path")?;
    req.headers_mut().insert(header::HOST, authority.parse().context("Host")?);
    let resp = sender.send_request(req).await?;
    Ok(BytesResponse::from(resp))
}
