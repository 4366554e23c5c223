//! Upstream calendars (`--upstream URL`): a private calendar that has
//! other calendars timestamp its commitments. Everything of it lives here:
//!
//! * [`submit`] follows the journal (as the stamper does, after the
//!   aggregator's fsync and reply, so clients wait no longer) and submits
//!   each commitment's leaf `sha256(commitment)` to every upstream,
//!   concurrently and with bounded retries and backoff;
//! * [`db`] keeps what was sent and what came back (`upstream.redb`), so a
//!   restart resubmits every commitment an upstream has not answered;
//! * [`upgrade`] polls each upstream for the commitments of its pending
//!   attestations and keeps a complete proof once one reaches Bitcoin
//!   (checked against our node when there is one);
//! * [`proof`] judges what upstreams send and builds what `GET /timestamp`
//!   serves: the commitment, `sha256`, then the upstreams' replies merged
//!   (the same first step as our own proofs, which start at that leaf);
//! * [`hold`] is the one face the stamper sees: with a Bitcoin backend too,
//!   it stamps only commitments older than `--upstream-fallback-after` or
//!   given up by the upstreams, and skips those an upstream completed.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ots_calendar::{Client, ClientConfig, Redirects};
use ots_proof::op::sha256;
use ots_stamper::ranges;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::journal::JournalReader;
use crate::metrics::upstream::{Figures, Outcome, UpstreamMetrics};
use crate::metrics::Metrics;
use crate::status::PendingIndex;

pub mod db;
pub mod hold;
pub mod proof;
pub mod submit;
pub mod upgrade;

pub use db::{UpstreamDb, UpstreamDbError, UPSTREAM_FILE};
pub use hold::{NoHold, StampHold};

/// Default of `--upstream-min`: upstreams that must accept a commitment
/// before the calendar stops counting on its own wallet for it.
pub const DEFAULT_UPSTREAM_MIN: usize = 1;
/// Default of `--upstream-fallback-after`: a commitment not complete
/// upstream after this long is stamped by our own wallet (with a Bitcoin
/// backend). A day: public calendars complete within hours.
pub const DEFAULT_UPSTREAM_FALLBACK_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Default bound on each request to an upstream.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// Default pause between upgrade polls of an upstream (and the first wait
/// of each pending reply's backoff).
pub const DEFAULT_UPSTREAM_POLL: Duration = Duration::from_secs(60);
/// Most upstreams (their give-ups are kept as bits of a `u64`).
pub const MAX_UPSTREAMS: usize = 64;

/// The upstreams' settings, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// The upstream calendars' URLs; none: the feature is off.
    pub urls: Vec<String>,
    /// Upstreams that must accept a commitment (1..=urls.len()).
    pub min: usize,
    /// When our own wallet takes over a commitment not complete upstream.
    pub fallback_after: Duration,
    /// Bound on each request.
    pub timeout: Duration,
    /// Upgrade poll interval.
    pub poll: Duration,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            urls: Vec::new(),
            min: DEFAULT_UPSTREAM_MIN,
            fallback_after: DEFAULT_UPSTREAM_FALLBACK_AFTER,
            timeout: DEFAULT_UPSTREAM_TIMEOUT,
            poll: DEFAULT_UPSTREAM_POLL,
        }
    }
}

