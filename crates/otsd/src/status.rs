//! What the calendar knows about commitments without a completed proof: the
//! in-memory index of journaled, pending commitments, and the narrow view of
//! the stamper's state that the HTTP layer reads (the "waiting for
//! confirmations" reason, the current tip, the info page's chain figures).
//!
//! The index is updated by the aggregator after the round's fsync and
//! *before* any reply leaves, so a client asking for its commitment right
//! after its POST never sees "Not found".

use std::sync::RwLock;

use crate::calendar::{Commitment, COMMITMENT_LEN, TIME_LEN};
use crate::journal::JournalReader;

/// The stamper's answer for a commitment included in a Bitcoin transaction
/// that is not yet deep enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The transaction id, as Bitcoin displays it (reversed hex).
    pub txid: String,
    /// Confirmations still needed.
    pub confirmations_needed: u32,
}

/// A mined timestamp transaction, for the info page.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MinedTx {
    /// Transaction id (display hex).
    pub txid: String,
    /// Fee paid, in satoshis.
    pub fee_sats: u64,
    /// Fee rate, in sat/vB.
    pub fee_rate: f64,
    /// Confirmations.
    pub confirmations: u32,
    /// Header time of the block that mined it (unix seconds).
    pub block_time: u64,
}

/// The chain-side figures of the info page; `None` where unknown (no
/// stamper yet, or no node reachable).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ChainInfo {
    /// Transactions waiting for confirmation.
    pub txs_waiting_for_confirmation: Option<u64>,
    /// Most recent unconfirmed timestamp transaction.
    pub most_recent_tx: Option<String>,
    /// Number of replaced versions of it.
    pub prior_versions: Option<u64>,
    /// Best block hash (display hex).
    pub best_block: Option<String>,
    /// Best block height.
    pub block_height: Option<u64>,
    /// Confirmed wallet balance, in satoshis.
    pub balance_sats: Option<u64>,
    /// Average spacing, in hours, of the block times of the timestamp
    /// transactions mined in the last week (`None` for fewer than two, or
    /// while the recorded history does not cover the whole week).
    pub hours_between_transactions: Option<f64>,
    /// Fees of the timestamp transactions mined in the last week, in
    /// satoshis (`None` while the history does not cover the whole week).
    pub fees_in_last_week_sats: Option<u64>,
    /// Latest completed timestamp transactions, most recent first.
    pub transactions: Vec<MinedTx>,
    /// Conditions the operator should act on (an unreachable node, an
    /// empty wallet, the fee cap), until stamping proceeds again.
    pub warnings: Vec<String>,
    /// Fee rate of the most recent unconfirmed timestamp transaction, in
    /// sat/vB (its fee over its estimated size).
    pub fee_rate: Option<f64>,
    /// The rule that chose that fee: `estimate`, `minimum`,
    /// `no_estimate`, `cap` or `after_rejection` (`ots_stamper::fee`).
    pub fee_rule: Option<String>,
    /// That rule in words, with the node's estimate.
    pub fee_reason: Option<String>,
    /// Completed timestamp transactions whose block a reorg deeper than
    /// the confirmations took out of the best chain (their proofs
    /// withdrawn, their commitments stamped again), ever; a counter.
    pub reorged_completed_total: Option<u64>,
}

/// The stamping backend's state as the HTTP layer sees it:
/// `crate::stamping::Stamping` for the Bitcoin backend, [`NoStamper`]
/// without one.
pub trait StamperView: Send + Sync + 'static {
    /// If the pending commitment at journal `position` is in a transaction
    /// waiting for confirmations. The caller has found the position in the
    /// pending index: one lookup per request.
    fn waiting(&self, position: u64) -> Option<Waiting>;
    /// The tip of the most recent unconfirmed transaction.
    fn tip(&self) -> Option<Vec<u8>>;
    /// Chain figures for the info page.
    fn chain_info(&self) -> ChainInfo;
    /// The latest version of the transaction waiting to be mined, for the
    /// metrics (issue 17); `None` when there is none or the backend does
    /// not say.
    fn unconfirmed(&self) -> Option<UnconfirmedTx> {
        None
    }
    /// Whether the node answered the stamper's last pass, for the metrics;
    /// `None` while unknown (no pass yet, or no node).
    fn node_reachable(&self) -> Option<bool> {
        None
    }
}

/// The transaction waiting to be mined, as the metrics show it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnconfirmedTx {
    /// Fee of its latest version, in satoshis.
    pub fee_sats: u64,
    /// Virtual size of its latest version.
    pub vsize: u64,
    /// Versions that replaced the first one (fee bumps).
    pub bumps: u64,
    /// Unix time this server first saw the round's first version (after
    /// a restart: when it started).
    pub since: u64,
}

/// The view without a stamper: nothing is in a transaction, there is no
/// tip, no chain figure.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoStamper;

impl StamperView for NoStamper {
    fn waiting(&self, _: u64) -> Option<Waiting> {
        None
    }
    fn tip(&self) -> Option<Vec<u8>> {
        None
    }
    fn chain_info(&self) -> ChainInfo {
        ChainInfo::default()
    }
}

/// Journal indices sharing one index key (a collision of the 8-byte key is
/// possible but rare; each candidate is checked against the journal).
#[derive(Debug, Clone)]
enum Slot {
    One(u64),
    Many(Vec<u64>),
}

