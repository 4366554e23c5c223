//! Backup chunks (`GET /experimental/backup/<n>`, PROTOCOL §2): the
//! completed proofs of 1000 consecutive journal commitments as a sorted
//! key-value list of proof nodes, the format the reference's backup
//! mirrors import into their LevelDB.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

use ots_proof::codec::{write_varbytes, write_varuint};
use ots_proof::Timestamp;

use crate::journal::JournalReader;
use crate::store::{commitment_bytes, Store, StoreError};

/// Commitments per chunk (the reference's `PAGING`).
pub const BACKUP_CHUNK_COMMITMENTS: u64 = 1000;

/// Chunks built at once. A chunk is a thousand proof lookups and a merge,
/// 50 ms of a core from our store and 200 ms of the reference store's
/// thread in place; without a bound, clients asking for chunks in parallel
/// took the CPU (or that thread) from every other request (`GET
/// /timestamp` fell from 50,000/s to 1,100/s beside 32 such clients).
pub const CONCURRENT_BUILDS: usize = 1;

/// Chunk requests in progress at once (waiting for a turn, building, or
/// sharing another's build); past it, a 503. Mirrors fetch one chunk at a
/// time each, so this is dozens of mirrors; it keeps one client with
/// thousands of connections from queueing every mirror behind it.
pub const MAX_CHUNK_REQUESTS: usize = 64;

/// The node record of one proof node: `varuint #attestations`,
/// attestations (tag + varbytes payload), `varuint #ops`, ops (tag +
/// varbytes argument) without their children.
pub fn node_record(ts: &Timestamp) -> Vec<u8> {
    let mut out = Vec::new();
    write_varuint(&mut out, ts.attestations().len() as u64);
    for a in ts.attestations() {
        a.encode(&mut out);
    }
    write_varuint(&mut out, ts.ops().len() as u64);
    for (op, _) in ts.ops() {
        op.encode(&mut out);
    }
    out
}

/// Adds every node of `ts` to `map`, keyed by its message. Nodes with the
/// same message (shared parts of proofs) are merged.
fn collect(ts: &Timestamp, map: &mut BTreeMap<Vec<u8>, Timestamp>) {
    let mut stack = vec![ts];
    while let Some(node) = stack.pop() {
        let mut shallow = Timestamp::new(node.msg().to_vec()).expect("message already valid");
        for a in node.attestations() {
            shallow.add_attestation(a.clone());
        }
        for (op, child) in node.ops() {
            // A child of a valid node is valid.
            let _ = shallow.add_op(op.clone());
            stack.push(child);
        }
        match map.get_mut(node.msg()) {
            Some(existing) => {
                let _ = existing.merge(shallow);
            }
            None => {
                map.insert(node.msg().to_vec(), shallow);
            }
        }
    }
}

/// The journal commitments of chunk `n`, oldest first: `None` while the
/// journal holds fewer than all of them.
pub fn commitments(journal: &JournalReader, n: u64) -> std::io::Result<Option<Vec<Vec<u8>>>> {
    let Some(start) = n.checked_mul(BACKUP_CHUNK_COMMITMENTS) else {
        return Ok(None);
    };
    let records = journal.read_range(start, BACKUP_CHUNK_COMMITMENTS as usize)?;
    if records.len() as u64 != BACKUP_CHUNK_COMMITMENTS {
        return Ok(None);
    }
    Ok(Some(
        records
            .iter()
            .map(|r| commitment_bytes(r).to_vec())
            .collect(),
    ))
}

/// A chunk being put together: the nodes of the proofs found so far, and
/// the commitments whose proofs are not in our own store (a reference
/// calendar's `db/` served in place, an upstream's proof: the caller asks
/// whatever serves them, one place deciding what is complete).
pub struct Chunk {
    nodes: BTreeMap<Vec<u8>, Timestamp>,
    missing: Vec<Vec<u8>>,
}

impl Chunk {
    /// Every proof of `commitments` that our store holds.
    pub fn from_store(store: &Store, commitments: &[Vec<u8>]) -> Result<Chunk, StoreError> {
        let mut chunk = Chunk {
            nodes: BTreeMap::new(),
            missing: Vec::new(),
        };
        for c in commitments {
            match store.get(c)? {
                Some(ts) => collect(&ts, &mut chunk.nodes),
                None => chunk.missing.push(c.clone()),
            }
        }
        Ok(chunk)
    }

