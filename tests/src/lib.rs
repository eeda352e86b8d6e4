//! Harness for ggrok's end-to-end tests: the real binaries, started as processes on 127.0.0.1
//! with port 0, readiness awaited on their log lines, never on a fixed sleep.
//!
//! - [`admin`]: the server's admin listener (`/metrics`, `/healthz`);
//! - [`browser`]: a headless Chromium over WebDriver (the inspector page's test);
//! - [`bins`]: finds (and builds, once) the workspace binaries;
//! - [`process`]: a child process whose stderr is watched line by line;
//! - [`relay`]: a TCP relay that can freeze or cut the path between daemon and server;
//! - [`notify`]: a stand-in for systemd's notification socket;
//! - [`packages`]: the .deb and .rpm files, built once;
//! - [`pebble`]: a real ACME CA (Pebble) and its DNS server, for `[acme]`;
//! - [`rogue`]: a tunnel client that misbehaves on purpose;
//! - [`tcp`]: TCP tunnels' helpers (free port ranges, an echo service, checksummed round trips);
//! - [`tls`]: a test CA and an HTTPS client;
//! - [`upstream`]: local services to put behind tunnels (HTTP echo, byte streams, WebSocket echo);
//! - [`cluster`]: a server and a daemon with tunnels, ready to use;
//! - [`grpc`]: a gRPC service and client (tonic, no code generation);
//! - [`client`]: public-side HTTP helpers;
//! - [`haproxy`]: a real load balancer in front of server replicas;
//! - [`load`]: a steady public load whose answers are checked byte for byte;
//! - [`replicas`]: server replicas behind HAProxy and a daemon that holds them all;
//! - [`logs`]: `ggrokctl logs` listings and live followers.

#![forbid(unsafe_code)]

pub mod admin;
pub mod balancer;
pub mod bins;
pub mod browser;
pub mod client;
pub mod cluster;
pub mod grpc;
pub mod haproxy;
pub mod inspector;
pub mod load;
pub mod logs;
pub mod notify;
pub mod packages;
pub mod pebble;
pub mod process;
pub mod relay;
pub mod replicas;
pub mod rogue;
pub mod tcp;
pub mod terminal;
pub mod tls;
pub mod upstream;

/// The token every test cluster uses.
pub const TEST_TOKEN: &str = "test-token-0123456789abcdef";
