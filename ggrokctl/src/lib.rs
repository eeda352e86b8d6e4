//! ggrokctl: drives a running ggrokd over its control socket.
//!
//! The binary (`main.rs`) parses [`cli::Cli`], sends one command with [`client::call`] and prints
//! the answer with [`output::print`]; `logs` streams its answer through [`logs::run`]. The command line is a library item so that
//! `cargo xtask package` can generate the man pages and shell completions from it.

#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod logs;
pub mod output;
pub mod password;
pub mod ready;
pub mod replayed;

/// Exit codes, as documented in `ggrokctl --help`.
pub mod exit {
    /// The command did what was asked.
    pub const OK: u8 = 0;
    /// ggrokd answered with an error; nothing changed.
    pub const FAILED: u8 = 1;
    /// The command line is wrong (clap's own code).
    pub const USAGE: u8 = 2;
    /// ggrokd is not running or its socket cannot be used.
    pub const NO_DAEMON: u8 = 3;
}
