//! How ggrokd speaks to a tunnel's local service, from the tunnel's `local` scheme and its keys
//! `app_protocol`, `ca_file` and `tls_skip_verify`:
//!
//! | `local` | `app_protocol` | speaks |
//! |---|---|---|
//! | `8080`, `host:port`, `http://…` | (none), `"http1"` | HTTP/1.1, pooled keep-alive connections |
//! | `http://…` | `"http2"` | HTTP/2 with prior knowledge (h2c), one multiplexed connection |
//! | `h2c://…` | (none), `"http2"` | the same |
//! | `https://…` | (none) | TLS offering `h2` and `http/1.1`: HTTP/2 when the service picks it |
//! | `https://…` | `"http1"`, `"http2"` | TLS offering only that one |
//!
//! Upgrades (WebSocket) always reach the local service as HTTP/1.1 upgrades, over TLS for `https://`.

use super::address::{LocalAddr, LocalScheme};
use crate::tls::LocalConfigs;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `app_protocol`: the HTTP version toward the local service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppProtocol {
    /// HTTP/1.1 for `http://`; for `https://`, what the service picks by ALPN.
    #[default]
    Auto,
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 (gRPC): prior knowledge without TLS, ALPN `h2` with it.
    Http2,
}

impl AppProtocol {
    /// Reads `"http1"` or `"http2"`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "http1" => Ok(Self::Http1),
            "http2" => Ok(Self::Http2),
            other => Err(format!("{other:?}: expected \"http1\" or \"http2\"")),
        }
    }
}

/// How a tunnel's local service is spoken to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalHttp {
    /// The HTTP version; [`AppProtocol::Http2`] for `h2c://`.
    pub app_protocol: AppProtocol,
    /// For `https://`: how the certificate is checked.
    pub tls: Option<LocalTls>,
}

/// TLS toward an `https://` local service.
#[derive(Clone)]
pub struct LocalTls {
    /// CAs to verify the certificate against, instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (a self-signed development one).
    pub skip_verify: bool,
    /// The rustls configurations made from these, once.
    pub configs: Arc<LocalConfigs>,
}

impl PartialEq for LocalTls {
    fn eq(&self, other: &Self) -> bool {
        (&self.ca_file, self.skip_verify) == (&other.ca_file, other.skip_verify)
    }
}

impl Eq for LocalTls {}

impl fmt::Debug for LocalTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalTls")
            .field("ca_file", &self.ca_file)
            .field("skip_verify", &self.skip_verify)
            .finish()
    }
}

/// What went wrong, and with which key.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyError {
    /// `app_protocol`, `ca_file` or `tls_skip_verify`.
    pub key: &'static str,
    /// What to change.
    pub message: String,
}

fn key_error(key: &'static str, message: impl Into<String>) -> KeyError {
    KeyError { key, message: message.into() }
}

impl LocalHttp {
    /// Checks the keys against `local`'s scheme (`ca_file` already resolved against the config
    /// file's directory) and loads the certificates. Turns `http://` with `app_protocol =
    /// "http2"` into `h2c://`, so that it shows as what it is.
    pub fn new(
        local: &mut LocalAddr,
        app_protocol: Option<AppProtocol>,
        ca_file: Option<&Path>,
        skip_verify: bool,
    ) -> Result<Self, KeyError> {
        let app_protocol = app_protocol.unwrap_or_default();
        match (local.scheme, app_protocol) {
            (LocalScheme::H2c, AppProtocol::Http1) => {
                return Err(key_error("app_protocol", "\"http1\" contradicts h2c://, which is HTTP/2"));
            }
            (LocalScheme::Http, AppProtocol::Http2) => local.scheme = LocalScheme::H2c,
            _ => {}
        }
        let app_protocol = if local.scheme == LocalScheme::H2c { AppProtocol::Http2 } else { app_protocol };
        if local.scheme != LocalScheme::Https {
            if ca_file.is_some() {
                return Err(key_error("ca_file", "applies to https:// local services only"));
            }
            if skip_verify {
                return Err(key_error("tls_skip_verify", "applies to https:// local services only"));
            }
            return Ok(Self { app_protocol, tls: None });
        }
        if skip_verify && ca_file.is_some() {
            return Err(key_error("tls_skip_verify", "give either ca_file or tls_skip_verify, not both"));
        }
        let configs = LocalConfigs::new(ca_file, skip_verify)
            .map_err(|e| key_error(if ca_file.is_some() { "ca_file" } else { "local" }, e))?;
        let tls =
            LocalTls { ca_file: ca_file.map(Path::to_path_buf), skip_verify, configs: Arc::new(configs) };
        Ok(Self { app_protocol, tls: Some(tls) })
    }

    /// The settings of a local service given by its address alone (`ggrokctl add`).
    pub fn of(local: &mut LocalAddr) -> Result<Self, String> {
        Self::new(local, None, None, false).map_err(|e| e.message)
    }

    /// Whether the local service's certificate goes unchecked.
    pub fn skips_verify(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.skip_verify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(raw: &str) -> LocalAddr {
        LocalAddr::parse(raw).unwrap()
    }

    #[test]
    fn schemes_and_app_protocols() {
        let mut l = local("http://127.0.0.1:50051");
        let http = LocalHttp::new(&mut l, Some(AppProtocol::Http2), None, false).unwrap();
        assert_eq!((l.scheme, http.app_protocol), (LocalScheme::H2c, AppProtocol::Http2));
        let mut l = local("h2c://127.0.0.1:50051");
        assert_eq!(LocalHttp::of(&mut l).unwrap().app_protocol, AppProtocol::Http2);
        let mut l = local("h2c://127.0.0.1:50051");
        let err = LocalHttp::new(&mut l, Some(AppProtocol::Http1), None, false).unwrap_err();
        assert_eq!(err.key, "app_protocol");
        let mut l = local("8080");
        assert_eq!(LocalHttp::of(&mut l).unwrap(), LocalHttp::default());
        let mut l = local("https://localhost:8443");
        let https = LocalHttp::new(&mut l, None, None, true).unwrap();
        assert!(https.skips_verify() && https.app_protocol == AppProtocol::Auto);
    }

    #[test]
    fn tls_keys_need_https() {
        let mut l = local("8080");
        assert_eq!(LocalHttp::new(&mut l, None, None, true).unwrap_err().key, "tls_skip_verify");
        let err = LocalHttp::new(&mut l, None, Some(Path::new("ca.pem")), false).unwrap_err();
        assert_eq!(err.key, "ca_file");
        let mut l = local("https://a.test");
        let err = LocalHttp::new(&mut l, None, Some(Path::new("/nonexistent/ca.pem")), false).unwrap_err();
        assert!(err.key == "ca_file" && err.message.contains("/nonexistent/ca.pem"), "{err:?}");
        let err = LocalHttp::new(&mut l, None, Some(Path::new("/nonexistent/ca.pem")), true).unwrap_err();
        assert_eq!(err.key, "tls_skip_verify");
    }
}
