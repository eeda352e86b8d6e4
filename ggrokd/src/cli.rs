//! The command line. It lives in the library so that `cargo xtask package` can generate the man
//! page and shell completions from the same definition the binary parses.

use clap::Parser;
use std::path::PathBuf;

/// The ggrok client daemon: keeps the tunnels of its configuration file online over connections
/// to a ggrok-server (one per server worker by default), reconnecting forever, and forwards each
/// request (or TCP connection) to the local service the tunnel names.
///
/// It also serves the inspector, a web page of the latest requests with replay and a JSON API, on
/// http://127.0.0.1:4040 (`inspect` in the configuration; "off" disables it).
///
/// Usually run as a systemd user service: systemctl --user start ggrokd
#[derive(Parser)]
#[command(name = "ggrokd", version, about, long_about)]
pub struct Cli {
    /// Configuration file [default: $XDG_CONFIG_HOME/ggrok/ggrokd.toml, else ~/.config/ggrok/ggrokd.toml]
    #[arg(long, short, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Control socket [default: $GGROK_SOCKET, else $XDG_RUNTIME_DIR/ggrok/ggrokd.sock, else /tmp/ggrok-$UID/ggrokd.sock]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Validate the configuration and exit: 0 when valid (with a warning for each tunnel whose
    /// local certificate goes unverified, tls_skip_verify), 2 with the file, line and key when not.
    #[arg(long)]
    pub check: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
