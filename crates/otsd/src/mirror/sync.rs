//! Following calendars: for each one, chunks are fetched in order with a
//! few in flight, each parsed and checked ([`super::chunk`], and against
//! a Bitcoin node with [`super::headers`]) off the runtime, then stored in
//! order ([`super::db`]). A refused chunk is logged with its number and
//! why, never stored, and asked again after a backoff; a 404 means caught
//! up, and the calendar is polled again later. Each calendar has its own
//! task, so one that fails or hangs does not hold up the others.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::chunk::{self, Chunk};
use super::db::{MirrorStore, MirrorStoreError, Stored};
use super::fetch::{FetchError, Fetcher, DEFAULT_FETCH_TIMEOUT, DEFAULT_MAX_CHUNK_BYTES};
use super::headers::Headers;

/// Default chunks fetched at once per calendar.
pub const DEFAULT_IN_FLIGHT: usize = 4;
/// Default longest wait between polls once caught up, and between retries
/// after errors (the reference polls every 60 s).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// Most chunks stored in one transaction (those already checked when the
/// first of them is stored).
pub const MAX_CHUNKS_PER_TRANSACTION: usize = 16;
/// The first wait after a 404 or an error; doubled each time up to the
/// poll interval.
pub const MIN_BACKOFF: Duration = Duration::from_millis(500);

/// How to mirror.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// The calendars' URLs.
    pub calendars: Vec<String>,
    /// Chunks fetched at once per calendar (at least 1).
    pub in_flight: usize,
    /// Time a chunk request may take.
    pub fetch_timeout: Duration,
    /// Largest chunk accepted, bytes.
    pub max_chunk_bytes: usize,
    /// Longest wait between polls and retries.
    pub poll_interval: Duration,
    /// The node that checks Bitcoin attestations; `None`: not checked.
    pub bitcoin: Option<ots_bitcoin::RpcConfig>,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            calendars: Vec::new(),
            in_flight: DEFAULT_IN_FLIGHT,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            max_chunk_bytes: DEFAULT_MAX_CHUNK_BYTES,
            poll_interval: DEFAULT_POLL_INTERVAL,
            bitcoin: None,
        }
    }
}

/// What the info page shows of one mirrored calendar.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CalendarStatus {
    /// The calendar's URL.
    pub url: String,
    /// Chunks held (`0..chunks_held`).
    pub chunks_held: u64,
    /// The last chunk held.
    pub last_chunk: Option<u64>,
    /// The last refusal or failure, with its chunk number.
    pub last_error: Option<String>,
}

/// A running mirror: its store and each calendar's status.
#[derive(Debug, Clone)]
pub struct Mirror {
    /// The store.
    pub store: Arc<MirrorStore>,
    statuses: Vec<Arc<Mutex<CalendarStatus>>>,
    /// Whether chunks are checked against a Bitcoin node's headers.
    checked: bool,
}

impl Mirror {
    /// Whether the chunks taken are checked against a Bitcoin node's
    /// headers; without, a mirrored proof is only what its calendar says.
    pub fn checks_headers(&self) -> bool {
        self.checked
    }

    /// Each calendar's status, in the configured order.
    pub fn statuses(&self) -> Vec<CalendarStatus> {
        self.statuses
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }
}

/// Why mirroring could not start.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The store.
    #[error(transparent)]
    Store(#[from] MirrorStoreError),
    /// The HTTP client.
    #[error("mirror: HTTP client: {0}")]
    Fetch(#[from] FetchError),
    /// The Bitcoin node's client.
    #[error("mirror: Bitcoin node: {0}")]
    Node(String),
}

/// Why one chunk was not stored.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("refused: {0}")]
    Chunk(#[from] chunk::ChunkError),
    #[error("refused: {0}")]
    Header(#[from] super::headers::HeaderError),
    #[error(transparent)]
    Store(#[from] MirrorStoreError),
    #[error("checking task failed")]
    Task,
}

/// Starts one task per calendar on the current runtime; they stop when
/// `stop` turns true.
pub fn start(
    store: Arc<MirrorStore>,
    config: &MirrorConfig,
    stop: watch::Receiver<bool>,
) -> Result<(Mirror, Vec<JoinHandle<()>>), MirrorError> {
    let fetcher = Fetcher::new(config.fetch_timeout, config.max_chunk_bytes)?;
    let headers = match &config.bitcoin {
        Some(rpc) => Some(Arc::new(Headers::new(
            ots_bitcoin::RpcClient::new(rpc.clone())
                .map_err(|e| MirrorError::Node(e.to_string()))?,
        ))),
        None => {
            tracing::warn!("mirror: no Bitcoin node: Bitcoin attestations are not checked against block headers");
            None
        }
    };
    let mut statuses = Vec::new();
    let mut tasks = Vec::new();
    for url in &config.calendars {
        let url = url.trim_end_matches('/').to_owned();
        let id = store.calendar_id(&url)?;
        let held = store.next_chunk(id)?;
        let status = Arc::new(Mutex::new(CalendarStatus {
            url: url.clone(),
            chunks_held: held,
            last_chunk: held.checked_sub(1),
            last_error: None,
        }));
        statuses.push(status.clone());
        let follow = Follow {
            url,
            id,
            store: store.clone(),
            fetcher: fetcher.clone(),
            headers: headers.clone(),
            status,
            in_flight: config.in_flight.max(1),
            poll: config.poll_interval.max(MIN_BACKOFF),
        };
        let mut stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                _ = follow.run() => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        }));
    }
    let checked = headers.is_some();
    Ok((
        Mirror {
            store,
            statuses,
            checked,
        },
        tasks,
    ))
}