/// Why the upstreams could not start.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// `upstream.redb`.
    #[error(transparent)]
    Db(#[from] UpstreamDbError),
    /// A URL or the HTTP client.
    #[error("upstream: {0}")]
    Client(#[from] ots_calendar::CalendarError),
    /// More upstreams than [`MAX_UPSTREAMS`].
    #[error("at most {MAX_UPSTREAMS} upstream calendars")]
    TooMany,
    /// The Bitcoin node (for checking completions).
    #[error("upstream: the Bitcoin node: {0}")]
    Node(#[from] ots_bitcoin::RpcError),
}

/// One upstream's state, as the info page shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UpstreamStatus {
    /// The URL.
    pub url: String,
    /// Unix time of the last accepted answer (a reply or a completion).
    pub last_success: Option<u64>,
    /// The last error.
    pub last_error: Option<String>,
    /// Unix time of the last error.
    pub last_error_at: Option<u64>,
    /// Journal commitments this upstream has not accepted yet.
    pub backlog: u64,
    /// Commitments it accepted that are not complete yet.
    pub open: u64,
    /// Commitments it completed since start-up.
    pub completed: u64,
}

/// The upstream calendars of this calendar: their database, their state,
/// and what the stamper and `GET /timestamp` ask of them.
#[derive(Debug)]
pub struct Upstreams {
    db: Arc<UpstreamDb>,
    config: UpstreamConfig,
    journal: JournalReader,
    status: Vec<Mutex<UpstreamStatus>>,
    /// Positions some upstream gave up on: a bit per upstream.
    given_up: Mutex<BTreeMap<u64, u64>>,
    /// Positions with a complete upstream proof.
    completed: Mutex<Vec<Range<u64>>>,
    /// Each upstream's requests, counted once registered
    /// ([`Upstreams::register_metrics`]).
    metrics: OnceLock<UpstreamMetrics>,
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Upstreams {
    /// Opens `dir`'s [`UPSTREAM_FILE`]: an upstream never seen before takes
    /// the journal's commitments from its current end on (written before
    /// any new commitment is accepted, so none is skipped).
    pub fn open(
        dir: &Path,
        config: UpstreamConfig,
        journal: JournalReader,
    ) -> Result<Upstreams, UpstreamError> {
        if config.urls.len() > MAX_UPSTREAMS {
            return Err(UpstreamError::TooMany);
        }
        let db = UpstreamDb::open(dir)?;
        let end = journal.durable_len();
        let mut status = Vec::new();
        for url in &config.urls {
            let cursor = db.init_cursor(url, end)?;
            status.push(Mutex::new(UpstreamStatus {
                url: url.clone(),
                backlog: end.saturating_sub(cursor),
                open: db.open_count(url)?,
                ..UpstreamStatus::default()
            }));
        }
        let completed = db.completed()?;
        Ok(Upstreams {
            db: Arc::new(db),
            config,
            journal,
            status,
            given_up: Mutex::new(BTreeMap::new()),
            completed: Mutex::new(completed),
            metrics: OnceLock::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// Whether an upstream completed journal position `position`.
    pub fn is_completed(&self, position: u64) -> bool {
        ranges::contains(&lock(&self.completed), position)
    }

    /// Registers the `otsd_upstream_*` families on `metrics` (issue 17):
    /// submissions by result and their duration, counted from now on, and
    /// each upstream's backlog, open and completed commitments, last
    /// success and last error, read from [`Upstreams::statuses`] when
    /// scraped. Once; call it before [`Upstreams::start`].
    pub fn register_metrics(self: &Arc<Self>, metrics: &Metrics) {
        if self.metrics.get().is_some() {
            return;
        }
        let me = self.clone();
        let registered = UpstreamMetrics::register(metrics, &self.config.urls, move || {
            me.statuses()
                .into_iter()
                .map(|s| Figures {
                    url: s.url,
                    last_success: s.last_success,
                    last_error_at: s.last_error_at,
                    backlog: Some(s.backlog),
                    open: Some(s.open),
                    completed: Some(s.completed),
                })
                .collect()
        });
        let _ = self.metrics.set(registered);
    }

    /// Counts a submission to upstream `idx`, if metrics are registered.
    fn count(&self, idx: usize, outcome: Outcome, elapsed: Option<Duration>) {
        if let Some(m) = self.metrics.get() {
            m.request(idx, outcome, elapsed);
        }
    }

    /// Each upstream's state.
    pub fn statuses(&self) -> Vec<UpstreamStatus> {
        self.status.iter().map(|s| lock(s).clone()).collect()
    }

    fn update(&self, idx: usize, f: impl FnOnce(&mut UpstreamStatus)) {
        f(&mut lock(&self.status[idx]));
    }

    fn error(&self, idx: usize, message: String) {
        self.update(idx, |s| {
            s.last_error = Some(message);
            s.last_error_at = Some(unix_now());
        });
    }

    fn give_up(&self, position: u64, idx: usize, on: bool) {
        let mut g = lock(&self.given_up);
        let bits = g.entry(position).or_insert(0);
        if on {
            *bits |= 1 << idx;
        } else {
            *bits &= !(1 << idx);
        }
        if *bits == 0 {
            g.remove(&position);
        }
    }

    fn mark_completed(&self, position: u64) {
        let mut c = lock(&self.completed);
        let mut all = std::mem::take(&mut *c);
        all.push(position..position + 1);
        *c = ranges::normalize(all);
    }

    /// What `GET /timestamp/<commitment>` serves, given our own complete
    /// proof `ours` (serialized) if we have one: `(bytes, complete)`. A
    /// complete proof merges ours with the upstreams' complete ones; with
    /// none complete, every upstream's reply, merged under the commitment
    /// (an incomplete proof). `None`: nothing here either.
    pub fn serve(
        &self,
        commitment: &[u8],
        ours: Option<Vec<u8>>,
    ) -> Result<Option<(Vec<u8>, bool)>, UpstreamDbError> {
        if !matches!(commitment.len(), 36 | 44) {
            return Ok(ours.map(|b| (b, true)));
        }
        let leaf = sha256(commitment);
        let rows = self.db.replies(&leaf)?;
        let complete: Vec<&[u8]> = rows
            .iter()
            .filter(|r| r.complete)
            .map(|r| r.proof.as_slice())
            .collect();
        // Ours first: the upstreams' proofs are added while they fit.
        let merged = |proofs: &[&[u8]], base: Option<&[u8]>| {
            let ours = match base {
                Some(b) => Some(ots_proof::Timestamp::deserialize(b, commitment).ok()?),
                None => None,
            };
            proof::served(commitment, ours, proofs)?.serialize().ok()
        };
        Ok(match ours {
            Some(ours) if complete.is_empty() => Some((ours, true)),
            Some(ours) => Some((merged(&complete, Some(&ours)).unwrap_or(ours), true)),
            None if !complete.is_empty() => merged(&complete, None).map(|b| (b, true)),
            None => {
                let all: Vec<&[u8]> = rows.iter().map(|r| r.proof.as_slice()).collect();
                merged(&all, None).map(|b| (b, false))
            }
        })
    }

    /// Starts a submitter and an upgrade poller per upstream on the
    /// current runtime. `node`: our Bitcoin node, against which upstream
    /// completions are checked; `pending`: completed commitments leave it.
    pub fn start(
        self: &Arc<Self>,
        node: Option<ots_bitcoin::RpcConfig>,
        pending: Arc<PendingIndex>,
        stop: watch::Receiver<bool>,
    ) -> Result<Vec<JoinHandle<()>>, UpstreamError> {
        let client = Client::new(&ClientConfig {
            timeout: self.config.timeout,
            // An upstream may not send us to other hosts: only the
            // calendars configured are asked anything.
            redirects: Redirects::SameOrigin,
            ..ClientConfig::default()
        })?;
        let node = node
            .map(ots_bitcoin::RpcClient::new)
            .transpose()?
            .map(Arc::new);
        let mut tasks = Vec::new();
        for (idx, url) in self.config.urls.iter().enumerate() {
            let calendar = client.calendar(url)?;
            tasks.push(tokio::spawn(submit::run(
                self.clone(),
                idx,
                calendar.clone(),
                stop.clone(),
            )));
            tasks.push(tokio::spawn(upgrade::run(
                self.clone(),
                idx,
                calendar,
                node.clone(),
                pending.clone(),
                stop.clone(),
            )));
            tracing::info!(upstream = %url, "upstream calendar");
        }
        Ok(tasks)
    }
}
