//! The aggregator's rounds: the digests submitted during one interval are
//! nonced and make one Merkle tree (as the calendar's rounds do, with the
//! calendar's own code, [`crate::aggregator`]); the tip goes to the
//! upstreams ([`super::upstream`]) while the next round collects, and each
//! waiting request gets its path to the tip followed by the merged
//! replies, or the round's 503.
//!
//! Rounds overlap: a round waiting for its upstreams (up to the timeout)
//! never delays the next one. Replies are handed to each HTTP worker in
//! one task, woken in arrival order, as the calendar does (see
//! [`crate::workers`]).
//!
//! The rounds follow the upstreams' phase. A client answered at the end
//! of round k submits again at once and is in round k+1 only if its
//! answer came before round k+1's tick; the answer comes once the
//! upstreams' own rounds have passed, so if they tick late in ours (the
//! wait close to a whole interval, plus the time to send thousands of
//! replies), every client misses a round and waits two intervals. So the
//! next tick is delayed once, when that shortens the longest wait by more
//! than a [`PHASE_MIN_GAIN_DIVISOR`]th of an interval, to where the
//! upstreams' ticks come as early after ours as they can all be, the
//! first of them a [`PHASE_LEAD_DIVISOR`]th of an interval after
//! ([`phase_shift`]); then no more than once per [`PHASE_SHIFT_EVERY`]
//! rounds, and no more at all after [`PHASE_SHIFTS_MAX`] shifts that
//! did not bring the wait down (until a short wait is seen again).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use ots_proof::merkle::NONCE_LEN;
use ots_proof::MerkleTree;
use rand::RngCore;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::upstream::Upstreams;
use crate::aggregator::{nonced_leaves, proof_bytes, MAX_DIGEST_LEN};
use crate::workers::{self, Workers};

/// Why a digest got no proof: the text of the 503.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub Arc<str>);

/// A round's answer to one request.
pub type Reply = Result<Vec<u8>, Unavailable>;

/// After a phase shift the first upstream ticks a fifth of an interval
/// after the aggregator: time to build the tree and reach it first.
pub const PHASE_LEAD_DIVISOR: u32 = 5;
/// A shift must shorten the longest wait by more than a fifth of an
/// interval: each one costs a delayed round.
pub const PHASE_MIN_GAIN_DIVISOR: u32 = 5;
/// Rounds between phase shifts: the rounds under way at a shift report
/// waits of the old phase.
pub const PHASE_SHIFT_EVERY: u64 = 10;
/// Shifts in a row that left the longest wait long before the aggregator
/// stops following (upstreams slow whatever the phase, or on another
/// interval).
pub const PHASE_SHIFTS_MAX: u32 = 3;

/// How much to delay the next tick, given each kept upstream's wait in a
/// round (from its tick to the reply; modulo the interval, where the tip
/// missed an upstream's tick), so that the longest wait is as short as it
/// can be: the aggregator ticks a lead (`interval / PHASE_LEAD_DIVISOR`)
/// before the upstream that follows the largest gap between their ticks.
/// `None` unless that shortens the longest wait by more than
/// `interval / PHASE_MIN_GAIN_DIVISOR`.
pub fn phase_shift(waits: &[Duration], interval: Duration) -> Option<Duration> {
    let i = interval.as_nanos();
    if i == 0 || waits.is_empty() {
        return None;
    }
    let lead = (interval / PHASE_LEAD_DIVISOR).as_nanos();
    let gain = (interval / PHASE_MIN_GAIN_DIVISOR).as_nanos();
    let longest = waits.iter().map(Duration::as_nanos).max().unwrap_or(0);
    let mut phases: Vec<u128> = waits.iter().map(|w| w.as_nanos() % i).collect();
    phases.sort_unstable();
    // The largest gap between consecutive ticks, round the circle, and
    // the tick after it.
    let (mut gap, mut after) = (phases[0] + i - phases[phases.len() - 1], phases[0]);
    for pair in phases.windows(2) {
        if pair[1] - pair[0] > gap {
            (gap, after) = (pair[1] - pair[0], pair[1]);
        }
    }
    let shortest_longest = i - gap + lead;
    if longest <= shortest_longest + gain {
        return None;
    }
    let shift = (after + i - lead) % i;
    (shift > 0).then(|| Duration::from_nanos(u64::try_from(shift).unwrap_or(u64::MAX)))
}

/// The 503 text once the aggregator is shutting down.
const SHUTTING_DOWN: &str = "aggregator shutting down";
/// The refusal of a digest over [`MAX_DIGEST_LEN`] (the HTTP layer answers
/// those with a 400 before they get here).
const TOO_LONG: &str = "digest too long";

