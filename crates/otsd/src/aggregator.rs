//! The aggregator: collects the digests submitted during one interval,
//! nonces them, builds one Merkle tree, turns its tip into a calendar
//! commitment, journals it with one fsync (group commit) and only then
//! answers every waiting request with its proof.
//!
//! Failure rule: if the journal write or fsync fails, every request of the
//! round gets [`SubmitError::Unavailable`] and no reply names the
//! commitment. On shutdown the current round is flushed the same way, then
//! new submissions are refused.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ots_proof::merkle::NONCE_LEN;
use ots_proof::op::{sha256, TAG_APPEND, TAG_PREPEND, TAG_SHA256};
use ots_proof::{Attestation, MerkleTree, Op};
use rand::RngCore;
use tokio::sync::{mpsc, oneshot, watch};

use crate::calendar::{Commitment, KeyDeriver};
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::status::PendingIndex;
use crate::workers::{self, Workers};

/// Default aggregation interval (the reference's one second).
pub const DEFAULT_AGGREGATION_INTERVAL: Duration = Duration::from_millis(1000);
/// The largest digest accepted (PROTOCOL §2: "at most 64 bytes").
pub const MAX_DIGEST_LEN: usize = 64;

/// Why a submission got no proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The round's commitment could not be made durable (disk full, I/O
    /// error), or the server is shutting down.
    #[error("calendar unavailable")]
    Unavailable,
    /// The digest is longer than [`MAX_DIGEST_LEN`].
    #[error("digest too long")]
    TooLong,
}

type ReplyTx = oneshot::Sender<Result<Vec<u8>, SubmitError>>;

struct Submission {
    digest: Vec<u8>,
    reply: ReplyTx,
    /// The worker thread the request is served on, if any.
    home: Option<(u64, usize)>,
}

/// The handle the HTTP layer submits digests through; cheap to clone.
///
/// The queue is unbounded on purpose: every queued digest is a request
/// holding a connection, and connections are capped by the HTTP layer.
#[derive(Debug, Clone)]
pub struct AggregatorHandle {
    tx: mpsc::UnboundedSender<Submission>,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission").finish_non_exhaustive()
    }
}

impl AggregatorHandle {
    /// Submits `digest`; resolves to the serialized proof (rooted at
    /// `digest`, ending in the pending attestation) once the round's
    /// commitment is on disk.
    pub async fn submit(&self, digest: Vec<u8>) -> Result<Vec<u8>, SubmitError> {
        if digest.len() > MAX_DIGEST_LEN {
            return Err(SubmitError::TooLong);
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Submission {
                digest,
                reply,
                home: workers::current(),
            })
            .map_err(|_| SubmitError::Unavailable)?;
        rx.await.unwrap_or(Err(SubmitError::Unavailable))
    }
}

/// What the aggregator needs.
#[derive(Debug)]
pub struct AggregatorConfig {
    /// Time between rounds.
    pub interval: Duration,
    /// The calendar's attestation.
    pub attestation: Attestation,
    /// Derives the MAC keys.
    pub deriver: KeyDeriver,
    /// The HTTP worker threads, if requests are served on them: each
    /// gets its replies in one task, woken in arrival order.
    pub workers: Option<Arc<Workers>>,
    /// Counts digests and rounds (issue 17).
    pub metrics: Metrics,
}

/// Starts the aggregator task. It runs until `shutdown` turns true, then
/// flushes the digests already queued and exits, returning the journal.
pub fn spawn(
    config: AggregatorConfig,
    journal: Journal,
    index: Arc<PendingIndex>,
    mut shutdown: watch::Receiver<bool>,
) -> (AggregatorHandle, tokio::task::JoinHandle<Journal>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Submission>();
    let task = tokio::spawn(async move {
        let mut round = Round {
            config,
            journal: Some(journal),
            index,
        };
        let mut ticker = tokio::time::interval(round.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            while let Ok(s) = rx.try_recv() {
                batch.push(s);
            }
            round.run(std::mem::take(&mut batch)).await;
        }
        // Shutdown: refuse new submissions, flush what is queued.
        rx.close();
        while let Some(s) = rx.recv().await {
            batch.push(s);
        }
        round.run(batch).await;
        round
            .journal
            .take()
            .expect("journal returned by every round")
    });
    (AggregatorHandle { tx }, task)
}

