//! The daemon's tunnel table: which local service serves which public host, and each tunnel's state.

use crate::config::TunnelSpec;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Where a tunnel stands with the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelState {
    /// Not (yet) registered on the current connection.
    Connecting,
    /// The server routes its host here.
    Online,
    /// The server refused the host.
    Refused(String),
}

/// One tunnel and its state.
#[derive(Debug)]
pub struct Tunnel {
    /// What the configuration says.
    pub spec: TunnelSpec,
    /// Where it stands.
    pub state: RwLock<TunnelState>,
}

/// Tunnels by host pattern, exact hosts looked up before wildcards.
#[derive(Default)]
pub struct Tunnels {
    by_host: RwLock<HashMap<String, Arc<Tunnel>>>,
}

impl Tunnels {
    /// A table holding `specs`, all connecting.
    pub fn new(specs: &[TunnelSpec]) -> Self {
        let table = Self::default();
        for spec in specs {
            table.insert(spec.clone());
        }
        table
    }

    /// Adds or replaces the tunnel for `spec.host`.
    pub fn insert(&self, spec: TunnelSpec) -> Arc<Tunnel> {
        let tunnel = Arc::new(Tunnel { spec, state: RwLock::new(TunnelState::Connecting) });
        self.by_host.write().expect("tunnels lock").insert(tunnel.spec.host.to_string(), tunnel.clone());
        tunnel
    }

    /// The tunnel serving the normalised `host`.
    pub fn lookup(&self, host: &str) -> Option<Arc<Tunnel>> {
        let table = self.by_host.read().expect("tunnels lock");
        if let Some(t) = table.get(host) {
            return Some(t.clone());
        }
        ggrok_proto::host::wildcard_for(host).and_then(|w| table.get(&w).cloned())
    }

    /// The tunnel registered under exactly `pattern`.
    pub fn get(&self, pattern: &str) -> Option<Arc<Tunnel>> {
        self.by_host.read().expect("tunnels lock").get(pattern).cloned()
    }

    /// All tunnels.
    pub fn all(&self) -> Vec<Arc<Tunnel>> {
        self.by_host.read().expect("tunnels lock").values().cloned().collect()
    }

    /// Marks every tunnel as connecting (the connection to the server was lost).
    pub fn reset_states(&self) {
        for t in self.all() {
            *t.state.write().expect("tunnel state lock") = TunnelState::Connecting;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LocalAddr;
    use ggrok_proto::host::HostPattern;

    fn spec(host: &str, port: &str) -> TunnelSpec {
        TunnelSpec {
            host: HostPattern::parse(host).unwrap(),
            local: LocalAddr::parse(port).unwrap(),
            rewrite_host: false,
        }
    }

    #[test]
    fn exact_before_wildcard() {
        let t = Tunnels::new(&[spec("*.a.test", "1"), spec("x.a.test", "2")]);
        assert_eq!(t.lookup("x.a.test").unwrap().spec.local.authority, "localhost:2");
        assert_eq!(t.lookup("y.a.test").unwrap().spec.local.authority, "localhost:1");
        assert!(t.lookup("a.test").is_none());
        assert_eq!(t.all().len(), 2);
    }
}