/// The longest proof path from a digest to the tip of a round of `n`
/// digests: `append(nonce) sha256`, then `append|prepend(32 bytes)
/// sha256` per level above the leaves.
pub fn max_path_len(levels: usize) -> usize {
    2 + NONCE_LEN + 1 + 35 * levels.saturating_sub(1)
}

/// Nodes kept free above a client's digest for its own tree of the files
/// it stamped together (a nonce and a Merkle tree of 2^15 files).
pub const CLIENT_ROOM: usize = 32;

/// The deepest upstream reply (in nodes from the tip, the tip included)
/// that leaves a client's proof decodable: [`MAX_DEPTH`] less
/// [`CLIENT_ROOM`] and the nodes from the digest to the tip (the digest,
/// the nonced digest, then two per level above the leaves).
///
/// [`MAX_DEPTH`]: ots_proof::timestamp::MAX_DEPTH
pub fn max_reply_depth(levels: usize) -> usize {
    let path = 2 + 2 * levels.saturating_sub(1);
    ots_proof::timestamp::MAX_DEPTH.saturating_sub(CLIENT_ROOM + path)
}

struct Submission {
    digest: Vec<u8>,
    reply: oneshot::Sender<Reply>,
    /// The worker thread the request is served on, if any.
    home: Option<(u64, usize)>,
}

/// Where the HTTP layer submits digests; cheap to clone. Unbounded: every
/// queued digest is a request holding a connection, and connections are
/// capped by the listener.
#[derive(Debug, Clone)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Submission>,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission").finish_non_exhaustive()
    }
}

impl Handle {
    /// Submits `digest` (at most [`MAX_DIGEST_LEN`] bytes, which the HTTP
    /// layer checks first: a longer one is refused here too); resolves to
    /// the serialized proof, rooted at `digest` and ending in the
    /// upstreams' replies, once its round is answered.
    pub async fn submit(&self, digest: Vec<u8>) -> Reply {
        if digest.len() > MAX_DIGEST_LEN {
            return Err(Unavailable(TOO_LONG.into()));
        }
        let (reply, rx) = oneshot::channel();
        let unavailable = || Unavailable(SHUTTING_DOWN.into());
        self.tx
            .send(Submission {
                digest,
                reply,
                home: workers::current(),
            })
            .map_err(|_| unavailable())?;
        rx.await.unwrap_or_else(|_| Err(unavailable()))
    }
}

/// The rounds' figures, for the info page.
#[derive(Debug, Default)]
pub struct Stats {
    /// Rounds with at least one digest.
    pub rounds: AtomicU64,
    /// Rounds answered 503.
    pub rounds_unavailable: AtomicU64,
    /// Digests answered with a proof.
    pub digests: AtomicU64,
    /// Digests of the last round answered.
    pub last_round_digests: AtomicU64,
}

/// Starts the round loop: a round every `interval` until `shutdown` turns
/// true; then the digests already queued make a last round, and the task
/// ends once every round under way is answered.
pub fn spawn(
    interval: Duration,
    workers: Option<Arc<Workers>>,
    upstreams: Arc<Upstreams>,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
) -> (Handle, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Submission>();
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut under_way = JoinSet::new();
        // Each answered round's upstream waits, for the phase.
        let (waits_tx, mut waits) = mpsc::unbounded_channel::<Vec<Duration>>();
        let start = |batch: Vec<Submission>, ticked, under_way: &mut JoinSet<()>| {
            if let Some(round) = Round::build(batch, ticked) {
                let (upstreams, workers, stats) =
                    (upstreams.clone(), workers.clone(), stats.clone());
                let waits = waits_tx.clone();
                under_way.spawn(async move {
                    if let Some(wait) = round.finish(&upstreams, workers.as_deref(), &stats).await {
                        let _ = waits.send(wait);
                    }
                });
            }
        };
        let mut since_shift = PHASE_SHIFT_EVERY;
        // Shifts not followed by a short wait (upstreams slow whatever the
        // phase, or on another interval): no more after a few.
        let mut futile = 0;
        loop {
            let ticked = tokio::select! {
                t = ticker.tick() => t,
                _ = shutdown.wait_for(|s| *s) => break,
            };
            let mut batch = Vec::new();
            while let Ok(s) = rx.try_recv() {
                batch.push(s);
            }
            start(batch, ticked, &mut under_way);
            while under_way.try_join_next().is_some() {}
            let mut latest = None;
            while let Ok(w) = waits.try_recv() {
                latest = Some(w);
            }
            since_shift = since_shift.saturating_add(1);
            let Some(wait) = latest.filter(|_| since_shift >= PHASE_SHIFT_EVERY) else {
                continue;
            };
            let Some(shift) = phase_shift(&wait, interval) else {
                futile = 0;
                continue;
            };
            if futile < PHASE_SHIFTS_MAX {
                futile += 1;
                tracing::info!(
                    upstream_wait_ms =
                        wait.iter().max().unwrap_or(&Duration::ZERO).as_millis() as u64,
                    shift_ms = shift.as_millis() as u64,
                    "following the upstreams' rounds: next round delayed once"
                );
                ticker.reset_at(ticked + interval + shift);
                since_shift = 0;
            }
        }
        rx.close();
        let mut batch = Vec::new();
        while let Some(s) = rx.recv().await {
            batch.push(s);
        }
        start(batch, tokio::time::Instant::now(), &mut under_way);
        while under_way.join_next().await.is_some() {}
    });
    (Handle { tx }, task)
}