struct Round {
    config: AggregatorConfig,
    /// Taken while a blocking append runs.
    journal: Option<Journal>,
    index: Arc<PendingIndex>,
}

/// The calendar's clock as a 4-byte unix time.
pub fn unix_time() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // The 4-byte field wraps in 2106; the reference packs '>L' too.
    secs as u32
}

impl Round {
    async fn run(&mut self, batch: Vec<Submission>) {
        // Requests whose client went away are dropped before aggregation.
        let batch: Vec<Submission> = batch.into_iter().filter(|s| !s.reply.is_closed()).collect();
        if batch.is_empty() {
            return;
        }
        let round_started = std::time::Instant::now();
        let digests = batch.len();
        let mut nonces = vec![0u8; NONCE_LEN * batch.len()];
        rand::rngs::OsRng.fill_bytes(&mut nonces);
        let leaves = nonced_leaves(batch.iter().map(|s| s.digest.as_slice()), &nonces);
        // Every level, leaves first, as ots_proof::MerkleTree builds them.
        let levels = MerkleTree::new(leaves)
            .expect("a round has digests")
            .into_levels();
        let tip = levels[levels.len() - 1][0];
        let t = unix_time();
        let commitment = self.config.deriver.commitment(t, &tip);

        let started = std::time::Instant::now();
        let mut journal = self.journal.take().expect("journal present between rounds");
        let (journal, result) = tokio::task::spawn_blocking(move || {
            let r = journal.append(&[commitment]);
            (journal, r)
        })
        .await
        .expect("journal append does not panic");
        self.journal = Some(journal);
        let index = match result {
            Ok(index) => index,
            Err(e) => {
                tracing::error!(error = %e, digests = batch.len(), "journal append failed; round refused");
                for s in batch {
                    let _ = s.reply.send(Err(SubmitError::Unavailable));
                }
                return;
            }
        };
        // Indexed before any reply: a GET right after the POST finds it.
        self.index.insert(&commitment, index);
        self.config.metrics.digests_accepted(digests);
        tracing::info!(
            digests = batch.len(),
            commitment = %hex::encode(commitment),
            index,
            write_ms = started.elapsed().as_secs_f64() * 1e3,
            "aggregated"
        );
        let tail = commitment_tail(t, &commitment, &self.config.attestation);
        let workers = self.config.workers.as_deref();
        let mut by_worker: Vec<Vec<(ReplyTx, Vec<u8>)>> = (0..workers.map_or(0, Workers::len))
            .map(|_| Vec::new())
            .collect();
        for (i, (s, nonce)) in batch
            .into_iter()
            .zip(nonces.chunks_exact(NONCE_LEN))
            .enumerate()
        {
            let proof = proof_bytes(nonce, &levels, i, &tail);
            match workers.and_then(|w| w.index_of(s.home)) {
                Some(w) => by_worker[w].push((s.reply, proof)),
                None => {
                    let _ = s.reply.send(Ok(proof));
                }
            }
        }
        if let Some(workers) = workers {
            for (w, replies) in by_worker.into_iter().enumerate() {
                if replies.is_empty() {
                    continue;
                }
                workers.spawn(w, async move {
                    for (reply, proof) in replies {
                        let _ = reply.send(Ok(proof));
                    }
                });
            }
        }
        self.config.metrics.round(digests, round_started.elapsed());
    }
}

/// A round's leaves: `sha256(digest || nonce)` for each digest (at most
/// [`MAX_DIGEST_LEN`] bytes) with its [`NONCE_LEN`]-byte nonce, in order.
/// Shared with the stateless aggregator (`otsd aggregate`).
pub(crate) fn nonced_leaves<'a>(
    digests: impl Iterator<Item = &'a [u8]>,
    nonces: &[u8],
) -> Vec<[u8; 32]> {
    let mut buf = [0u8; MAX_DIGEST_LEN + NONCE_LEN];
    digests
        .zip(nonces.chunks_exact(NONCE_LEN))
        .map(|(d, n)| {
            let len = d.len();
            buf[..len].copy_from_slice(d);
            buf[len..len + NONCE_LEN].copy_from_slice(n);
            sha256(&buf[..len + NONCE_LEN])
        })
        .collect()
}

