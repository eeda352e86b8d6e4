//! `[tls]` of server.toml: an HTTPS listener, its certificates, and whether plain HTTP redirects.

use crate::tls::CertPair;
use ggrok_proto::diag::ConfigError;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    listen: Spanned<String>,
    #[serde(default)]
    redirect_http: bool,
    #[serde(rename = "certificate")]
    certificates: Spanned<Vec<RawCert>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCert {
    cert: Spanned<String>,
    key: Spanned<String>,
}

/// The validated TLS settings. The files are read when the server starts (and by `--check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// HTTPS (and `wss://` tunnel endpoint) address.
    pub listen: SocketAddr,
    /// Answer plain HTTP with a redirect to HTTPS (the tunnel endpoint then requires `wss://`).
    pub redirect_http: bool,
    /// Certificates, the first being the default; chosen by SNI.
    pub certificates: Vec<CertPair>,
}

impl RawTls {
    pub(super) fn validate(&self, path: &Path, text: &str) -> Result<TlsSettings, ConfigError> {
        let at = |span, key: &str, msg: String| ConfigError::at(path, text, span, key, msg);
        let listen = self.listen.get_ref().parse().map_err(|_| {
            at(
                self.listen.span(),
                "tls.listen",
                format!("{:?} is not an address such as \"0.0.0.0:443\"", self.listen.get_ref()),
            )
        })?;
        if self.certificates.get_ref().is_empty() {
            return Err(at(
                self.certificates.span(),
                "tls.certificate",
                "add at least one [[tls.certificate]] with cert and key".into(),
            ));
        }
        let certificates = self
            .certificates
            .get_ref()
            .iter()
            .map(|c| CertPair {
                cert: crate::tls::relative_to(path, c.cert.get_ref()),
                key: crate::tls::relative_to(path, c.key.get_ref()),
            })
            .collect();
        Ok(TlsSettings { listen, redirect_http: self.redirect_http, certificates })
    }
}
