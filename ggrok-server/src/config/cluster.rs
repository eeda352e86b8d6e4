//! `[cluster]` of server.toml: how this server names itself to ggrokd, so that a daemon reaching
//! several replicas through one load-balanced address can tell them apart, and whether `/healthz`
//! waits for a tunnel after a start.
//!
//! ```toml
//! [cluster]
//! replica = "eu-1"        # default: the host name
//! wait_for_sessions = 30  # seconds; 0 (default) = ready at once
//! ```

use ggrok_proto::diag::ConfigError;
use ggrok_proto::seconds::Seconds;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// The longest replica name.
pub const MAX_REPLICA: usize = 64;
/// The longest `wait_for_sessions`, in seconds.
pub const MAX_WAIT_FOR_SESSIONS: f64 = 3600.0;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    replica: Option<Spanned<String>>,
    wait_for_sessions: Option<Spanned<Seconds>>,
}

/// The validated `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// This replica's name, sent in every version-2 hello.
    pub replica: String,
    /// How long after a start `/healthz` answers 503 while no daemon has claimed a host here;
    /// zero: ready at once.
    pub wait_for_sessions: Duration,
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
        let wait_for_sessions = match &self.wait_for_sessions {
            Some(w) => super::check_range(w, "cluster.wait_for_sessions", 0.0, MAX_WAIT_FOR_SESSIONS)
                .map_err(|e| ConfigError::at(path, text, w.span(), "cluster.wait_for_sessions", e))?,
            None => Duration::ZERO,
        };
        Ok(ClusterSettings { replica, wait_for_sessions })
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
    use std::time::Duration;

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

    #[test]
    fn wait_for_sessions_is_off_by_default_and_bounded() {
        let parse = |extra: &str| ServerConfig::parse(Path::new("s.toml"), &format!("{CLIENT}{extra}"), None);
        assert_eq!(parse("").unwrap().cluster.wait_for_sessions, Duration::ZERO);
        let wait = |v: &str| {
            parse(&format!("[cluster]\nwait_for_sessions = {v}\n")).map(|c| c.cluster.wait_for_sessions)
        };
        assert_eq!(wait("0").unwrap(), Duration::ZERO);
        assert_eq!(wait("30").unwrap(), Duration::from_secs(30));
        assert_eq!(wait("2.5").unwrap(), Duration::from_millis(2500));
        assert_eq!(wait("3600").unwrap(), Duration::from_secs(3600));
        for bad in ["3601", "-1", "\"30s\""] {
            let err = wait(bad).unwrap_err().to_string();
            assert!(err.starts_with("s.toml:6: ") && err.contains("wait_for_sessions: "), "{bad}: {err}");
        }
        let err = parse("[cluster]\nreplica = \"a\"\nwait_for_sessions = 7200\n").unwrap_err().to_string();
        assert_eq!(err, "s.toml:7: cluster.wait_for_sessions: must be between 0 and 3600 seconds");
    }
}
