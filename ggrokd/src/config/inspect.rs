//! `inspect`, `inspect_body_limit` and `inspect_memory`: where the inspector listens (loopback
//! only, or `"off"`), and how much of each body and of all requests it keeps.

use crate::inspect::{DEFAULT_ADDRESS, DEFAULT_BODY_LIMIT, DEFAULT_MEMORY, Limits};
use ggrok_proto::diag::ConfigError;
use ggrok_proto::size::Size;
use std::net::SocketAddr;
use std::path::Path;
use toml::Spanned;

/// The largest `inspect_body_limit`.
pub const MAX_BODY_LIMIT: u64 = 16 << 20;

/// The inspector's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InspectSettings {
    /// Where it listens; `None` when off.
    pub address: Option<SocketAddr>,
    /// What it keeps.
    pub limits: Limits,
}

impl Default for InspectSettings {
    fn default() -> Self {
        Self {
            address: DEFAULT_ADDRESS.parse().ok(),
            limits: Limits {
                body: DEFAULT_BODY_LIMIT,
                memory: DEFAULT_MEMORY,
                count: crate::reqlog::DEFAULT_CAPACITY,
            },
        }
    }
}

/// Validates the three keys, each named with its line when wrong.
pub(super) fn parse(
    path: &Path,
    text: &str,
    address: Option<&Spanned<String>>,
    body: Option<&Spanned<Size>>,
    memory: Option<&Spanned<Size>>,
) -> Result<InspectSettings, ConfigError> {
    let mut settings = InspectSettings::default();
    if let Some(a) = address {
        settings.address = match a.get_ref().trim() {
            "off" => None,
            value => {
                let parsed: SocketAddr = value.parse().map_err(|_| {
                    ConfigError::at(
                        path,
                        text,
                        a.span(),
                        "inspect",
                        format!("{value:?}: expected an address such as \"127.0.0.1:4040\", or \"off\""),
                    )
                })?;
                if !parsed.ip().is_loopback() {
                    let why = format!(
                        "{value:?}: the inspector shows your traffic and replays it, so it listens on loopback only (127.0.0.1 or [::1])"
                    );
                    return Err(ConfigError::at(path, text, a.span(), "inspect", why));
                }
                Some(parsed)
            }
        };
    }
    if let Some(b) = body {
        if b.get_ref().0 > MAX_BODY_LIMIT {
            return Err(ConfigError::at(
                path,
                text,
                b.span(),
                "inspect_body_limit",
                "must be at most 16 MiB".to_owned(),
            ));
        }
        settings.limits.body = b.get_ref().0;
    }
    if let Some(m) = memory {
        let value = m.get_ref().0;
        if !(1 << 20..=1 << 36).contains(&value) {
            return Err(ConfigError::at(
                path,
                text,
                m.span(),
                "inspect_memory",
                "must be between 1 MiB and 64 GiB".to_owned(),
            ));
        }
        settings.limits.memory = value;
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use crate::config::DaemonConfig;
    use std::path::Path;

    fn parse(extra: &str) -> Result<DaemonConfig, String> {
        DaemonConfig::parse(Path::new("g.toml"), &format!("server = \"ws://a\"\n{extra}\n"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn loopback_or_off_with_limits() {
        let c = parse("").unwrap();
        assert_eq!(c.inspect.address, Some("127.0.0.1:4040".parse().unwrap()));
        assert_eq!((c.inspect.limits.body, c.inspect.limits.memory), (64 << 10, 64 << 20));
        assert_eq!(parse("inspect = \"off\"").unwrap().inspect.address, None);
        assert_eq!(parse("inspect = \"[::1]:0\"").unwrap().inspect.address, Some("[::1]:0".parse().unwrap()));
        let c = parse("inspect_body_limit = \"1 MiB\"\ninspect_memory = \"8 MiB\"").unwrap();
        assert_eq!((c.inspect.limits.body, c.inspect.limits.memory), (1 << 20, 8 << 20));
        let err = parse("inspect = \"0.0.0.0:4040\"").unwrap_err();
        assert!(err.starts_with("g.toml:2: inspect: ") && err.contains("loopback only"), "{err}");
        assert!(parse("inspect = \"4040\"").unwrap_err().starts_with("g.toml:2: inspect: "));
        assert!(
            parse("inspect_body_limit = \"17 MiB\"")
                .unwrap_err()
                .starts_with("g.toml:2: inspect_body_limit: ")
        );
        assert!(parse("inspect_memory = \"1 KiB\"").unwrap_err().starts_with("g.toml:2: inspect_memory: "));
    }
}