/// One round's tree, waiting for its upstreams.
struct Round {
    /// When the round's tick came.
    ticked: tokio::time::Instant,
    batch: Vec<Submission>,
    nonces: Vec<u8>,
    /// Every level of the tree, leaves first.
    levels: Vec<Vec<[u8; 32]>>,
}

impl Round {
    /// The tree of `batch`'s digests (of the requests still waiting);
    /// `None` if there are none.
    fn build(batch: Vec<Submission>, ticked: tokio::time::Instant) -> Option<Round> {
        let batch: Vec<Submission> = batch.into_iter().filter(|s| !s.reply.is_closed()).collect();
        if batch.is_empty() {
            return None;
        }
        let mut nonces = vec![0u8; NONCE_LEN * batch.len()];
        rand::rngs::OsRng.fill_bytes(&mut nonces);
        let leaves = nonced_leaves(batch.iter().map(|s| s.digest.as_slice()), &nonces);
        let levels = MerkleTree::new(leaves)?.into_levels();
        Some(Round {
            ticked,
            batch,
            nonces,
            levels,
        })
    }

    fn tip(&self) -> [u8; 32] {
        self.levels[self.levels.len() - 1][0]
    }

    /// Submits the tip upstream and answers every request; returns each
    /// kept reply's wait from the tick, if the round was answered with
    /// proofs.
    async fn finish(
        self,
        upstreams: &Upstreams,
        workers: Option<&Workers>,
        stats: &Stats,
    ) -> Option<Vec<Duration>> {
        let tip = self.tip();
        let budget = ots_calendar::MAX_REPLY_LEN - max_path_len(self.levels.len());
        let started = std::time::Instant::now();
        let max_depth = max_reply_depth(self.levels.len());
        let outcome = upstreams.submit(tip, budget, max_depth).await;
        let digests = self.batch.len();
        stats.rounds.fetch_add(1, Relaxed);
        let wait = match &outcome {
            Ok((tail, kept_at)) => {
                stats.digests.fetch_add(digests as u64, Relaxed);
                stats.last_round_digests.store(digests as u64, Relaxed);
                tracing::info!(
                    digests,
                    tip = %hex::encode(tip),
                    tail_bytes = tail.len(),
                    upstream_ms = started.elapsed().as_secs_f64() * 1e3,
                    "aggregated"
                );
                Some(
                    kept_at
                        .iter()
                        .map(|t| t.saturating_duration_since(self.ticked))
                        .collect(),
                )
            }
            Err(body) => {
                stats.rounds_unavailable.fetch_add(1, Relaxed);
                tracing::warn!(digests, tip = %hex::encode(tip), "round refused: {}", body.trim_end());
                None
            }
        };
        let outcome = outcome
            .map(|(tail, _)| tail)
            .map_err(|body| Unavailable(body.into()));
        let mut by_worker: Vec<Vec<(oneshot::Sender<Reply>, Reply)>> = (0..workers
            .map_or(0, Workers::len))
            .map(|_| Vec::new())
            .collect();
        for (i, (s, nonce)) in self
            .batch
            .into_iter()
            .zip(self.nonces.chunks_exact(NONCE_LEN))
            .enumerate()
        {
            let reply = match &outcome {
                Ok(tail) => Ok(proof_bytes(nonce, &self.levels, i, tail)),
                Err(e) => Err(e.clone()),
            };
            match workers.and_then(|w| w.index_of(s.home)) {
                Some(w) => by_worker[w].push((s.reply, reply)),
                None => {
                    let _ = s.reply.send(reply);
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
                        let _ = reply.send(proof);
                    }
                });
            }
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ots_proof::{Attestation, Op, Timestamp};

