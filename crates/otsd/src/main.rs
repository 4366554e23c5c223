//! The `otsd` binary: parses the command line, sets up logging, and runs
//! the library's server (or the `init` step).

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use otsd::calendar::Calendar;
use otsd::config::{AggregateArgs, Cli, Command, LogFormat, MirrorCli};
use otsd::server::run;
use std::io::IsTerminal;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// mimalloc rather than glibc's malloc: less CPU per digest and more GETs
/// per second, with RSS flat at full load (figures in
/// `crates/otsd/bench/RESULTS.md`, the 2026-11-21 05:36 run).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // `otsd mirror` first: its `-c` is a calendar URL, not the calendar
    // directory of the other commands.
    if std::env::args_os().nth(1).is_some_and(|a| a == "mirror") {
        let args = std::env::args_os().skip(2);
        let mirror = MirrorCli::parse_from(std::iter::once("otsd mirror".into()).chain(args));
        return run_mirror(&mirror);
    }
    let cli = Cli::parse();
    if let Some(Command::Mirror) = &cli.command {
        anyhow::bail!(
            "`mirror` must be the first argument: otsd mirror -c URL … (see otsd mirror --help)"
        );
    }
    init_logging(&Logging::of(&cli))?;
    let dir = cli.calendar_dir();
    if let Some(Command::Init { uri, donation_addr }) = &cli.command {
        Calendar::init(&dir, uri, donation_addr)
            .with_context(|| format!("initialising calendar {}", dir.display()))?;
        println!("calendar initialised in {}", dir.display());
        return Ok(());
    }
    if let Some(Command::ImportReference(args)) = &cli.command {
        return import_reference(args, &dir);
    }
    if let Some(Command::Aggregate(args)) = &cli.command {
        if cli.calendar.is_some() {
            anyhow::bail!("otsd aggregate keeps no calendar directory: drop -c/--calendar");
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime")?;
        return runtime.block_on(aggregate(args, shutdown_signal()));
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

/// `otsd import-reference`: the import, each bad entry on stderr, the
/// summary on stdout; exit status 3 when there were bad entries.
fn import_reference(args: &otsd::config::ImportArgs, dir: &std::path::Path) -> anyhow::Result<()> {
    use otsd::import::{HeadersFile, NodeHeaders};
    let dir = args.dir.clone().unwrap_or_else(|| dir.to_path_buf());
    let mut file;
    let mut node;
    let headers: Option<&mut dyn otsd::import::groups::Headers> =
        if let Some(path) = &args.headers_file {
            file = HeadersFile::open(path)?;
            Some(&mut file)
        } else if args.verify_headers || args.bitcoin.bitcoin_node.is_some() {
            let rpc = args
                .bitcoin
                .rpc_config()
                .context("--verify-headers needs a Bitcoin node, not --no-bitcoin")?;
            node = NodeHeaders::new(rpc)?;
            Some(&mut node)
        } else {
            None
        };
    let opts = otsd::import::Options {
        dir,
        headers,
        progress: !args.no_progress,
        from_start: args.from_start,
        check_every_node: args.check_every_node,
        commitments_per_transaction: usize::try_from(args.commitments_per_transaction)
            .unwrap_or(usize::MAX),
    };
    let summary = otsd::import::run(opts, |bad| {
        eprintln!(
            "bad entry: journal position {}, commitment {}: {}",
            bad.position,
            hex::encode(&bad.commitment),
            bad.reason
        );
    })?;
    println!("{summary}");
    if summary.bad > 0 {
        std::process::exit(EXIT_BAD_ENTRIES);
    }
    Ok(())
}

/// `import-reference`'s exit status when it found bad entries (it still
/// imported everything else).
const EXIT_BAD_ENTRIES: i32 = 3;

/// `otsd aggregate`: binds the flags' address and runs the stateless
/// aggregator (the rounds and upstream submissions on this runtime, HTTP
/// connections on their own threads) until `shutdown` resolves.
async fn aggregate(
    args: &AggregateArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let listener = otsd::listener::bind(&args.rpc_address, args.rpc_port)
        .await
        .with_context(|| format!("binding {}:{}", args.rpc_address, args.rpc_port))?;
    otsd::aggregate::serve(listener, args.settings(), shutdown)
        .await
        .context("aggregator")
}

/// `otsd mirror`: follows the calendars and serves their proofs until
/// SIGINT or SIGTERM.
fn run_mirror(args: &MirrorCli) -> anyhow::Result<()> {
    init_logging(&Logging {
        verbose: args.verbose,
        quiet: args.quiet,
        debug_file: args.debug_file.clone(),
        log_format: args.log_format,
    })?;
    let dir = args.dir();
    let config = args.config();
    // Multi-threaded: checking chunks (hashing) runs beside serving.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let listener = otsd::listener::bind(&args.rpc_address, args.rpc_port)
            .await
            .with_context(|| format!("binding {}:{}", args.rpc_address, args.rpc_port))?;
        otsd::mirror::run(listener, &dir, &config, shutdown_signal()).await
    })
}

