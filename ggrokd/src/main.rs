use clap::Parser;
use ggrokd::cli::Cli;
use ggrokd::config::{DaemonConfig, default_path};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    ggrok_proto::malloc::keep_large_buffers();
    let cli = Cli::parse();
    let path = cli.config.unwrap_or_else(default_path);
    let config = match DaemonConfig::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ggrokd: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        println!(
            "{}: ok ({} tunnels, server {}, connections {}, transport {})",
            path.display(),
            config.tunnels.len(),
            config.servers.iter().map(|s| s.url.as_str()).collect::<Vec<_>>().join(", "),
            config.connections,
            config.transport.as_str()
        );
        for warning in unverified(&config) {
            println!("warning: {warning}");
        }
        return ExitCode::SUCCESS;
    }
    ggrok_proto::logging::init(&config.log_level);
    for warning in unverified(&config) {
        tracing::warn!("{warning}");
    }
    let socket = ggrok_proto::ctl::socket_path(cli.socket);
    match serve(config, &socket) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ggrokd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The tunnels whose local service's certificate goes unchecked (`tls_skip_verify = true`).
fn unverified(config: &DaemonConfig) -> Vec<String> {
    let skipping = config.tunnels.iter().filter(|t| t.local_http.skips_verify());
    skipping
        .map(|t| {
            format!(
                "tunnel {}: tls_skip_verify = true: the certificate of {} is not verified; use it for a \
                 self-signed development certificate only",
                t.host, t.local
            )
        })
        .collect()
}

/// One thread for the control socket, signals and notifications. Requests never run here: each
/// tunnel connection has a thread and a current-thread runtime of its own (`ggrokd::links`), as
/// one connection's HTTP/2 state is driven by a single task anyway and a multi-thread runtime
/// would only add cross-thread wake-ups (about a fifth more CPU per request; docs/benchmarks.md).
#[tokio::main(flavor = "current_thread")]
async fn serve(config: DaemonConfig, socket: &std::path::Path) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(ggrok_proto::signals::cancel_on_stop_signal(
        shutdown.clone(),
        ggrok_proto::notify::stopping,
    ));
    ggrokd::run(config, socket, shutdown).await
}
