//! The `otsd` binary: parses the command line, sets up logging, and runs
//! the library's server (or the `init` step).

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use otsd::calendar::Calendar;
use otsd::config::{Cli, Command};
use otsd::server::run;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// mimalloc rather than glibc's malloc: less CPU per digest and more GETs
/// per second, with RSS flat at full load (figures in
/// `crates/otsd/bench/RESULTS.md`, the 2026-11-21 05:36 run).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli)?;
    let dir = cli.calendar_dir();
    if let Some(Command::Init { uri, donation_addr }) = &cli.command {
        Calendar::init(&dir, uri, donation_addr)
            .with_context(|| format!("initialising calendar {}", dir.display()))?;
        println!("calendar initialised in {}", dir.display());
        return Ok(());
    }
    // The accept loop, the aggregator and (with --dev) devchain; HTTP
    // connections are served on their own threads (`--http-threads`) and
    // the stamper on another.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(run(&cli.server, &dir, || {}, shutdown_signal()))
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the server");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// stderr at info (each `-v` one level more, each `-q` one less), and
/// debug level to `--debug-file` if given. Libraries' chatter (hyper) is
/// kept at warn.
fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    let levels = [
        LevelFilter::OFF,
        LevelFilter::ERROR,
        LevelFilter::WARN,
        LevelFilter::INFO,
        LevelFilter::DEBUG,
        LevelFilter::TRACE,
    ];
    let idx = (3 + i32::from(cli.verbose) - i32::from(cli.quiet)).clamp(0, 5) as usize;
    let filter = |level: LevelFilter| {
        Targets::new()
            .with_default(level)
            .with_target("hyper", LevelFilter::WARN.min(level))
            .with_target("hyper_util", LevelFilter::WARN.min(level))
    };
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter(levels[idx]));
    let file = match &cli.debug_file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening debug file {}", path.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(Arc::new(f))
                    .with_filter(filter(LevelFilter::DEBUG.max(levels[idx]))),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .init();
    Ok(())
}
