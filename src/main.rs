//! The `wsbroker` binary: flags (and a config file), logging, the runtime, and the signals that
//! start a graceful shutdown; `wsbroker config` prints the settings, `wsbroker backup` copies the
//! SQLite store.

use std::process::ExitCode;

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

/// mimalloc's option numbers (`mi_option_e` in its v3 `mimalloc.h`, which `libmimalloc-sys` builds
/// by default; the crate names only the older ones).
#[cfg(not(feature = "system-allocator"))]
mod mi_option {
    pub const PURGE_DELAY: i32 = 15;
}

/// Has mimalloc give freed memory back to the OS at once (in 64 KiB pieces): an idle connection is a
/// few hundred bytes that stay, among the kilobytes its upgrade used for a moment. By default it waits
/// a second, and purges only when it allocates again, which an idle server hardly does, so that memory
/// stays in the process (docs/benchmarks.md measures it). Transparent huge pages, which would also
/// keep it (2 MiB at a time), are off at build time (`mimalloc`'s `no_thp`). Set before anything else
/// runs; the delay is read whenever memory is freed. `MIMALLOC_PURGE_DELAY` in the environment wins.
#[cfg(not(feature = "system-allocator"))]
fn return_freed_memory_promptly() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        // mimalloc read the operator's own setting; it stands.
        return;
    }
    // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table.
    unsafe {
        libmimalloc_sys::mi_option_set(mi_option::PURGE_DELAY, 0);
    }
}

fn main() -> ExitCode {
    #[cfg(not(feature = "system-allocator"))]
    return_freed_memory_promptly();
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `wsbroker config [flags]` and `wsbroker backup PATH [flags]`: the first word, then the flags.
    let task = match args.get(1).and_then(|word| word.to_str()) {
        Some("config") => Some(Task::Describe),
        Some("backup") if args.len() > 2 => Some(Task::Backup(args.remove(2).into())),
        Some("backup") => {
            eprintln!("wsbroker backup: name the file to write: wsbroker backup PATH [flags]");
            return ExitCode::from(2);
        }
        _ => None,
    };
    if task.is_some() {
        args.remove(1);
    }
    let loaded = match wsbroker::config_file::load(args) {
        Ok(loaded) => loaded,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    match task {
        Some(Task::Describe) => {
            print!("{}", loaded.describe());
            return ExitCode::SUCCESS;
        }
        Some(Task::Backup(target)) => return backup(&loaded.config, &target),
        None => {}
    }
    let config = loaded.config;
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

/// What the binary was asked to do besides serving.
enum Task {
    /// Print the effective settings.
    Describe,
    /// Copy the SQLite store to this file, online.
    Backup(std::path::PathBuf),
}

/// `wsbroker backup PATH`: a consistent copy of the SQLite store while the broker runs.
fn backup(config: &Config, target: &std::path::Path) -> ExitCode {
    use wsbroker::config::DatabaseUrl;
    let DatabaseUrl::Sqlite(source) = &config.database_url else {
        eprintln!("wsbroker backup: the store is not a SQLite file; for PostgreSQL use pg_dump");
        return ExitCode::from(2);
    };
    match wsbroker::store::backup(source, target) {
        Ok(pages) => {
            println!("{} -> {}: {pages} pages", source.display(), target.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("wsbroker backup: {err}");
            ExitCode::FAILURE
        }
    }
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
