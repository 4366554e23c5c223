//! The `devchain` binary: runs the regtest chain alone on a chosen address,
//! for scripts in which several calendars (or other clients) share one
//! chain. Prints the RPC URL with its credentials as one line on stdout,
//! optionally writes it to a file only its owner can read, and stops
//! cleanly on SIGINT or SIGTERM.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use devchain::chain::store::write_atomic;
use devchain::devnode::{DEFAULT_RPC_PORT, DEFAULT_RPC_USER, DEFAULT_WALLET};
use devchain::{DevChain, DevChainConfig};

/// Address the RPC server binds by default: loopback only.
const DEFAULT_RPC_BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Prefix of the stdout line that carries the URL, for scripts to match.
const URL_LINE_PREFIX: &str = "devchain RPC: ";

/// An embedded Bitcoin regtest chain answering Bitcoin Core's JSON-RPC,
/// for development and tests only.
#[derive(Debug, Parser)]
#[command(name = "devchain", version)]
struct Cli {
    /// Address the RPC server listens on.
    #[arg(long, default_value_t = DEFAULT_RPC_BIND)]
    rpc_bind: IpAddr,
    /// RPC port; 0 picks a free one (the printed URL shows which).
    #[arg(long, default_value_t = DEFAULT_RPC_PORT)]
    rpc_port: u16,
    /// Data directory, kept across runs (blocks, wallets, mempool, and the
    /// `.cookie` while running). Without it the chain lives in memory only.
    #[arg(long, value_name = "DIR")]
    datadir: Option<PathBuf>,
    /// Mine a block every SECS seconds; without it blocks are mined only on
    /// request (`generatetoaddress`, `generateblock`).
    #[arg(long, value_name = "SECS", value_parser = parse_interval)]
    block_interval: Option<Duration>,
    /// At first start, mine enough blocks to the wallet for one mature coinbase.
    #[arg(long)]
    prefund: bool,
    /// RPC user.
    #[arg(long, default_value = DEFAULT_RPC_USER)]
    rpc_user: String,
    /// RPC password; random when omitted (the printed URL carries it).
    #[arg(long)]
    rpc_password: Option<String>,
    /// Wallet created (or loaded) at start; timer blocks pay it.
    #[arg(long, default_value = DEFAULT_WALLET)]
    wallet: String,
    /// Also write the URL line's URL to this file (mode 0600, replaced
    /// atomically, removed at a clean stop).
    #[arg(long, value_name = "PATH")]
    url_file: Option<PathBuf>,
}

/// A whole number of seconds, at least one.
fn parse_interval(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("the interval must be at least 1 second".into()),
        Ok(n) => Ok(Duration::from_secs(n)),
        Err(e) => Err(e.to_string()),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = DevChainConfig {
        data_dir: cli.datadir.clone(),
        bind: SocketAddr::new(cli.rpc_bind, cli.rpc_port),
        rpc_user: cli.rpc_user.clone(),
        rpc_password: cli.rpc_password.clone(),
        block_interval: cli.block_interval,
        prefund: cli.prefund,
        wallet: cli.wallet.clone(),
        warmup: None,
    };
    let dc = DevChain::start(config).await.with_context(|| {
        format!(
            "starting devchain on {}",
            SocketAddr::new(cli.rpc_bind, cli.rpc_port)
        )
    })?;
    let url = format!("http://{}:{}@{}/", dc.user(), dc.password(), dc.addr());
    if let Some(path) = &cli.url_file {
        // Atomic, so a script polling for the file never reads half of it;
        // mode 0600, as it holds the password.
        if let Err(e) = write_atomic(path, format!("{url}\n").as_bytes()) {
            dc.shutdown().await;
            return Err(e).with_context(|| format!("writing the URL to {}", path.display()));
        }
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{URL_LINE_PREFIX}{url}").context("writing the URL to stdout")?;
        out.flush().context("writing the URL to stdout")?;
    }
    shutdown_signal().await;
    tracing::info!("stopping");
    dc.shutdown().await;
    if let Some(path) = &cli.url_file {
        if let Err(e) = fs::remove_file(path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the URL file");
        }
    }
    Ok(())
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
            tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops devchain");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
