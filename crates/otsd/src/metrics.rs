//! The calendar's Prometheus metrics (issue 17): the registry and every
//! metric family, behind one cheap handle, [`Metrics`]. The hot paths
//! count with atomics only (a request is one `fetch_add` in a fixed table,
//! no lock, no allocation); a round observes its histograms once; the
//! figures that already live elsewhere (pending commitments, the stamper's
//! view, file sizes) are read when scraped, by `collect`. The metrics are
//! always counted, whether or not `--metrics-address` serves them: that
//! costs a few atomics, and keeps one code path. The separate listener
//! that serves `GET /metrics` is `serve`'s, never the public port's.
//!
//! More metrics (an upstream's, an aggregator's) are added through
//! [`Metrics::register`], which hands out the registry under the `otsd_`
//! prefix.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

mod collect;
mod requests;
mod serve;
pub mod upstream;

pub use collect::Sources;
pub use requests::{Route, Statuses};
pub use serve::{bind, spawn, CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT};

/// The prefix of every metric name.
pub const PREFIX: &str = "otsd";

/// Buckets of the digests-per-round histogram: 1 to about a million.
const ROUND_DIGEST_BUCKETS: (f64, f64, u16) = (1.0, 4.0, 11);
/// Buckets of the round duration: 100 µs to about 26 s.
const ROUND_SECONDS_BUCKETS: (f64, f64, u16) = (0.0001, 2.0, 19);
/// Buckets of the journal fsync: 50 µs to about 13 s.
const FSYNC_SECONDS_BUCKETS: (f64, f64, u16) = (0.00005, 2.0, 19);

/// Why a `POST /digest` got no proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Content-Length missing or not a number.
    InvalidContentLength,
    /// Longer than 64 bytes.
    TooLong,
    /// The body did not arrive in time.
    BodyTimeout,
    /// The body ended early.
    BodyIncomplete,
    /// The journal could not take the round, or shutdown.
    Unavailable,
}

impl Refusal {
    /// Every reason, in label order.
    pub const ALL: [Refusal; 5] = [
        Refusal::InvalidContentLength,
        Refusal::TooLong,
        Refusal::BodyTimeout,
        Refusal::BodyIncomplete,
        Refusal::Unavailable,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::InvalidContentLength => "invalid_content_length",
            Refusal::TooLong => "too_long",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::BodyIncomplete => "body_incomplete",
            Refusal::Unavailable => "unavailable",
        }
    }
}

type Labels = [(&'static str, &'static str); 1];

/// The calendar's metrics; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    /// Locked to register and to scrape, never on a request.
    registry: Mutex<Registry>,
    digests_accepted: Counter,
    /// One per [`Refusal::ALL`], created up front.
    digests_refused: [Counter; 5],
    rounds: Counter,
    round_digests: Histogram,
    round_seconds: Histogram,
    fsync_seconds: Histogram,
    open_connections: Gauge,
    requests: Arc<requests::Requests>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn buckets((start, factor, n): (f64, f64, u16)) -> Histogram {
    Histogram::new(exponential_buckets(start, factor, n))
}

impl Metrics {
    /// Every metric family of the calendar, counting from zero; the ones
    /// read at scrape time come with [`Metrics::watch`].
    pub fn new() -> Metrics {
        Metrics::build(true)
    }

    /// Only the build info and the open public connections, for a server
    /// that is not a calendar (`otsd aggregate`), which registers its own
    /// families: the calendar's would stay at zero and mislead.
    pub fn bare() -> Metrics {
        Metrics::build(false)
    }

