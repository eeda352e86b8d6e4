//! ggrok-server's admin listener: its address, read from the server's log, and requests to it.

use crate::client::{Public, Reply, full};
use crate::cluster::Server;
use crate::process::{READY_TIMEOUT, listening_address};
use http::{Method, Request, StatusCode};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Server configuration for an admin listener on a free loopback port.
pub const ADMIN_CONFIG: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

/// A server's admin listener.
pub struct Admin {
    /// Its address.
    pub addr: SocketAddr,
    client: Public,
}

impl Admin {
    /// The admin listener of `server`, once it has logged `admin listening on ADDR`.
    pub fn of(server: &Server) -> Self {
        let line = server.process.wait_for(&["admin listening on"]);
        let addr = listening_address(&line).unwrap_or_else(|| panic!("no address in {line:?}"));
        Self { addr, client: Public::new(addr) }
    }

    /// `METHOD path`, read whole.
    pub async fn request(&self, method: Method, path: &str) -> Reply {
        let req = Request::builder().method(method).uri(path).body(full("")).unwrap();
        self.client.fetch(&self.addr.to_string(), req).await
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let reply = self.request(Method::GET, "/metrics").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply.text()
    }

    /// Scrapes `/metrics` until `done` holds for its text (bounded by [`READY_TIMEOUT`]) and
    /// returns that text; after the time is up, returns the last text so the caller's assertions
    /// show what was there.
    pub async fn metrics_when(&self, done: impl Fn(&str) -> bool) -> String {
        self.metrics_within(READY_TIMEOUT, done).await
    }

    /// Like [`Admin::metrics_when`], waiting up to `timeout`.
    pub async fn metrics_within(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.metrics().await;
            if done(&text) || Instant::now() >= deadline {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
