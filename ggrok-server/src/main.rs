use anyhow::Context;
use clap::Parser;
use ggrok_server::cli::Cli;
use ggrok_server::config::ServerConfig;
use tokio_util::sync::CancellationToken;

fn main() -> std::process::ExitCode {
    ggrok_proto::malloc::keep_large_buffers();
    let cli = Cli::parse();
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
        let admin = config.admin.as_ref().map(|a| format!(", admin {}", a.listen)).unwrap_or_default();
        println!(
            "{}: ok ({} clients, listen {}{admin})",
            cli.config.display(),
            config.clients.len(),
            config.listen
        );
        return std::process::ExitCode::SUCCESS;
    }
    ggrok_proto::logging::init(&config.log_level);
    match serve(config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ggrok-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the server on `threads` worker threads. One (the default) is a current-thread runtime: no
/// cross-thread wake-ups, about an eighth less CPU per request than two workers on the benchmark
/// (docs/benchmarks.md); more threads spread TLS and many busy tunnels over cores.
fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let mut runtime = match config.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    runtime.enable_all().build().context("starting the runtime")?.block_on(serve_on(config))
}

async fn serve_on(config: ServerConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(ggrok_proto::signals::cancel_on_stop_signal(
        shutdown.clone(),
        ggrok_server::notify::stopping,
    ));
    ggrok_server::run(listener, config, shutdown).await
}
