//! Start-up and shutdown: opens the calendar, recovers the journal, builds
//! the pending index, opens the store, runs the aggregator and the HTTP
//! server, and on shutdown flushes the last round before returning.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::aggregator::{self, AggregatorConfig, DEFAULT_AGGREGATION_INTERVAL};
use crate::calendar::{Calendar, CalendarError, KeyDeriver};
use crate::http::{self, AppState, Limits};
use crate::info::{InfoCache, InfoConfig, DEFAULT_EXPLORER_URL, INFO_TTL};
use crate::journal::{Journal, JournalError, Verify};
use crate::stamping::{self, StampingError};
use crate::status::{key_of, PendingIndex, StamperView};
use crate::store::{commitment_bytes, Store, StoreError};
use crate::workers::Workers;

/// The stamper's state file in the calendar directory.
pub const STAMPER_STATE_FILE: &str = "stamper.json";

/// Journal records read at a time when the pending index is built at
/// start-up.
const STARTUP_SCAN_RECORDS: usize = 65_536;

/// Everything the server needs besides the calendar directory.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Aggregation interval.
    pub aggregation_interval: Duration,
    /// Hostile-client limits.
    pub limits: Limits,
    /// Block explorer base URL.
    pub explorer_url: String,
    /// Lightning invoice file for the info page.
    pub lightning_invoice_file: Option<PathBuf>,
    /// Journal verification at start-up.
    pub journal_verify: Verify,
    /// The Bitcoin node and stamper settings; `None` runs the calendar
    /// without stamping (commitments stay pending).
    pub bitcoin: Option<Bitcoin>,
    /// Threads serving HTTP connections, each with a single-threaded
    /// runtime ([`crate::workers`]); 0 serves them on the caller's runtime.
    pub http_threads: usize,
}

