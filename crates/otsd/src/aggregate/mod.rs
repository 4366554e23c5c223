//! `otsd aggregate`: a stateless aggregator in front of calendars, as
//! a.pool and b.pool.opentimestamps.org are. It keeps nothing on disk (no
//! calendar directory, key, wallet or journal): each `POST /digest` gets a
//! nonce, each round's digests make one Merkle tree, and the tree's tip is
//! submitted to every upstream calendar at once ([`upstream`]); every
//! client then gets its path to the tip followed by all the upstreams'
//! replies merged under it ([`round`]), or a 503 naming the upstreams'
//! failures when fewer than `--upstream-min` answered in time. A calendar
//! behind it sees one commitment per aggregator per round, however many
//! clients there are. The HTTP side is the calendar's accept loop and
//! workers ([`crate::listener::run_router`]) with routes of its own
//! (`routes`: no `GET /timestamp`, clients upgrade at the calendars);
//! plain `POST /digest` requests take the listener's fast path
//! ([`crate::listener::fast`]) to the same rounds.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::limits::Limits;
use crate::listener;
use crate::metrics::Metrics;
use crate::workers::Workers;

mod metrics;
pub mod round;
mod routes;
pub mod upstream;

/// Default round interval (a.pool's, and the calendar's, one second).
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(1000);
/// Default number of upstream calendars that must answer a round.
pub const DEFAULT_UPSTREAM_MIN: usize = 1;
/// Default bound on an upstream's answer to a round: under the five
/// seconds the reference client waits for the aggregator, less its round.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_millis(3000);
/// Default time the other upstreams get once `--upstream-min` have
/// answered: a calendar on a one-second round answers within a second of
/// the others, and a hung one must not hold every client to the timeout.
pub const DEFAULT_UPSTREAM_GRACE: Duration = Duration::from_millis(1000);

/// Everything the aggregator needs, resolved from its flags
/// (`config::AggregateArgs::settings`).
#[derive(Debug, Clone)]
pub struct AggregateSettings {
    /// The upstream calendars' URLs (http or https), in the order given.
    pub upstreams: Vec<String>,
    /// How many must answer a round for its clients to get a proof.
    pub upstream_min: usize,
    /// Bound on each upstream's answer to a round.
    pub upstream_timeout: Duration,
    /// Once `upstream_min` have answered, how much longer the others get.
    pub upstream_grace: Duration,
    /// Time between rounds.
    pub interval: Duration,
    /// Hostile-client limits (the calendar's).
    pub limits: Limits,
    /// HTTP worker threads ([`crate::workers`]); 0 serves connections on
    /// the caller's runtime.
    pub http_threads: usize,
    /// A PEM file of CA certificates trusted for https upstreams beside
    /// the system's roots.
    pub ca_file: Option<PathBuf>,
    /// `HOST:PORT` of the metrics listener (`--metrics-address`, issue
    /// 17); `None`: no listener.
    pub metrics_address: Option<String>,
}

impl AggregateSettings {
    /// Settings for `upstreams` with every other value at its default (and
    /// one HTTP thread; `otsd aggregate` has one per CPU).
    pub fn new(upstreams: Vec<String>) -> AggregateSettings {
        AggregateSettings {
            upstreams,
            upstream_min: DEFAULT_UPSTREAM_MIN,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            upstream_grace: DEFAULT_UPSTREAM_GRACE,
            interval: DEFAULT_INTERVAL,
            limits: Limits::default(),
            http_threads: 1,
            ca_file: None,
            metrics_address: None,
        }
    }
}

/// Why the aggregator could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    /// No upstream calendar.
    #[error("an aggregator needs at least one --upstream calendar")]
    NoUpstream,
    /// `--upstream-min` is 0 or over the number of upstreams.
    #[error("--upstream-min {min}: must be between 1 and the number of upstreams ({count})")]
    BadMin {
        /// The asked minimum.
        min: usize,
        /// The number of upstreams.
        count: usize,
    },
    /// An upstream URL or the CA file cannot be used.
    #[error(transparent)]
    Upstream(#[from] ots_calendar::CalendarError),
    /// The socket or the worker threads.
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
    /// `--metrics-address` cannot be bound.
    #[error("metrics listener {address}: {source}")]
    Metrics {
        /// The address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs the aggregator on `listener` until `shutdown` resolves; the
/// rounds under way (and the digests already queued) are answered before
/// it returns.
pub async fn serve(
    listener: TcpListener,
    settings: AggregateSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AggregateError> {
    if settings.upstreams.is_empty() {
        return Err(AggregateError::NoUpstream);
    }
    let count = settings.upstreams.len();
    if settings.upstream_min == 0 || settings.upstream_min > count {
        return Err(AggregateError::BadMin {
            min: settings.upstream_min,
            count,
        });
    }
    let upstreams = Arc::new(upstream::Upstreams::new(&settings)?);
    // Counted whether or not they are served, as the calendar's.
    let metrics = Metrics::bare();
    upstreams.register_metrics(&metrics);
    let metrics_listener =
        match &settings.metrics_address {
            None => None,
            Some(address) => Some(crate::metrics::bind(address).await.map_err(|source| {
                AggregateError::Metrics {
                    address: address.clone(),
                    source,
                }
            })?),
        };
    let workers = match settings.http_threads {
        0 => None,
        n => Some(Arc::new(Workers::start(n)?)),
    };
    let stats = Arc::new(round::Stats::default());
    metrics.register(|r| r.register_collector(Box::new(metrics::RoundFigures(stats.clone()))));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (handle, rounds) = round::spawn(
        settings.interval,
        workers.clone(),
        upstreams.clone(),
        stats.clone(),
        stop_rx.clone(),
    );
    let digests: Arc<dyn listener::fast::DigestRoute> = Arc::new(handle.clone());
    let router = routes::router(routes::Shared {
        handle,
        upstreams: upstreams.clone(),
        stats,
        interval: settings.interval,
        body_read_timeout: settings.limits.body_read_timeout,
    });
    // Logged once ready: scripts and tests wait for it.
    tracing::info!(
        upstreams = ?settings.upstreams,
        upstream_min = settings.upstream_min,
        "aggregator ready"
    );
    tracing::info!("listening on {}", listener.local_addr()?);
    let metrics_task = match metrics_listener {
        Some(l) => {
            tracing::info!("metrics listening on {}", l.local_addr()?);
            Some(crate::metrics::spawn(l, metrics.clone(), stop_rx.clone()))
        }
        None => None,
    };
    let served = listener::run_router(
        listener,
        router,
        Some(digests),
        &settings.limits,
        Some(metrics.open_connections()),
        workers.clone(),
        async move {
            shutdown.await;
            tracing::info!("shutting down: answering the rounds under way");
            let _ = stop_tx.send(true);
        },
    )
    .await;
    if rounds.await.is_err() {
        tracing::error!("aggregator round task failed");
    }
    if let Some(workers) = workers.and_then(Arc::into_inner) {
        let _ = tokio::task::spawn_blocking(move || workers.stop()).await;
    }
    if let Some(task) = metrics_task {
        task.abort();
    }
    served?;
    tracing::info!("stopped");
    Ok(())
}
