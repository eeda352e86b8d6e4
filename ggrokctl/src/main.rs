//! ggrokctl: controls a running ggrokd. The commands arrive with the control socket; until then
//! this binary only explains itself.

use clap::Parser;
use std::process::ExitCode;

/// Control a running ggrokd: add, remove and list tunnels, show status.
///
/// The control commands (add, remove, list, status, reload) talk to ggrokd over its Unix socket;
/// they are not available in this version yet. Configure tunnels in ggrokd.toml meanwhile.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {}

fn main() -> ExitCode {
    let _ = Cli::parse();
    eprintln!(
        "ggrokctl: control commands are not available in this version; edit ggrokd.toml and restart ggrokd"
    );
    ExitCode::from(2)
}