/// The serialized steps shared by every proof of a round: prepend the
/// time, append the MAC, then the pending attestation.
fn commitment_tail(t: u32, commitment: &Commitment, attestation: &Attestation) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    Op::Prepend(t.to_be_bytes().to_vec()).encode(&mut out);
    Op::Append(commitment[36..].to_vec()).encode(&mut out);
    // A node holding only an attestation: 0x00 then the attestation.
    out.push(0x00);
    attestation.encode(&mut out);
    out
}

/// The serialized proof of leaf `i` of a round: `append(nonce)`,
/// `sha256`, its Merkle path (`append(right)` or `prepend(left)`, then
/// `sha256`, per level; an odd last element rises unchanged), then `tail`.
/// Written straight into one buffer: a chain has one item per node, so
/// the format's `0xff` separators never appear. Tests check it against
/// `Timestamp::serialize` of the same proof built with `ots_proof`. The
/// stateless aggregator (`otsd aggregate`) ends its proofs in the
/// upstream calendars' merged replies instead.
pub(crate) fn proof_bytes(
    nonce: &[u8],
    levels: &[Vec<[u8; 32]>],
    mut i: usize,
    tail: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + NONCE_LEN + 1 + 35 * levels.len() + tail.len());
    out.extend_from_slice(&[TAG_APPEND, NONCE_LEN as u8]);
    out.extend_from_slice(nonce);
    out.push(TAG_SHA256);
    for level in &levels[..levels.len() - 1] {
        let sibling = if i % 2 == 1 {
            Some((TAG_PREPEND, &level[i - 1]))
        } else {
            level.get(i + 1).map(|r| (TAG_APPEND, r))
        };
        if let Some((tag, node)) = sibling {
            // varbytes(32): a one-byte length.
            out.extend_from_slice(&[tag, 32]);
            out.extend_from_slice(node);
            out.push(TAG_SHA256);
        }
        i /= 2;
    }
    out.extend_from_slice(tail);
    out
}

/// Serializes a chain of ops ending in `tail` (each op as `tag [varbytes
/// arg]`, directly followed by its child).
#[cfg(test)]
fn linear_proof<'a>(ops: impl Iterator<Item = &'a Op>, tail: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 * 16);
    for op in ops {
        op.encode(&mut out);
    }
    out.extend_from_slice(tail);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ots_proof::Timestamp;

    #[test]
    fn linear_proof_matches_the_tree_serialization() {
        let att = Attestation::pending("https://cal.example").unwrap();
        let digest = vec![0xab; 32];
        let ops = vec![
            Op::Append(vec![1; 16]),
            Op::Sha256,
            Op::Prepend(vec![2; 32]),
            Op::Sha256,
        ];
        let mut ts = Timestamp::new(digest.clone()).unwrap();
        let tip_node = ts.add_path(ops.clone()).unwrap();
        let tip: [u8; 32] = tip_node.msg().try_into().unwrap();
        let mut d = KeyDeriver::new(crate::calendar::HmacKey::new(vec![1; 32]));
        let c = d.commitment(42, &tip);
        let end = tip_node
            .add_path([
                Op::Prepend(42u32.to_be_bytes().to_vec()),
                Op::Append(c[36..].to_vec()),
            ])
            .unwrap();
        assert_eq!(end.msg(), c.as_slice());
        end.add_attestation(att.clone());
        let tail = commitment_tail(42, &c, &att);
        assert_eq!(linear_proof(ops.iter(), &tail), ts.serialize().unwrap());
    }

    /// The hand-written round proofs equal what `ots_proof` builds from
    /// `nonce_ops` and `MerkleTree::path`, for every leaf of trees of many
    /// sizes.
    #[test]
    fn round_proofs_match_ots_proof() {
        let tail = [0x00, 0x01, 0x02];
        for n in 1..=37usize {
            let leaves: Vec<[u8; 32]> = (0..n).map(|i| sha256(&i.to_le_bytes())).collect();
            let tree = ots_proof::MerkleTree::new(leaves.clone()).unwrap();
            let levels = tree.levels();
            for i in 0..n {
                let nonce = [i as u8; NONCE_LEN];
                let ops: Vec<Op> = ots_proof::merkle::nonce_ops(nonce)
                    .into_iter()
                    .chain(tree.path(i).unwrap())
                    .collect();
                assert_eq!(
                    proof_bytes(&nonce, levels, i, &tail),
                    linear_proof(ops.iter(), &tail),
                    "n={n} i={i}"
                );
            }
        }
    }
}
