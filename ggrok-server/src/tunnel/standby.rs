//! Daemons standing by for a host another ggrokd of their client took over. When the host is free
//! again (the ggrokd that took it stopped, or released it) and stays free for [`DELAY`], each is
//! told (`Available`), and ggrokd claims it back without taking it from anyone. The delay keeps a
//! holder whose connections only blipped: it is back and holds the host again within it.

use super::daemons::Daemon;
use crate::State;
use crate::tunnel::registry::{Owner, Route};
use ggrok_proto::control::{ServerMessage, TunnelKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tracing::info;

/// How long a freed host must stay free before the daemons standing by are told.
pub const DELAY: Duration = Duration::from_secs(3);

/// Hosts and the daemons displaced from them, by host.
#[derive(Default)]
pub struct Standby {
    waiting: Mutex<HashMap<String, Vec<Weak<Daemon>>>>,
}

impl Standby {
    /// `daemon` lost `host` to another ggrokd of its client.
    pub fn displaced(&self, host: &str, daemon: &Arc<Daemon>) {
        let mut waiting = self.waiting.lock().expect("standby lock");
        let list = waiting.entry(host.to_owned()).or_default();
        list.retain(|d| d.strong_count() > 0 && !std::ptr::eq(d.as_ptr(), Arc::as_ptr(daemon)));
        list.push(Arc::downgrade(daemon));
    }

    /// `hosts` are free now: once they have stayed free for [`DELAY`], the daemons standing by
    /// for them are told.
    pub fn freed(state: &Arc<State>, hosts: &[String]) {
        let hosts: Vec<String> = {
            let waiting = state.standby.waiting.lock().expect("standby lock");
            hosts.iter().filter(|h| waiting.contains_key(*h)).cloned().collect()
        };
        if hosts.is_empty() {
            return;
        }
        let state = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(DELAY).await;
            for host in hosts {
                if matches!(state.registry.lookup(&host), Route::Online(..)) {
                    continue;
                }
                let Some(daemons) = state.standby.waiting.lock().expect("standby lock").remove(&host) else {
                    continue;
                };
                for daemon in daemons.iter().filter_map(Weak::upgrade) {
                    info!(
                        host,
                        daemon = daemon.identity(),
                        "host free again: telling the ggrokd it was taken from"
                    );
                    for session in daemon.sessions().iter().filter(|s| s.protocol >= 2) {
                        session.tell(ServerMessage::Available {
                            tunnel: TunnelKey::Http { host: host.clone() },
                        });
                    }
                }
            }
        });
    }
}
