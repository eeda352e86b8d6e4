use clap::Parser;
use ggrokd::config::{DaemonConfig, default_path};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// The ggrok client daemon: keeps the tunnels of its configuration file online over one
/// connection to a ggrok-server, reconnecting forever, and forwards each request to the local
/// service the tunnel names.
///
/// Usually run as a systemd user service: systemctl --user start ggrokd
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Configuration file [default: $XDG_CONFIG_HOME/ggrok/ggrokd.toml, else ~/.config/ggrok/ggrokd.toml]
    #[arg(long, short, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Control socket [default: $GGROK_SOCKET, else $XDG_RUNTIME_DIR/ggrok/ggrokd.sock, else /tmp/ggrok-$UID/ggrokd.sock]
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Validate the configuration and exit: 0 when valid, 2 with the file, line and key when not.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    ggrok_proto::logging::init("info");
    let path = cli.config.unwrap_or_else(default_path);
    let config = match DaemonConfig::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ggrokd: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        println!("{}: ok ({} tunnels, server {})", path.display(), config.tunnels.len(), config.server.url);
        return ExitCode::SUCCESS;
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

#[tokio::main]
async fn serve(config: DaemonConfig, socket: &std::path::Path) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    ggrokd::run(config, socket, shutdown).await
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
