//! ggrokctl's entry point: parse the command line, send one command to ggrokd, print the answer.

#![forbid(unsafe_code)]

use clap::{CommandFactory, Parser};
use ggrok_proto::ctl::{Command, Reply};
use ggrokctl::cli::{Cli, Sub};
use ggrokctl::{client, exit, logs, output, ready};
use std::process::ExitCode;

fn main() -> ExitCode {
    // Before any thread exists: `time` reads the local offset only in a single-threaded process.
    let offset = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
    let cli = Cli::parse();
    let command = match cli.command {
        sub @ (Sub::Add { .. } | Sub::Remove { .. }) => {
            let name = if matches!(sub, Sub::Add { .. }) { "add" } else { "remove" };
            match sub.add_or_remove() {
                Ok(command) => command,
                Err(e) => {
                    let mut cli = Cli::command();
                    let usage = cli.find_subcommand_mut(name).expect("a subcommand").render_usage();
                    eprintln!("error: {e}\n\n{usage}\n\nFor more information, try '--help'.");
                    return ExitCode::from(exit::USAGE);
                }
            }
        }
        Sub::List => Command::List,
        Sub::Status => Command::Status,
        Sub::Reload => Command::Reload,
        Sub::Replay { id } => Command::Replay { id },
        Sub::Logs { host, follow, lines } => {
            let socket = ggrok_proto::ctl::socket_path(cli.socket);
            return ExitCode::from(logs::run(&socket, follow, host, lines.0, cli.json, offset));
        }
        Sub::Ready { wait } => {
            let socket = ggrok_proto::ctl::socket_path(cli.socket);
            return ExitCode::from(ready::run(&socket, wait.unwrap_or_default(), cli.json));
        }
        Sub::HashPassword { user } => {
            return match ggrokctl::password::from_input(&user, std::io::stdin().lock()) {
                Ok(entry) => {
                    println!("{}", output::hashed(&user, &entry, cli.json));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ggrokctl: {e}");
                    ExitCode::from(exit::FAILED)
                }
            };
        }
        Sub::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ggrokctl", &mut script);
            let script = String::from_utf8_lossy(&script);
            print!("{}", output::completions(&shell.to_string(), &script, cli.json));
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
