//! `[admin]` of server.toml: a separate listener for `/metrics` and `/healthz`, never the public
//! port.

use ggrok_proto::diag::ConfigError;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    listen: Spanned<String>,
}

/// The validated admin settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Address of the admin listener (`/metrics`, `/healthz`).
    pub listen: SocketAddr,
}

impl RawAdmin {
    /// Validates `[admin]`; `public` are the addresses of the public listeners (HTTP, HTTPS),
    /// which the admin listener must not share.
    pub(super) fn validate(
        &self,
        path: &Path,
        text: &str,
        public: &[(SocketAddr, &str)],
    ) -> Result<AdminSettings, ConfigError> {
        let at = |msg: String| ConfigError::at(path, text, self.listen.span(), "admin.listen", msg);
        let value = self.listen.get_ref();
        let listen: SocketAddr = value
            .parse()
            .map_err(|_| at(format!("{value:?} is not an address such as \"127.0.0.1:9090\"")))?;
        if let Some((_, key)) = public.iter().find(|(addr, _)| overlaps(listen, *addr)) {
            return Err(at(format!(
                "{listen} is also the public address ({key}); the admin listener needs a port of its own, \
                 such as \"127.0.0.1:9090\""
            )));
        }
        Ok(AdminSettings { listen })
    }
}

/// Whether two listeners would share a port: the same port (not 0, which picks a free one) on
/// the same address, or with either on every address.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_overlap_on_the_same_port_of_a_shared_address() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(overlaps(addr("127.0.0.1:80"), addr("127.0.0.1:80")));
        assert!(overlaps(addr("127.0.0.1:80"), addr("0.0.0.0:80")));
        assert!(overlaps(addr("0.0.0.0:80"), addr("10.0.0.1:80")));
        assert!(!overlaps(addr("127.0.0.1:80"), addr("127.0.0.2:80")));
        assert!(!overlaps(addr("127.0.0.1:9090"), addr("127.0.0.1:80")));
        assert!(!overlaps(addr("127.0.0.1:0"), addr("127.0.0.1:0")));
    }
}
