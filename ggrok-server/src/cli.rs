//! The command line. It lives in the library so that `cargo xtask package` can generate the man
//! page and shell completions from the same definition the binary parses.

use crate::config::DEFAULT_PATH;
use clap::Parser;
use std::path::PathBuf;

/// The public side of ggrok: serves HTTP/1.1 and HTTP/2 on one port (and HTTPS with `[tls]`,
/// its certificates from files or from an ACME CA such as Let's Encrypt with `[acme]`) and routes
/// each request by its Host to the ggrokd client that holds that host; TCP tunnels get ports of
/// their own. Clients connect to the tunnel path of the same port, by an upgrade to raw HTTP/2 or
/// by WebSocket; `threads` in the configuration sets the workers.
///
/// SIGHUP reloads the configuration without dropping sessions that are still allowed: clients,
/// tokens, hosts, ports, limits and certificates; an invalid file keeps the old one in force, and
/// the log says why. SIGTERM drains requests in flight, then exits.
///
/// Example: ggrok-server --config /etc/ggrok/server.toml
#[derive(Parser)]
#[command(name = "ggrok-server", version, about, long_about)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, short, value_name = "PATH", default_value = DEFAULT_PATH)]
    pub config: PathBuf,
    /// Validate the configuration and exit: 0 when valid (listing the certificates in use, with
    /// names, issuer and expiry), 2 with the file, line and key when not.
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