    /// The commitments without a proof in the store.
    pub fn missing(&self) -> &[Vec<u8>] {
        &self.missing
    }

    /// Adds a complete proof found elsewhere for one of [`Chunk::missing`].
    pub fn add(&mut self, ts: &Timestamp) {
        collect(ts, &mut self.nodes);
    }

    /// The chunk's bytes: every node, sorted by message, as varbytes
    /// (message) + varbytes (node record).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (msg, node) in &self.nodes {
            write_varbytes(&mut out, msg);
            write_varbytes(&mut out, &node_record(node));
        }
        out
    }
}

/// Chunk `n` from our own store alone: `None` while any of its 1000
/// commitments is not yet in the journal or has no proof in the store.
pub fn chunk(
    store: &Store,
    journal: &JournalReader,
    n: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(commitments) = commitments(journal, n)? else {
        return Ok(None);
    };
    let chunk = Chunk::from_store(store, &commitments)?;
    Ok(chunk.missing().is_empty().then(|| chunk.encode()))
}

/// Why [`Builds::run`] gave no chunk.
#[derive(Debug)]
pub enum RunError<E> {
    /// [`MAX_CHUNK_REQUESTS`] requests are in progress already.
    Busy,
    /// The build's own error (a chunk not complete, a lookup failing).
    Build(E),
}

/// A build under way, shared by the requests for its chunk.
type Flight = OnceCell<Arc<Vec<u8>>>;

/// Chunk builds: at most [`CONCURRENT_BUILDS`] at once, and requests for
/// a chunk already being built share that build instead of repeating it.
/// Nothing is kept once a build is done (the next request builds again):
/// a reorg can take a proof back, and a kept chunk would go on serving it.
pub struct Builds {
    turns: Arc<Semaphore>,
    requests: AtomicUsize,
    max_requests: usize,
    flights: Mutex<HashMap<u64, Arc<Flight>>>,
}

impl Default for Builds {
    fn default() -> Self {
        Builds::new(CONCURRENT_BUILDS, MAX_CHUNK_REQUESTS)
    }
}