/// One HTTP thread per CPU but one, and at least one: the remaining CPU
/// is the aggregator's (hashing, proofs, the journal), the stamper's and
/// the system's. On the 2-core bench machine, two HTTP threads serve GETs
/// faster but spread a round's replies less evenly (p99 at the 1 s
/// interval 1,021–1,031 ms against 1,009–1,012 ms; bench/RESULTS.md).
pub fn default_http_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// How to reach the Bitcoin node and how to stamp.
#[derive(Debug, Clone)]
pub struct Bitcoin {
    /// The node's JSON-RPC endpoint and credentials.
    pub rpc: ots_bitcoin::RpcConfig,
    /// The stamper's settings.
    pub stamper: ots_stamper::Config,
    /// `estimatesmartfee` target.
    pub conf_target: u32,
    /// How often the chain is polled.
    pub poll: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            aggregation_interval: DEFAULT_AGGREGATION_INTERVAL,
            limits: Limits::default(),
            explorer_url: DEFAULT_EXPLORER_URL.to_owned(),
            lightning_invoice_file: None,
            journal_verify: Verify::All,
            bitcoin: None,
            http_threads: default_http_threads(),
        }
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The calendar directory.
    #[error(transparent)]
    Calendar(#[from] CalendarError),
    /// The journal.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The proof store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The socket.
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
    /// The stamper's state, node configuration, runtime or thread.
    #[error(transparent)]
    Stamper(#[from] StampingError),
}

/// Runs the calendar in `dir` on `listener` until `shutdown` resolves.
/// Returns after the last round is on disk and answered.
pub async fn serve(
    listener: TcpListener,
    dir: &Path,
    settings: Settings,
    stamper: Arc<dyn StamperView>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let calendar = Calendar::open(dir)?;
    let (journal, reader, recovery) = Journal::open(dir, &calendar.key, settings.journal_verify)?;
    tracing::info!(
        records = recovery.records,
        truncated_bytes = recovery.truncated_bytes,
        "journal open"
    );
    let store = Arc::new(Store::open(dir, reader.clone())?);
    let pending = Arc::new(PendingIndex::new(reader.clone()));
    // Only the records without a completed proof: memory follows the
    // pending commitments, not the journal's length.
    let completed_exist = !store.is_empty()?;
    let mut start = 0;
    let mut keys = Vec::with_capacity(STARTUP_SCAN_RECORDS);
    loop {
        let recs = reader.read_range(start, STARTUP_SCAN_RECORDS)?;
        if recs.is_empty() {
            break;
        }
        keys.clear();
        for (i, rec) in recs.iter().enumerate() {
            if !completed_exist || !store.contains(commitment_bytes(rec))? {
                keys.push((key_of(rec), start + i as u64));
            }
        }
        pending.extend(&keys);
        start += recs.len() as u64;
    }
    tracing::info!(pending = pending.len(), "pending index built");
    // Logged once the calendar is ready: scripts and tests wait for it.
    tracing::info!("listening on {}", listener.local_addr()?);

    let (stop_tx, stop_rx) = watch::channel(false);
    let (stamper, stamper_task): (Arc<dyn StamperView>, _) = match &settings.bitcoin {
        None => (stamper, None),
        Some(btc) => {
            let started = stamping::start(btc, dir, &reader, &store, &pending, stop_rx.clone())?;
            (started.view, Some(started.done))
        }
    };
    let workers = match settings.http_threads {
        0 => None,
        n => Some(Arc::new(Workers::start(n)?)),
    };
    let (handle, aggregator_task) = aggregator::spawn(
        AggregatorConfig {
            interval: settings.aggregation_interval,
            attestation: calendar.pending_attestation(),
            deriver: KeyDeriver::new(calendar.key.clone()),
            workers: workers.clone(),
        },
        journal,
        pending.clone(),
        stop_rx,
    );
    let state = AppState {
        aggregator: handle,
        store,
        pending,
        stamper,
        journal: reader,
        info: Arc::new(InfoConfig {
            donation_addr: calendar.donation_addr.clone(),
            explorer_url: settings.explorer_url.clone(),
            lightning_invoice_file: settings.lightning_invoice_file.clone(),
        }),
        info_cache: Arc::new(InfoCache::new(INFO_TTL)),
        limits: settings.limits.clone(),
    };
    let served = http::run(listener, state, workers.clone(), async move {
        shutdown.await;
        tracing::info!("shutting down: flushing the current round");
        // The aggregator flushes what is queued while in-flight requests
        // wait for their answers.
        let _ = stop_tx.send(true);
    })
    .await;
    // If the HTTP loop failed, dropping its sender stopped the aggregator.
    if aggregator_task.await.is_err() {
        tracing::error!("aggregator task failed");
    }
    if let Some(task) = stamper_task {
        let _ = task.await;
    }
    if let Some(workers) = workers.and_then(Arc::into_inner) {
        // Quick: every connection has ended or was given up on.
        let _ = tokio::task::spawn_blocking(move || workers.stop()).await;
    }
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// What the `otsd` binary runs once logging is set up: binds the flags'
/// address, starts devchain with `--dev` (shut down on the way out), calls
/// `ready` once the calendar is about to serve, and serves until `shutdown`
/// resolves. The `ots` client's tests run it too.
pub async fn run(
    args: &crate::config::ServerArgs,
    dir: &Path,
    ready: impl FnOnce(),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut settings = args.settings();
    let listener = http::bind(&args.rpc_address, args.rpc_port)
        .await
        .with_context(|| format!("binding {}:{}", args.rpc_address, args.rpc_port))?;
    let devchain = if args.bitcoin.dev {
        let (chain, bitcoin) = crate::dev::start(dir, &listener, args).await?;
        settings.bitcoin = Some(bitcoin);
        Some(chain)
    } else {
        None
    };
    ready();
    let served = serve(
        listener,
        dir,
        settings,
        Arc::new(crate::status::NoStamper),
        shutdown,
    )
    .await
    .with_context(|| format!("calendar {}", dir.display()));
    if let Some(chain) = devchain {
        chain.shutdown().await;
    }
    served
}