    fn build(calendar: bool) -> Metrics {
        let mut r = Registry::with_prefix(PREFIX);
        r.register(
            "build",
            "The running otsd: its version as a label, value 1",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        // The calendar's own families, or, for another server, a registry
        // that is never encoded (the handles still count, unseen).
        let mut aside = Registry::default();
        let c = if calendar { &mut r } else { &mut aside };
        let digests_accepted = Counter::default();
        c.register(
            "digests_accepted",
            "Digests journaled in a round and answered with a proof",
            digests_accepted.clone(),
        );
        let refused = Family::<Labels, Counter>::default();
        let digests_refused =
            Refusal::ALL.map(|reason| refused.get_or_create_owned(&[("reason", reason.label())]));
        c.register(
            "digests_refused",
            "POST /digest answered without a proof, by reason",
            refused,
        );
        let rounds = Counter::default();
        c.register(
            "rounds",
            "Aggregation rounds journaled (rounds without digests are not run)",
            rounds.clone(),
        );
        let round_digests = buckets(ROUND_DIGEST_BUCKETS);
        c.register(
            "round_digests",
            "Digests per journaled round",
            round_digests.clone(),
        );
        let round_seconds = buckets(ROUND_SECONDS_BUCKETS);
        c.register_with_unit(
            "round_duration",
            "Time from a round's start to its answers handed out: nonces, the tree, the journal write and fsync, the proofs",
            Unit::Seconds,
            round_seconds.clone(),
        );
        let fsync_seconds = buckets(FSYNC_SECONDS_BUCKETS);
        c.register_with_unit(
            "journal_fsync_duration",
            "Time of the journal's fsync (fdatasync), once per round",
            Unit::Seconds,
            fsync_seconds.clone(),
        );
        let open_connections = Gauge::default();
        r.register(
            "http_open_connections",
            "Connections open on the public port",
            open_connections.clone(),
        );
        let requests = Arc::new(requests::Requests::default());
        let c = if calendar { &mut r } else { &mut aside };
        c.register_collector(Box::new(requests.clone()));
        Metrics(Arc::new(Inner {
            registry: Mutex::new(r),
            digests_accepted,
            digests_refused,
            rounds,
            round_digests,
            round_seconds,
            fsync_seconds,
            open_connections,
            requests,
        }))
    }

    /// Counts `n` digests journaled and answered.
    pub fn digests_accepted(&self, n: usize) {
        self.0.digests_accepted.inc_by(n as u64);
    }

    /// Counts a refused `POST /digest`.
    pub fn digest_refused(&self, why: Refusal) {
        let i = Refusal::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.0.digests_refused[i].inc();
    }

    /// Records a journaled round of `digests` that took `elapsed`.
    pub fn round(&self, digests: usize, elapsed: Duration) {
        self.0.rounds.inc();
        self.0.round_digests.observe(digests as f64);
        self.0.round_seconds.observe(elapsed.as_secs_f64());
    }

    /// The histogram the journal observes its fsyncs in.
    pub fn fsync_histogram(&self) -> Histogram {
        self.0.fsync_seconds.clone()
    }

    /// The gauge of open public connections (the listener's registry keeps
    /// it).
    pub fn open_connections(&self) -> Gauge {
        self.0.open_connections.clone()
    }

    /// Counts a request on `route` answered with `status`.
    pub fn request(&self, route: Route, status: u16) {
        self.0.requests.count(route, status);
    }

    /// Reads the figures of `sources` at every scrape: pending
    /// commitments, the journal, file sizes, the stamper's state. Called
    /// once per calendar.
    pub fn watch(&self, sources: Sources) {
        self.register(|r| r.register_collector(Box::new(sources)));
    }

    /// Registers more metrics: `f` gets the registry (its names are
    /// prefixed `otsd_`). Register handles (counters, gauges, histograms
    /// from `prometheus_client`) and keep clones to update them, or a
    /// `prometheus_client::collector::Collector` that reads its figures
    /// when scraped. Not for a hot path: it takes a lock.
    pub fn register(&self, f: impl FnOnce(&mut Registry)) {
        f(&mut self.lock());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // Registration leaves nothing half done a panic could expose.
        self.0
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The OpenMetrics text exposition (ending in `# EOF`), or with
    /// `openmetrics` false the Prometheus text format 0.0.4.
    pub fn encode(&self, openmetrics: bool) -> String {
        let registry = self.lock();
        let mut out = String::with_capacity(16 * 1024);
        let encoded = match openmetrics {
            true => prometheus_client::encoding::text::encode(&mut out, &registry),
            false => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry),
        };
        if encoded.is_err() {
            // Writing to a String does not fail; a collector's figure
            // that would not encode is left out, and said.
            tracing::warn!("metrics: encoding failed; the scrape is incomplete");
        }
        out
    }
}

#[cfg(test)]
mod tests;