/// Counts a request in progress until dropped.
struct InProgress<'a>(&'a AtomicUsize);

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Builds {
    /// `turns` builds at once, `max_requests` requests in progress.
    pub fn new(turns: usize, max_requests: usize) -> Builds {
        Builds {
            turns: Arc::new(Semaphore::new(turns)),
            requests: AtomicUsize::new(0),
            max_requests,
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// Chunk `n`: shares a build of `n` under way, or waits for a turn and
    /// runs `build` with it. `build` must hold the turn until its work is
    /// done, blocking-pool work included: a client hanging up drops this
    /// future, not work already handed to a thread.
    pub async fn run<F, Fut, E>(&self, n: u64, build: F) -> Result<Arc<Vec<u8>>, RunError<E>>
    where
        F: FnOnce(OwnedSemaphorePermit) -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
    {
        if self.requests.fetch_add(1, Ordering::SeqCst) >= self.max_requests {
            self.requests.fetch_sub(1, Ordering::SeqCst);
            return Err(RunError::Busy);
        }
        let _in_progress = InProgress(&self.requests);
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            flights.entry(n).or_default().clone()
        };
        let result = flight
            .get_or_try_init(|| async {
                // The semaphore is never closed.
                let turn = self.turns.clone().acquire_owned().await.map_err(|_| None)?;
                build(turn).await.map(Arc::new).map_err(Some)
            })
            .await
            .cloned();
        {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            if flights.get(&n).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                flights.remove(&n);
            }
        }
        match result {
            Ok(bytes) => Ok(bytes),
            Err(Some(e)) => Err(RunError::Build(e)),
            // Unreachable (the semaphore is never closed); a busy answer
            // rather than a panic if it ever were.
            Err(None) => Err(RunError::Busy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ots_proof::{Attestation, Op};

    #[test]
    fn node_records_follow_the_reference_layout() {
        let mut ts = Timestamp::new(vec![1; 32]).unwrap();
        ts.add_attestation(Attestation::pending("https://a.example").unwrap());
        ts.add_op(Op::Sha256)
            .unwrap()
            .add_attestation(Attestation::Bitcoin { height: 5 });
        let rec = node_record(&ts);
        let mut expect = vec![1u8];
        Attestation::pending("https://a.example")
            .unwrap()
            .encode(&mut expect);
        expect.extend_from_slice(&[1, 0x08]);
        assert_eq!(rec, expect);
        let mut map = BTreeMap::new();
        collect(&ts, &mut map);
        assert_eq!(map.len(), 2);
        let child = &map[&ots_proof::op::sha256(&[1; 32]).to_vec()];
        assert_eq!(node_record(child), {
            let mut v = vec![1u8];
            Attestation::Bitcoin { height: 5 }.encode(&mut v);
            v.push(0);
            v
        });
    }

    /// A build that waits for `go` and counts itself in `running` (and
    /// the most at once in `peak`) and `count`.
    struct Probe {
        count: AtomicUsize,
        running: AtomicUsize,
        peak: AtomicUsize,
        go: tokio::sync::Notify,
    }

    impl Probe {
        fn new() -> Arc<Probe> {
            Arc::new(Probe {
                count: AtomicUsize::new(0),
                running: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                go: tokio::sync::Notify::new(),
            })
        }

        async fn build(&self, n: u64, _turn: OwnedSemaphorePermit) -> Result<Vec<u8>, ()> {
            self.count.fetch_add(1, Ordering::SeqCst);
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            self.go.notified().await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            Ok(vec![n as u8])
        }
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    /// A task's answer, failing the test rather than hanging it.
    async fn answer(t: tokio::task::JoinHandle<Option<Arc<Vec<u8>>>>) -> Option<Arc<Vec<u8>>> {
        tokio::time::timeout(std::time::Duration::from_secs(10), t)
            .await
            .expect("the build ended")
            .unwrap()
    }

    #[tokio::test]
    async fn requests_for_a_chunk_being_built_share_the_build_and_none_is_kept() {
        let builds = Arc::new(Builds::new(1, 64));
        let probe = Probe::new();
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let (b, p) = (builds.clone(), probe.clone());
                tokio::spawn(async move { b.run(7, |t| p.build(7, t)).await.ok() })
            })
            .collect();
        settle().await;
        assert_eq!(probe.count.load(Ordering::SeqCst), 1, "one build");
        probe.go.notify_waiters();
        for t in tasks {
            assert_eq!(answer(t).await.as_deref(), Some(&vec![7u8]));
        }
        // Done: the next request builds again.
        let (b, p) = (builds.clone(), probe.clone());
        let again = tokio::spawn(async move { b.run(7, |t| p.build(7, t)).await.ok() });
        settle().await;
        assert_eq!(probe.count.load(Ordering::SeqCst), 2, "nothing kept");
        probe.go.notify_waiters();
        assert!(answer(again).await.is_some());
    }

    #[tokio::test]
    async fn builds_of_different_chunks_take_turns_and_past_the_cap_is_busy() {
        let builds = Arc::new(Builds::new(1, 3));
        let probe = Probe::new();
        let tasks: Vec<_> = (0..3u64)
            .map(|n| {
                let (b, p) = (builds.clone(), probe.clone());
                tokio::spawn(async move { b.run(n, |t| p.build(n, t)).await.ok() })
            })
            .collect();
        settle().await;
        assert_eq!(probe.count.load(Ordering::SeqCst), 1, "one turn");
        let busy = builds.run(9, |t| probe.build(9, t)).await;
        assert!(matches!(busy, Err(RunError::Busy)), "{busy:?}");
        for _ in 0..3 {
            probe.go.notify_waiters();
            settle().await;
        }
        for (n, t) in tasks.into_iter().enumerate() {
            assert_eq!(answer(t).await.as_deref(), Some(&vec![n as u8]));
        }
        assert_eq!(probe.count.load(Ordering::SeqCst), 3);
        assert_eq!(probe.peak.load(Ordering::SeqCst), 1, "never two at once");
        // The requests that ended are no longer counted.
        let (b, p) = (builds.clone(), probe.clone());
        let after = tokio::spawn(async move { b.run(4, |t| p.build(4, t)).await.ok() });
        settle().await;
        probe.go.notify_waiters();
        assert!(answer(after).await.is_some());
    }

    #[tokio::test]
    async fn a_failed_build_is_the_callers_error_and_the_next_request_builds_again() {
        let builds = Builds::new(1, 64);
        let r = builds
            .run(1, |_turn| async { Err::<Vec<u8>, _>("not complete") })
            .await;
        assert!(matches!(r, Err(RunError::Build("not complete"))));
        let r = builds
            .run(1, |_turn| async { Ok::<_, &str>(vec![1]) })
            .await;
        assert_eq!(r.unwrap().as_slice(), &[1]);
    }
}
