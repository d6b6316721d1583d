//! The `wsbroker` binary: flags, logging, the runtime, and the signals that start a graceful shutdown.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use wsbroker::config::{Config, LogFormat};
use wsbroker::Server;

/// mimalloc, unless built for a heap profile (`--features system-allocator`: valgrind's massif,
/// which `scripts/heapprofile.sh` runs, sees only the system allocator).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = Config::parse();
    if let Err(message) = init_logging(&config) {
        eprintln!("wsbroker: {message}");
        return ExitCode::from(2);
    }
    let http_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.http_threads)
        .enable_all()
        .build();
    let runtime = match http_runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("wsbroker: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listen = config.listen;
        let server = match Server::bind(config).await {
            Ok(server) => server,
            Err(err) => {
                tracing::error!(%err, "cannot start");
                return if err.is_config() { ExitCode::from(2) } else { ExitCode::FAILURE };
            }
        };
        let addr = server.local_addr().map_or_else(|_| listen.to_string(), |a| a.to_string());
        let shards = server.hub().router().shard_count();
        tracing::info!(%addr, shards, "listening on {addr}");
        server.run(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

fn init_logging(config: &Config) -> Result<(), String> {
    let filter: Targets =
        config.log_level.parse().map_err(|err| format!("bad --log-level: {err}"))?;
    let registry = tracing_subscriber::registry().with(filter);
    match config.log_format {
        LogFormat::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
            registry.with(tracing_subscriber::fmt::layer().with_ansi(ansi)).init();
        }
        LogFormat::Json => registry.with(tracing_subscriber::fmt::layer().json()).init(),
    }
    Ok(())
}

/// Completes on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
    }
}
