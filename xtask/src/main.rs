//! Project tasks, run as `cargo xtask <task>`.
//!
//! - `demo [PORT]`: builds ggrok, then runs a server on 127.0.0.1 (port 8080, or the one given, or
//!   any free one), a sample local service, and ggrokd with a tunnel `demo.localhost` to it; prints
//!   the `curl` line that works and serves until Ctrl-C.
//! - `test`: installs what the tests need (`.ci/setup`), runs every test (`cargo test
//!   --workspace`), the fuzz smoke run (`.ci/fuzz`) and the benchmark's smoke run.
//! - `bench [OPTIONS]`: ggrok against direct and against rathole, side by side (docs/benchmarks.md).
//! - `package [--profile PROFILE]`: builds the `ggrok` and `ggrok-server` packages as .deb and
//!   .rpm from release binaries, and prints the four paths.

#![forbid(unsafe_code)]

mod bench;
mod demo;
mod docs;
mod package;
mod test;

const USAGE: &str = "usage: cargo xtask TASK

  demo [PORT]                  a working tunnel on loopback: server, sample service, ggrokd (Ctrl-C stops)
  bench [--smoke] [--rounds R] [--seconds S] [--connections N] [--bulk-mib M]
        [--only small|bulk|websocket|tcp|memory|stalled|wrk] [--compare DIR] [--inspector-cost]
                               ggrok against direct and rathole, side by side: small requests, 1 GiB each way,
                               WebSocket round trips, TCP tunnels (one stream each way, small connections),
                               memory, small requests with wrk against nginx
                               (release builds; installs rathole; wrk and nginx from .ci/setup; docs/benchmarks.md)
  test                         every test: installs their tools (.ci/setup), cargo test --workspace, fuzz and
                               benchmark smoke runs
  package [--profile PROFILE]  the ggrok and ggrok-server packages, .deb and .rpm (needs .ci/setup's tools)";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo::run(args.get(1).map(String::as_str)),
        Some("package") => package::run(&args[1..]),
        Some("test") => test::run(),
        Some("bench") => bench::run(&args[1..]),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}