    /// Every client's proof is its path to the tip then the merged tail:
    /// it decodes rooted at the digest, reaches every upstream's
    /// attestation, and fits the path bound.
    #[test]
    fn proofs_are_paths_to_the_tip_then_the_merged_replies() {
        for n in [1usize, 2, 3, 7, 64, 100] {
            let (txs, _rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| oneshot::channel()).unzip();
            let batch: Vec<Submission> = txs
                .into_iter()
                .enumerate()
                .map(|(i, reply)| Submission {
                    digest: vec![i as u8; 1 + i % MAX_DIGEST_LEN],
                    reply,
                    home: None,
                })
                .collect();
            let digests: Vec<Vec<u8>> = batch.iter().map(|s| s.digest.clone()).collect();
            let round = Round::build(batch, tokio::time::Instant::now()).unwrap();
            let tip = round.tip();
            let mut merged = Timestamp::new(tip.to_vec()).unwrap();
            for (t, uri) in [(1u32, "http://a.test"), (2, "http://b.test")] {
                let mut reply = Timestamp::new(tip.to_vec()).unwrap();
                reply
                    .add_path([
                        Op::Prepend(t.to_be_bytes().to_vec()),
                        Op::Append(vec![t as u8; 8]),
                    ])
                    .unwrap()
                    .add_attestation(Attestation::pending(uri).unwrap());
                merged.merge(reply).unwrap();
            }
            let tail = merged.serialize().unwrap();
            for (i, d) in digests.iter().enumerate() {
                let nonce = &round.nonces[i * NONCE_LEN..(i + 1) * NONCE_LEN];
                let bytes = proof_bytes(nonce, &round.levels, i, &tail);
                assert!(bytes.len() - tail.len() <= max_path_len(round.levels.len()));
                let ts = Timestamp::deserialize(&bytes, d).unwrap();
                let atts = ts.all_attestations();
                assert_eq!(atts.len(), 2, "n={n} i={i}");
                // Both under the tip: the path leads there first.
                let mut node = &ts;
                let mut before_tip = 0;
                while node.msg() != tip {
                    assert_eq!(node.ops().len(), 1, "a linear path to the tip");
                    node = node.ops().next().unwrap().1;
                    before_tip += 1;
                }
                assert_eq!(node, &merged);
                // A reply as deep as allowed still leaves the client room.
                let levels = round.levels.len();
                assert!(
                    before_tip + max_reply_depth(levels) + CLIENT_ROOM
                        <= ots_proof::timestamp::MAX_DEPTH
                );
            }
        }
    }

    #[test]
    fn the_phase_shift_makes_the_longest_upstream_wait_as_short_as_it_can_be() {
        let ms = Duration::from_millis;
        let i = ms(1000);
        let shift = |waits: &[u64]| {
            let waits: Vec<Duration> = waits.iter().map(|w| ms(*w)).collect();
            phase_shift(&waits, i).map(|d| d.as_millis() as u64)
        };
        // One upstream: early enough, left alone; late, delayed so that
        // it ticks 200 ms after us.
        assert_eq!(shift(&[0]), None);
        assert_eq!(shift(&[400]), None);
        assert_eq!(shift(&[930]), Some(730));
        assert_eq!(shift(&[650]), Some(450));
        // Past a whole interval (the tip missed its tick): modulo.
        assert_eq!(shift(&[1100]), Some(900));
        assert_eq!(shift(&[1200]), None);
        // Two upstreams 300 ms apart: ticks placed 200 ms before the
        // first after the large gap, whichever order they come in.
        assert_eq!(shift(&[600, 900]), Some(400));
        assert_eq!(shift(&[900, 600]), Some(400));
        assert_eq!(shift(&[100, 950]), Some(750));
        // Half an interval apart: 700 ms is the best; 800 ms is near it.
        assert_eq!(shift(&[300, 800]), None);
        assert_eq!(shift(&[450, 950]), Some(250));
        assert_eq!(shift(&[]), None);
        assert_eq!(phase_shift(&[ms(5)], Duration::ZERO), None);
        // After the shift, nothing more to gain.
        for waits in [[930u64, 930], [600, 900], [100, 950], [450, 950], [20, 990]] {
            let Some(s) = shift(&waits) else { continue };
            let after: Vec<u64> = waits.iter().map(|w| (w + 1000 - s) % 1000).collect();
            assert_eq!(after.iter().min(), Some(&200), "{waits:?}");
            assert_eq!(shift(&after), None, "{waits:?} then {after:?}");
        }
    }

    #[tokio::test]
    async fn submissions_are_refused_when_too_long_or_shutting_down() {
        let (tx, rx) = mpsc::unbounded_channel();
        drop(rx);
        let handle = Handle { tx };
        let refused = handle.submit(vec![0; MAX_DIGEST_LEN + 1]).await;
        assert_eq!(refused, Err(Unavailable(TOO_LONG.into())));
        let refused = handle.submit(vec![0; 32]).await;
        assert_eq!(refused, Err(Unavailable(SHUTTING_DOWN.into())));
    }
}
