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
    certificates: Option<Spanned<Vec<RawCert>>>,
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
    /// Certificate files, the first being the default; chosen by SNI. Empty only with `[acme]`.
    pub certificates: Vec<CertPair>,
}

impl RawTls {
    /// Validates `[tls]`; with `acme`, certificate files are optional.
    pub(super) fn validate(&self, path: &Path, text: &str, acme: bool) -> Result<TlsSettings, ConfigError> {
        let at = |span, key: &str, msg: String| ConfigError::at(path, text, span, key, msg);
        let listen = self.listen.get_ref().parse().map_err(|_| {
            at(
                self.listen.span(),
                "tls.listen",
                format!("{:?} is not an address such as \"0.0.0.0:443\"", self.listen.get_ref()),
            )
        })?;
        let files = self.certificates.as_ref().map(|c| c.get_ref().as_slice()).unwrap_or_default();
        if files.is_empty() && !acme {
            let span = self.certificates.as_ref().map_or(self.listen.span(), |c| c.span());
            return Err(at(
                span,
                "tls.certificate",
                "add at least one [[tls.certificate]] with cert and key (or certificates from [acme])".into(),
            ));
        }
        let certificates = files
            .iter()
            .map(|c| CertPair {
                cert: crate::tls::relative_to(path, c.cert.get_ref()),
                key: crate::tls::relative_to(path, c.key.get_ref()),
            })
            .collect();
        Ok(TlsSettings { listen, redirect_http: self.redirect_http, certificates })
    }
}
