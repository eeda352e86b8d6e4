//! ggrokctl: drives a running ggrokd over its control socket.

#![forbid(unsafe_code)]

mod cli;
mod client;
mod output;

use clap::{CommandFactory, Parser};
use cli::{Cli, Sub};
use ggrok_proto::ctl::{Command, Reply};
use std::process::ExitCode;

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Sub::Add { host, local, rewrite_host, no_save } => Command::Add {
            host,
            local,
            host_header: rewrite_host.then(|| "rewrite".to_owned()),
            save: !no_save,
        },
        Sub::Remove { host, no_save } => Command::Remove { host, save: !no_save },
        Sub::List => Command::List,
        Sub::Status => Command::Status,
        Sub::Reload => Command::Reload,
        Sub::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ggrokctl", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
    };
    let socket = ggrok_proto::ctl::socket_path(cli.socket);
    let response = match client::call(&socket, command) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ggrokctl: {e}");
            return ExitCode::from(exit::NO_DAEMON);
        }
    };
    let failed = matches!(response.reply, Reply::Error { .. });
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&response).expect("responses serialise"));
    } else {
        output::print(&response.reply);
    }
    ExitCode::from(if failed { exit::FAILED } else { exit::OK })
}
