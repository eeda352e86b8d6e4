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
        let certificates = match &config.tls {
            Some(tls) => {
                match ggrok_server::tls::Certificates::load(&tls.certificates, config.acme.is_some()) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        eprintln!("ggrok-server: {}: [tls]: {e:#}", cli.config.display());
                        return std::process::ExitCode::from(2);
                    }
                }
            }
            None => None,
        };
        let admin = config.admin.as_ref().map(|a| format!(", admin {}", a.listen)).unwrap_or_default();
        println!(
            "{}: ok ({} clients, listen {}{admin})",
            cli.config.display(),
            config.clients.len(),
            config.listen
        );
        if let Some(certificates) = &certificates {
            let now = std::time::SystemTime::now();
            for (source, info) in certificates.in_use() {
                if let ggrok_server::tls::Source::File(path) = source {
                    println!("certificate file {}: {}", path.display(), info.describe(now));
                }
            }
            if let Some(acme) = &config.acme {
                for line in ggrok_server::acme::report::check_lines(acme, certificates) {
                    println!("{line}");
                }
            }
        }
        return std::process::ExitCode::SUCCESS;
    }
    ggrok_proto::logging::init(&config.log_level);
    let source = ggrok_server::reload::Source { path: cli.config.clone(), port_env: port };
    match serve(config, source) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ggrok-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the server. This thread is worker 0, a current-thread runtime; with `threads` above one,
/// [`ggrok_server::run`] starts the other workers, each a current-thread runtime of its own: no
/// work-stealing scheduler, so a connection and its requests stay on one thread without
/// cross-thread wake-ups (docs/benchmarks.md).
fn serve(config: ServerConfig, source: ggrok_server::reload::Source) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(async {
            let shutdown = CancellationToken::new();
            tokio::spawn(ggrok_proto::signals::cancel_on_stop_signal(
                shutdown.clone(),
                ggrok_proto::notify::stopping,
            ));
            ggrok_server::run(config, Some(source), shutdown).await
        })
}
