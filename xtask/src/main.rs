//! Project tasks, run as `cargo xtask <task>`.
//!
//! - `demo [PORT]`: builds ggrok, then runs a server on 127.0.0.1 (port 8080, or the one given, or
//!   any free one), a sample local service, and ggrokd with a tunnel `demo.localhost` to it; prints
//!   the `curl` line that works and serves until Ctrl-C.

#![forbid(unsafe_code)]

mod demo;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo::run(args.get(1).map(String::as_str)),
        _ => {
            eprintln!(
                "usage: cargo xtask demo [PORT]\n\n  demo   a working tunnel on loopback: server, sample service, ggrokd (Ctrl-C stops)"
            );
            std::process::exit(2);
        }
    }
}