/// A chunk that passed its checks, with what they took.
struct Checked {
    chunk: Chunk,
    fetch_ms: u64,
    check_ms: u64,
}

/// One calendar being followed.
struct Follow {
    url: String,
    id: u32,
    store: Arc<MirrorStore>,
    fetcher: Fetcher,
    headers: Option<Arc<Headers>>,
    status: Arc<Mutex<CalendarStatus>>,
    in_flight: usize,
    poll: Duration,
}

impl Follow {
    fn status(&self) -> std::sync::MutexGuard<'_, CalendarStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fetches and checks chunk `n`, off the caller's task.
    fn spawn_fetch(&self, n: u64) -> JoinHandle<Result<Checked, Refusal>> {
        let (fetcher, url, headers) =
            (self.fetcher.clone(), self.url.clone(), self.headers.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let bytes = fetcher.chunk(&url, n).await?;
            let fetched = started.elapsed();
            let chunk = tokio::task::spawn_blocking(move || chunk::parse(&bytes))
                .await
                .map_err(|_| Refusal::Task)??;
            if let Some(h) = headers {
                h.check(&chunk.bitcoin).await?;
            }
            Ok(Checked {
                chunk,
                fetch_ms: fetched.as_millis() as u64,
                check_ms: (started.elapsed() - fetched).as_millis() as u64,
            })
        })
    }

    async fn run(self) {
        tracing::info!(calendar = %self.url, "mirroring");
        let mut backoff = MIN_BACKOFF;
        // Chunks asked at once: one while caught up, more once chunks come.
        let mut width = 1usize;
        loop {
            let mut next = match self.store.next_chunk(self.id) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(calendar = %self.url, error = %e, "mirror store");
                    self.status().last_error = Some(e.to_string());
                    tokio::time::sleep(self.poll).await;
                    continue;
                }
            };
            let mut pipeline: VecDeque<(u64, JoinHandle<Result<Checked, Refusal>>)> = (0..width)
                .map(|i| (next + i as u64, self.spawn_fetch(next + i as u64)))
                .collect();
            let failure = loop {
                let Some((n, task)) = pipeline.pop_front() else {
                    break None;
                };
                // The front chunk, and those behind it already checked:
                // stored together, one transaction.
                let mut ready = Vec::new();
                let mut failed = None;
                match task.await {
                    Ok(Ok(c)) => ready.push(c),
                    Ok(Err(e)) => failed = Some((n, e)),
                    Err(_) => failed = Some((n, Refusal::Task)),
                }
                while failed.is_none()
                    && ready.len() < MAX_CHUNKS_PER_TRANSACTION
                    && pipeline.front().is_some_and(|(_, t)| t.is_finished())
                {
                    let Some((m, t)) = pipeline.pop_front() else {
                        break;
                    };
                    match t.await {
                        Ok(Ok(c)) => ready.push(c),
                        Ok(Err(e)) => failed = Some((m, e)),
                        Err(_) => failed = Some((m, Refusal::Task)),
                    }
                }
                if !ready.is_empty() {
                    let count = ready.len() as u64;
                    if let Err(e) = self.store_chunks(n, ready).await {
                        break Some((n, e));
                    }
                    next = n + count;
                    backoff = MIN_BACKOFF;
                    width = (width * 2).min(self.in_flight);
                }
                if failed.is_some() {
                    break failed;
                }
                let mut ahead = pipeline.back().map_or(next, |(m, _)| m + 1);
                while pipeline.len() < width {
                    pipeline.push_back((ahead, self.spawn_fetch(ahead)));
                    ahead += 1;
                }
            };
            for (_, task) in pipeline {
                task.abort();
            }
            match failure {
                Some((n, Refusal::Fetch(FetchError::NotReady))) => {
                    tracing::debug!(calendar = %self.url, chunk = n, "caught up");
                    width = 1;
                }
                Some((n, e)) => {
                    tracing::warn!(calendar = %self.url, chunk = n, error = %e, "chunk not stored; asked again later");
                    self.status().last_error = Some(format!("chunk {n}: {e}"));
                    width = 1;
                }
                None => continue,
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.poll);
        }
    }

    /// Stores chunks `first..` off the runtime (one durable transaction).
    async fn store_chunks(&self, first: u64, checked: Vec<Checked>) -> Result<(), Refusal> {
        let (store, id) = (self.store.clone(), self.id);
        let timings: Vec<(usize, u64, u64)> = checked
            .iter()
            .map(|c| (c.chunk.nodes.len(), c.fetch_ms, c.check_ms))
            .collect();
        let chunks: Vec<Chunk> = checked.into_iter().map(|c| c.chunk).collect();
        let count = chunks.len() as u64;
        let started = Instant::now();
        let stored = tokio::task::spawn_blocking(move || store.store_chunks(id, first, &chunks))
            .await
            .map_err(|_| Refusal::Task)??;
        let store_ms = started.elapsed().as_millis() as u64;
        for (k, (s, (nodes, fetch_ms, check_ms))) in stored.iter().zip(timings).enumerate() {
            if let Stored::New { seq } = s {
                tracing::info!(calendar = %self.url, chunk = first + k as u64, nodes, own_chunk = seq, fetch_ms, check_ms, store_ms, together = count, "chunk stored");
            }
        }
        let mut s = self.status();
        s.chunks_held = s.chunks_held.max(first + count);
        s.last_chunk = Some(s.chunks_held - 1);
        Ok(())
    }
}
