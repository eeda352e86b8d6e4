//! ggrokd's inspector: its address, read from the daemon's log, and its API.

use crate::client::{Public, Reply, full};
use crate::cluster::Daemon;
use http::{Method, Request, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A daemon's inspector.
pub struct Inspector {
    /// Its address.
    pub addr: SocketAddr,
    client: Public,
}

impl Inspector {
    /// The inspector of `daemon`, once it has logged `inspector on http://ADDR`.
    pub fn of(daemon: &Daemon) -> Self {
        let line = daemon.process.wait_for(&["inspector on http://"]);
        let addr = line
            .split("inspector on http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Self { addr, client: Public::new(addr) }
    }

    /// The inspector at `addr`.
    pub fn at(addr: SocketAddr) -> Self {
        Self { addr, client: Public::new(addr) }
    }

    /// `METHOD path` with `body` (JSON text, or empty), read whole; `Host` is the inspector's.
    pub async fn request(&self, method: Method, path: &str, body: &str) -> Reply {
        let req = Request::builder().method(method).uri(path).body(full(body.to_owned())).unwrap();
        self.client.fetch(&self.addr.to_string(), req).await
    }

    /// `GET path` as JSON, expecting 200.
    pub async fn get(&self, path: &str) -> Value {
        let reply = self.request(Method::GET, path, "").await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        reply.json()
    }

    /// The list (with `query`, e.g. `?status=4xx`), newest first.
    pub async fn list(&self, query: &str) -> Vec<Value> {
        self.get(&format!("/api/requests{query}")).await["requests"].as_array().cloned().unwrap_or_default()
    }

    /// Waits (up to 10 s) until the list with `query` satisfies `done`, and returns it.
    pub async fn list_when(&self, query: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let list = self.list(query).await;
            if done(&list) || Instant::now() > deadline {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
