//! Start-up and shutdown: opens the calendar, recovers the journal, builds
//! the pending index, opens the store, runs the aggregator and the HTTP
//! server, and on shutdown flushes the last round before returning.

use std::future::Future;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::aggregator::{self, AggregatorConfig};
use crate::calendar::{Calendar, CalendarError, KeyDeriver};
use crate::config::{Backend, Settings};
use crate::consistency::{self, ConsistencyError};
use crate::http::AppState;
use crate::info::{InfoCache, InfoConfig, INFO_TTL};
use crate::journal::{Journal, JournalError, JournalReader};
use crate::listener;
use crate::metrics::{self, Metrics};
use crate::refstore::{RefStore, RefStoreError};
use crate::stamping::{self, StampingError};
use crate::status::{key_of, NoStamper, PendingIndex, StamperView};
use crate::store::{commitment_bytes, Store, StoreError};
use crate::upstream::{NoHold, StampHold, UpstreamError, Upstreams};
use crate::workers::Workers;

pub use crate::stamping::STAMPER_STATE_FILE;

/// Journal records read at a time when the pending index is built at
/// start-up.
const STARTUP_SCAN_RECORDS: usize = 65_536;

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
    /// The store file will not open.
    #[error("{source}; to start without it, move {} aside: otsd then starts a new store, and with a Bitcoin backend stamps again the commitments whose proofs it held (the journal keeps them all)", path.display())]
    StoreUnreadable {
        /// The store file.
        path: std::path::PathBuf,
        /// Why it will not open.
        source: StoreError,
    },
    /// The journal, the store and the stamper's state disagree.
    #[error(transparent)]
    Consistency(#[from] ConsistencyError),
    /// The socket.
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
    /// The stamper's state, node configuration, runtime or thread.
    #[error(transparent)]
    Stamper(#[from] StampingError),
    /// The reference calendar's `db/` will not open (issue 13).
    #[error(transparent)]
    RefStore(#[from] RefStoreError),
    /// `--metrics-address` cannot be bound (issue 17).
    #[error("metrics listener {address}: {source}")]
    Metrics {
        /// The address asked for.
        address: String,
        /// Why it cannot be bound.
        source: std::io::Error,
    },
    /// The upstream calendars' database or client (`--upstream`).
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// `--mirror`'s store or client (issue 14).
    #[error(transparent)]
    Mirror(#[from] crate::mirror::sync::MirrorError),
    /// `--mirror`'s store will not open (issue 14).
    #[error(transparent)]
    MirrorStore(#[from] crate::mirror::db::MirrorStoreError),
}

/// Runs the calendar in `dir` on `listener` until `shutdown` resolves.
/// Returns after the last round is on disk and answered.
pub async fn serve(
    listener: TcpListener,
    dir: &Path,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let calendar = Calendar::open(dir)?;
    let (mut journal, reader, recovery) =
        Journal::open(dir, &calendar.key, settings.journal_verify)?;
    // Counted whether or not they are served (a few atomics).
    let metrics = Metrics::new();
    journal.observe_fsync(metrics.fsync_histogram());
    tracing::info!(
        records = recovery.records,
        truncated_bytes = recovery.truncated_bytes,
        "journal open"
    );
    let store = Arc::new(open_store(dir, &reader)?);
    // The journal, the store and the stamper's state agree, or are made
    // to where nothing acknowledged can be lost, or start-up stops here.
    let records = reader.durable_len();
    consistency::check_store(dir, records, store.journal_end()?)?;
    // Issue 13: a reference calendar's `db/` is served in place, read-only;
    // its commitments count as having a proof.
    let opening = std::time::Instant::now();
    let refstore = RefStore::open(dir)?;
    if let Some(r) = &refstore {
        let elapsed_ms = opening.elapsed().as_millis() as u64;
        tracing::info!(path = %r.path().display(), elapsed_ms, "reference store open (read-only)");
    }
    // Issue 12: upstream calendars; their completed commitments have a
    // proof (neither pending nor lost to the stamper).
    let upstream = match settings.upstream.urls.is_empty() {
        true => None,
        false => Some(Arc::new(Upstreams::open(
            dir,
            settings.upstream.clone(),
            reader.clone(),
        )?)),
    };
    if let Some(u) = &upstream {
        u.register_metrics(&metrics);
    }
    // The reference's `journal.known-good`: below it every record is in
    // `db/` (the operator's word, which the reference's stamper takes too),
    // so start-up looks up only the records after it.
    let known_good = match &refstore {
        None => 0,
        Some(_) => match crate::refstore::known_good(dir) {
            Ok(k) => {
                if let Some(k) = k {
                    tracing::info!(
                        known_good = k,
                        "journal.known-good: records below it are in db/, not looked up"
                    );
                }
                k.unwrap_or(0)
            }
            Err(why) => {
                tracing::warn!(%why, "journal.known-good ignored: every journal record is looked up in db/");
                0
            }
        },
    };
    let (pending, without_proof) = pending_index(
        &reader,
        &store,
        refstore.as_ref(),
        known_good,
        upstream.as_deref(),
    )?;
    let stamping = matches!(settings.backend, Backend::Bitcoin(_));
    consistency::check_stamper(dir, records, &without_proof, stamping)?;
    let pending = Arc::new(pending);
    let metrics_listener = bind_metrics(settings.metrics_address.as_deref()).await?;
    // Logged once the calendar is ready: scripts and tests wait for it.
    tracing::info!("listening on {}", listener.local_addr()?);

    let (stop_tx, stop_rx) = watch::channel(false);
    // Issue 14: other calendars mirrored beside ours.
    let mirror = match &settings.mirror {
        Some(config) => Some(start_mirror(dir, config, &stop_rx)?),
        None => None,
    };
    let hold: Arc<dyn StampHold> = match &upstream {
        Some(u) => u.clone(),
        None => Arc::new(NoHold),
    };
    let backend = start_backend(
        &settings.backend,
        dir,
        &reader,
        &store,
        &pending,
        &stop_rx,
        hold,
    )?;
    let upstream_tasks = match &upstream {
        Some(u) => {
            let node = match &settings.backend {
                Backend::Bitcoin(btc) => Some(btc.rpc.clone()),
                _ => None,
            };
            u.start(node, pending.clone(), stop_rx.clone())?
        }
        None => Vec::new(),
    };
    metrics.watch(metrics::Sources {
        dir: dir.to_path_buf(),
        pending: pending.clone(),
        journal: reader.clone(),
        stamper: backend.view.clone(),
    });
    let metrics_task = match metrics_listener {
        Some(l) => {
            // After the line above: scripts wait for "listening on".
            tracing::info!("metrics listening on {}", l.local_addr()?);
            Some(metrics::spawn(l, metrics.clone(), stop_rx.clone()))
        }
        None => None,
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
            metrics: metrics.clone(),
        },
        journal,
        pending.clone(),
        stop_rx,
    );
    let state = AppState {
        aggregator: handle,
        store,
        refstore,
        pending,
        stamper: backend.view,
        journal: reader,
        info: Arc::new(InfoConfig {
            donation_addr: calendar.donation_addr.clone(),
            explorer_url: settings.explorer_url.clone(),
            lightning_invoice_file: settings.lightning_invoice_file.clone(),
        }),
        info_cache: Arc::new(InfoCache::new(INFO_TTL)),
        backup_builds: Arc::new(crate::backup::Builds::default()),
        limits: settings.limits.clone(),
        metrics,
        upstream,
        mirror,
    };
    let served = listener::run(listener, state, workers.clone(), async move {
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
    if let Some(task) = backend.done {
        let _ = task.await;
    }
    // What they had not submitted is submitted after the restart (the
    // journal and upstream.redb say what is missing).
    for task in &upstream_tasks {
        task.abort();
    }
    // Until they are gone they hold `upstream.redb` open: a start-up right
    // after this one (a restart in the same process) would find it locked.
    for task in upstream_tasks {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    }
    if let Some(workers) = workers.and_then(Arc::into_inner) {
        // Quick: every connection has ended or was given up on.
        let _ = tokio::task::spawn_blocking(move || workers.stop()).await;
    }
    if let Some(task) = metrics_task {
        task.abort();
    }
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// The journal's commitments without a completed proof, read a chunk at
/// a time: memory follows the pending commitments, not the journal's
/// length. Also gives their positions as ranges, which the start-up check
/// compares with the stamper's state. A commitment with a record in the
/// reference's `db/` has a proof (one LevelDB lookup per record not in our
/// store, but none below `known_good`, which the reference's
/// `journal.known-good` says are all in `db/`); one whose lookup fails is logged and left without a proof, so
/// a stamper stamps it again into our store, which is served first.
fn pending_index(
    reader: &JournalReader,
    store: &Store,
    refstore: Option<&RefStore>,
    known_good: u64,
    upstream: Option<&Upstreams>,
) -> Result<(PendingIndex, Vec<Range<u64>>), ServeError> {
    let started = std::time::Instant::now();
    let pending = PendingIndex::new(reader.clone());
    let mut without_proof: Vec<Range<u64>> = Vec::new();
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
            let c = commitment_bytes(rec);
            let position = start + i as u64;
            let proved = (refstore.is_some() && position < known_good)
                || (completed_exist && store.contains(c)?)
                || in_refstore(refstore, c)
                || upstream.is_some_and(|u| u.is_completed(position));
            if !proved {
                keys.push((key_of(rec), position));
                match without_proof.last_mut() {
                    Some(r) if r.end == position => r.end += 1,
                    _ => without_proof.push(position..position + 1),
                }
            }
        }
        pending.extend(&keys);
        start += recs.len() as u64;
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::info!(pending = pending.len(), elapsed_ms, "pending index built");
    Ok((pending, without_proof))
}

/// Whether the reference's `db/` has a record of commitment `c`.
fn in_refstore(refstore: Option<&RefStore>, c: &[u8]) -> bool {
    let Some(r) = refstore else { return false };
    r.contains(c).unwrap_or_else(|e| {
        tracing::error!(commitment = %hex::encode(c), error = %e, "reference store lookup failed at start-up: counted as pending");
        false
    })
}

/// Binds `--metrics-address`, if given.
async fn bind_metrics(address: Option<&str>) -> Result<Option<TcpListener>, ServeError> {
    let Some(address) = address else {
        return Ok(None);
    };
    match metrics::bind(address).await {
        Ok(l) => Ok(Some(l)),
        Err(source) => Err(ServeError::Metrics {
            address: address.to_owned(),
            source,
        }),
    }
}

/// `--mirror`: opens `mirror.redb` in the calendar directory and follows
/// the calendars until the stop signal.
fn start_mirror(
    dir: &Path,
    config: &crate::mirror::sync::MirrorConfig,
    stop: &watch::Receiver<bool>,
) -> Result<crate::mirror::sync::Mirror, ServeError> {
    let store = Arc::new(crate::mirror::db::MirrorStore::open(dir)?);
    let (mirror, _tasks) = crate::mirror::sync::start(store, config, stop.clone())?;
    Ok(mirror)
}

/// Opens the store; one that will not open is refused with the way on.
fn open_store(dir: &Path, reader: &JournalReader) -> Result<Store, ServeError> {
    Store::open(dir, reader.clone()).map_err(|e| match e {
        StoreError::Unreadable { ref path, .. } => ServeError::StoreUnreadable {
            path: path.clone(),
            source: e,
        },
        e => ServeError::Store(e),
    })
}

/// A started backend: what the HTTP layer reads of it, and what resolves
/// once it has stopped (after the stop signal).
struct Started {
    view: Arc<dyn StamperView>,
    done: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// Starts what completes the journal's commitments.
fn start_backend(
    backend: &Backend,
    dir: &Path,
    reader: &JournalReader,
    store: &Arc<Store>,
    pending: &Arc<PendingIndex>,
    stop: &watch::Receiver<bool>,
    hold: Arc<dyn StampHold>,
) -> Result<Started, ServeError> {
    match backend {
        Backend::None => Ok(Started {
            view: Arc::new(NoStamper),
            done: None,
        }),
        Backend::External(view) => Ok(Started {
            view: view.clone(),
            done: None,
        }),
        Backend::Bitcoin(btc) => {
            let started = stamping::start(btc, dir, reader, store, pending, stop.clone(), hold)?;
            Ok(Started {
                view: started.view,
                done: Some(started.done),
            })
        }
    }
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
    let listener = listener::bind(&args.rpc_address, args.rpc_port)
        .await
        .with_context(|| format!("binding {}:{}", args.rpc_address, args.rpc_port))?;
    let (devchain, dev) = start_dev(args, dir, &listener).await?;
    let settings = args.settings(dev);
    ready();
    let served = serve(listener, dir, settings, shutdown)
        .await
        .with_context(|| format!("calendar {}", dir.display()));
    if let Some(chain) = devchain {
        chain.shutdown().await;
    }
    served
}

/// The embedded chain of `--dev`, when asked for.
#[cfg(feature = "dev")]
async fn start_dev(
    args: &crate::config::ServerArgs,
    dir: &Path,
    listener: &TcpListener,
) -> anyhow::Result<(Option<devchain::DevChain>, Option<crate::config::DevNode>)> {
    if !args.bitcoin.dev {
        return Ok((None, None));
    }
    let (chain, node) = crate::dev::start(dir, listener, &args.bitcoin).await?;
    let height = chain.with_chain(|c| u64::from(c.state().height()));
    crate::consistency::check_dev_chain(dir, &crate::dev::chain_dir(dir), height)?;
    Ok((Some(chain), Some(node)))
}

/// Without the `dev` feature there is no embedded chain: `--dev` is refused.
#[cfg(not(feature = "dev"))]
async fn start_dev(
    args: &crate::config::ServerArgs,
    _dir: &Path,
    _listener: &TcpListener,
) -> anyhow::Result<(Option<NoChain>, Option<crate::config::DevNode>)> {
    if args.bitcoin.dev {
        anyhow::bail!(
            "--dev: this otsd was built without the `dev` feature (no embedded devchain)"
        );
    }
    Ok((None, None))
}

/// Stands in for devchain's handle in a build without it; never made.
#[cfg(not(feature = "dev"))]
enum NoChain {}

#[cfg(not(feature = "dev"))]
impl NoChain {
    async fn shutdown(self) {
        match self {}
    }
}
