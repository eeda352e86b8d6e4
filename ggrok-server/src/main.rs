use anyhow::Context;
use clap::Parser;
use ggrok_server::config::{DEFAULT_PATH, ServerConfig};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// The public side of ggrok: serves HTTP on one port and routes each request by its Host header to
/// the ggrokd client that holds that host. Clients connect by WebSocket to the tunnel path of the
/// same port.
///
/// Example: ggrok-server --config /etc/ggrok/server.toml
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Configuration file.
    #[arg(long, short, value_name = "PATH", default_value = DEFAULT_PATH)]
    config: PathBuf,
    /// Validate the configuration and exit: 0 when valid, 2 with the file, line and key when not.
    #[arg(long)]
    check: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    ggrok_proto::logging::init("info");
    let port = std::env::var("PORT").ok();
    let config = match ServerConfig::load(&cli.config, port.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ggrok-server: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if cli.check {
        if let Some(tls) = &config.tls
            && let Err(e) = ggrok_server::tls::acceptor(&tls.certificates)
        {
            eprintln!("ggrok-server: {}: [tls]: {e:#}", cli.config.display());
            return std::process::ExitCode::from(2);
        }
        println!("{}: ok ({} clients, listen {})", cli.config.display(), config.clients.len(), config.listen);
        return std::process::ExitCode::SUCCESS;
    }
    match serve(config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ggrok-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    ggrok_server::run(listener, config, shutdown).await
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
