//! `[cluster]` of server.toml: how this server names itself to ggrokd, so that a daemon reaching
//! several replicas through one load-balanced address can tell them apart.
//!
//! ```toml
//! [cluster]
//! replica = "eu-1"        # default: the host name
//! ```

use ggrok_proto::diag::ConfigError;
use serde::Deserialize;
use std::path::Path;
use toml::Spanned;

/// The longest replica name.
pub const MAX_REPLICA: usize = 64;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    replica: Option<Spanned<String>>,
}

/// The validated `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// This replica's name, sent in every version-2 hello.
    pub replica: String,
}

impl RawCluster {
    /// Validates `[cluster]`; the replica defaults to the host name.
    pub(super) fn validate(&self, path: &Path, text: &str) -> Result<ClusterSettings, ConfigError> {
        let replica = match &self.replica {
            Some(r) => {
                check(r.get_ref())
                    .map_err(|e| ConfigError::at(path, text, r.span(), "cluster.replica", e))?;
                r.get_ref().clone()
            }
            None => host_name(),
        };
        Ok(ClusterSettings { replica })
    }
}

/// A replica name: 1 to 64 printable characters, without spaces.
fn check(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > MAX_REPLICA {
        return Err(format!("must be 1 to {MAX_REPLICA} characters"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{name:?}: no spaces or control characters"));
    }
    Ok(())
}

/// The host name (the pod's name under Kubernetes), as the kernel has it; `ggrok-server` if it
/// cannot be read.
pub fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .map(|n| n.trim().to_owned())
        .find(|n| check(n).is_ok())
        .unwrap_or_else(|| "ggrok-server".to_owned())
}

#[cfg(test)]
mod tests {
    use crate::config::ServerConfig;
    use std::path::Path;

    const CLIENT: &str = "[[client]]\nname = \"a\"\ntoken = \"0123456789abcdef\"\nhosts = [\"a.test\"]\n";

    #[test]
    fn the_replica_is_named_or_the_host_name() {
        let parse = |extra: &str| ServerConfig::parse(Path::new("s.toml"), &format!("{CLIENT}{extra}"), None);
        assert_eq!(parse("").unwrap().cluster.replica, super::host_name());
        assert!(!super::host_name().is_empty());
        assert_eq!(parse("[cluster]\nreplica = \"eu-1\"\n").unwrap().cluster.replica, "eu-1");
        for bad in ["\"\"", "\"a b\"", &format!("{:?}", "x".repeat(65))] {
            let err = parse(&format!("[cluster]\nreplica = {bad}\n")).unwrap_err().to_string();
            assert!(err.starts_with("s.toml:6: cluster.replica: "), "{bad}: {err}");
        }
        let err = parse("[cluster]\nreplicas = \"all\"\n").unwrap_err().to_string();
        assert!(err.contains("s.toml:6"), "{err}");
    }
}