/// The journaled commitments that have no completed proof yet.
///
/// Compact: 16 bytes of payload per commitment (8 bytes of the tip as key,
/// the journal index as value); membership is confirmed by reading the
/// record back from the journal (page cache, one `pread`).
#[derive(Debug)]
pub struct PendingIndex {
    map: RwLock<KeyMap>,
    journal: JournalReader,
}

/// The map of keys to journal positions. The keys are sha256 output, so a
/// fast non-keyed hash is as good as SipHash here, at a fraction of its
/// cost on the hot paths (every digest round, every completed batch).
type KeyMap = rustc_hash::FxHashMap<u64, Slot>;

/// The index key of a commitment (44 or 36 bytes): 8 bytes of its tip.
pub fn key_of(commitment: &[u8]) -> u64 {
    // Bytes 4..12: the start of the tip, a sha256 output nobody chooses.
    let mut k = [0u8; 8];
    k.copy_from_slice(&commitment[TIME_LEN..TIME_LEN + 8]);
    u64::from_le_bytes(k)
}

fn insert_into(map: &mut KeyMap, key: u64, index: u64) {
    match map.get_mut(&key) {
        None => {
            map.insert(key, Slot::One(index));
        }
        Some(Slot::One(first)) => {
            let first = *first;
            map.insert(key, Slot::Many(vec![first, index]));
        }
        Some(Slot::Many(v)) => v.push(index),
    }
}

fn remove_from(map: &mut KeyMap, key: u64, index: u64) {
    match map.get_mut(&key) {
        Some(Slot::One(i)) if *i == index => {
            map.remove(&key);
        }
        Some(Slot::Many(v)) => {
            v.retain(|&i| i != index);
            if v.is_empty() {
                map.remove(&key);
            }
        }
        _ => {}
    }
}

impl PendingIndex {
    /// An empty index over `journal`.
    pub fn new(journal: JournalReader) -> Self {
        PendingIndex {
            map: RwLock::new(KeyMap::default()),
            journal,
        }
    }

    /// Adds journal records listed as `(key_of(record), index)` (start-up
    /// adds the journal's pending records this way, a chunk at a time).
    pub fn extend(&self, keys: &[(u64, u64)]) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.reserve(keys.len());
        for &(key, i) in keys {
            insert_into(&mut map, key, i);
        }
    }

    /// Records that journal record `index` is `commitment`.
    pub fn insert(&self, commitment: &Commitment, index: u64) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        insert_into(&mut map, key_of(commitment), index);
    }

    /// Forgets journal record `index`, known to be `commitment`.
    pub fn remove_at(&self, commitment: &[u8], index: u64) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        remove_from(&mut map, key_of(commitment), index);
    }

    /// Forgets a commitment (the stamper calls this once its proof is in
    /// the store).
    pub fn remove(&self, commitment: &Commitment) {
        if let Some(index) = self.lookup(commitment) {
            self.remove_at(commitment, index);
        }
    }

    fn candidates(&self, commitment: &[u8]) -> Vec<u64> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        match map.get(&key_of(commitment)) {
            None => Vec::new(),
            Some(Slot::One(i)) => vec![*i],
            Some(Slot::Many(v)) => v.clone(),
        }
    }

    /// The journal index of `commitment` if it is pending. Reference
    /// legacy commitments are 36 bytes (their journal record has a zero
    /// MAC) and are found too.
    pub fn lookup(&self, commitment: &[u8]) -> Option<u64> {
        let mut full = [0u8; COMMITMENT_LEN];
        match commitment.len() {
            COMMITMENT_LEN => full.copy_from_slice(commitment),
            n if n == COMMITMENT_LEN - crate::calendar::MAC_LEN => {
                full[..n].copy_from_slice(commitment)
            }
            _ => return None,
        }
        self.candidates(&full)
            .into_iter()
            .find(|&i| self.journal.get(i).ok().flatten() == Some(full))
    }

    /// Number of pending commitments.
    pub fn len(&self) -> usize {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.values()
            .map(|s| match s {
                Slot::One(_) => 1,
                Slot::Many(v) => v.len(),
            })
            .sum()
    }

    /// Whether no commitment is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{HmacKey, KeyDeriver};
    use crate::journal::{Journal, Verify};

    #[test]
    fn insert_lookup_remove_with_colliding_keys() {
        let dir = tempfile::tempdir().unwrap();
        let key = HmacKey::new(vec![1; 32]);
        let (mut j, reader, _) = Journal::open(dir.path(), &key, Verify::All).unwrap();
        let mut d = KeyDeriver::new(key);
        // Same first 8 bytes of tip: same index key.
        let mut tip_b = [5u8; 32];
        tip_b[20] = 6;
        let a = d.commitment(100, &[5; 32]);
        let b = d.commitment(101, &tip_b);
        let c = d.commitment(102, &[7; 32]);
        j.append(&[a, b, c]).unwrap();
        let idx = PendingIndex::new(reader);
        idx.insert(&a, 0);
        idx.insert(&b, 1);
        assert_eq!(idx.lookup(&a), Some(0));
        assert_eq!(idx.lookup(&b), Some(1));
        assert_eq!(idx.lookup(&c), None, "journaled but not indexed");
        assert_eq!(idx.lookup(&a[..20]), None);
        assert_eq!(idx.len(), 2);
        idx.remove(&a);
        assert_eq!(idx.lookup(&a), None);
        assert_eq!(idx.lookup(&b), Some(1));
        assert_eq!(idx.len(), 1);
    }
}