/// The logging flags, of the calendar's command line or the mirror's.
struct Logging {
    verbose: u8,
    quiet: u8,
    debug_file: Option<std::path::PathBuf>,
    log_format: LogFormat,
}

impl Logging {
    fn of(cli: &Cli) -> Logging {
        Logging {
            verbose: cli.verbose,
            quiet: cli.quiet,
            debug_file: cli.debug_file.clone(),
            log_format: cli.log_format,
        }
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

/// Libraries whose chatter is kept at warn unless `RUST_LOG` says
/// otherwise: hyper logs every connection error at debug.
const QUIET_TARGETS: [&str; 2] = ["hyper", "hyper_util"];

/// The stderr filter: `RUST_LOG` (EnvFilter directives such as
/// `warn,otsd::stamping=debug`) when set and not empty; otherwise info,
/// each `-v` one level more and each `-q` one less, with
/// [`QUIET_TARGETS`] at warn.
fn stderr_filter(cli: &Logging) -> anyhow::Result<EnvFilter> {
    match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::builder()
            .parse(&directives)
            .with_context(|| format!("{}={directives:?}", EnvFilter::DEFAULT_ENV)),
        _ => {
            let levels = [
                LevelFilter::OFF,
                LevelFilter::ERROR,
                LevelFilter::WARN,
                LevelFilter::INFO,
                LevelFilter::DEBUG,
                LevelFilter::TRACE,
            ];
            let idx = (3 + i32::from(cli.verbose) - i32::from(cli.quiet)).clamp(0, 5) as usize;
            Ok(level_filter(levels[idx]))
        }
    }
}

/// `level` for everything but [`QUIET_TARGETS`], which get at most warn.
fn level_filter(level: LevelFilter) -> EnvFilter {
    QUIET_TARGETS.iter().fold(
        EnvFilter::default().add_directive(level.into()),
        |filter, target| {
            let quiet = LevelFilter::WARN.min(level);
            match format!("{target}={quiet}").parse() {
                Ok(directive) => filter.add_directive(directive),
                Err(_) => filter,
            }
        },
    )
}

/// One formatting layer writing to `writer`: text (ANSI colour only when
/// `ansi`) or JSON lines.
fn fmt_layer<W>(format: LogFormat, ansi: bool, writer: W) -> Box<dyn Layer<Registry> + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => layer.with_ansi(ansi).boxed(),
        LogFormat::Json => layer.json().with_ansi(false).boxed(),
    }
}

/// stderr per [`stderr_filter`], in `--log-format`, coloured only when
/// stderr is a terminal (and `NO_COLOR` is unset); and, with
/// `--debug-file`, at least debug level to that file (never coloured),
/// whatever `RUST_LOG` says.
fn init_logging(cli: &Logging) -> anyhow::Result<()> {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let filter = stderr_filter(cli)?;
    let file_level = LevelFilter::DEBUG.max(filter.max_level_hint().unwrap_or(LevelFilter::TRACE));
    let mut layers = vec![fmt_layer(cli.log_format, color, std::io::stderr)
        .with_filter(filter)
        .boxed()];
    if let Some(path) = &cli.debug_file {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening debug file {}", path.display()))?;
        layers.push(
            fmt_layer(cli.log_format, false, Arc::new(f))
                .with_filter(level_filter(file_level))
                .boxed(),
        );
    }
    tracing_subscriber::registry().with(layers).init();
    Ok(())
}
