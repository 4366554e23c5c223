//! The `otsd` binary: parses the command line, sets up logging, and runs
//! the library's server (or the `init` step).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use otsd::calendar::Calendar;
use otsd::config::{Cli, Command};
use otsd::journal::Verify;
use otsd::server::{serve, Settings};
use otsd::status::NoStamper;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

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
    let s = &cli.server;
    let settings = Settings {
        aggregation_interval: Duration::from_millis(s.aggregation_interval_ms),
        limits: s.limits.limits(),
        explorer_url: s.explorer_url.clone(),
        lightning_invoice_file: s.lightning_invoice_file.clone(),
        journal_verify: s.journal_verify_last.map_or(Verify::All, Verify::Last),
        bitcoin: s.bitcoin.settings().map(|mut b| {
            b.stamper.max_pending = s.max_pending;
            b
        }),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let listener = otsd::http::bind(&s.rpc_address, s.rpc_port)
            .await
            .with_context(|| format!("binding {}:{}", s.rpc_address, s.rpc_port))?;
        let mut settings = settings;
        // Kept alive (and mining) for as long as the server runs.
        let _devchain = if s.bitcoin.dev {
            let (chain, mut bitcoin) = dev::start(&dir, &listener, &s.bitcoin).await?;
            bitcoin.stamper.max_pending = s.max_pending;
            settings.bitcoin = Some(bitcoin);
            Some(chain)
        } else {
            None
        };
        serve(
            listener,
            &dir,
            settings,
            Arc::new(NoStamper),
            shutdown_signal(),
        )
        .await
        .with_context(|| format!("calendar {}", dir.display()))
    })
}

/// `otsd --dev`: a calendar on an embedded regtest chain.
mod dev {
    use std::net::SocketAddr;
    use std::path::Path;
    use std::time::Duration;

    use anyhow::Context;
    use devchain::{DevChain, DevChainConfig};
    use otsd::calendar::Calendar;
    use otsd::config::BitcoinArgs;
    use otsd::server::Bitcoin;

    /// Seconds between rounds in dev mode.
    const DEV_TX_INTERVAL_SECS: u64 = 5;
    /// Confirmations in dev mode.
    const DEV_CONFIRMATIONS: u64 = 2;
    /// Chain polling in dev mode.
    const DEV_POLL: Duration = Duration::from_secs(1);

    /// Initialises the calendar if needed (uri `http://127.0.0.1:<port>`,
    /// a fresh key), starts devchain (prefunded, mining on a timer, kept in
    /// `<dir>/devchain`), prints and writes its RPC URL, and returns it with
    /// the settings that point the stamper at it.
    pub async fn start(
        dir: &Path,
        listener: &tokio::net::TcpListener,
        args: &BitcoinArgs,
    ) -> anyhow::Result<(DevChain, Bitcoin)> {
        let port = listener.local_addr()?.port();
        if !dir.join("hmac-key").exists() {
            Calendar::init(dir, &format!("http://127.0.0.1:{port}"), "")
                .with_context(|| format!("initialising dev calendar {}", dir.display()))?;
        }
        let chain = DevChain::start(DevChainConfig {
            data_dir: Some(dir.join("devchain")),
            bind: SocketAddr::from(([127, 0, 0, 1], args.dev_rpc_port)),
            block_interval: Some(Duration::from_secs(args.dev_block_interval.max(1))),
            prefund: true,
            ..DevChainConfig::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("starting devchain: {e}"))?;
        let url = format!(
            "http://{}:{}@{}/",
            chain.user(),
            chain.password(),
            chain.addr()
        );
        println!("devchain RPC: {url}");
        std::fs::write(dir.join("dev-rpc-url"), format!("{url}\n"))
            .context("writing dev-rpc-url")?;
        let mut rpc = ots_bitcoin::RpcConfig::new(url, ots_bitcoin::Auth::None);
        rpc.wallet = Some(DevChainConfig::default().wallet);
        let mut bitcoin =
            BitcoinArgs::settings(args).ok_or_else(|| anyhow::anyhow!("--dev needs Bitcoin"))?;
        bitcoin.rpc = rpc;
        bitcoin.stamper.min_confirmations = DEV_CONFIRMATIONS;
        bitcoin.stamper.min_tx_interval_secs = DEV_TX_INTERVAL_SECS;
        bitcoin.poll = DEV_POLL;
        Ok((chain, bitcoin))
    }
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
