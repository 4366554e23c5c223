//! The proof store's read cache: completed batches, parsed, with the
//! stored levels of their trees in memory, so that serving a proof costs
//! one index lookup instead of one B-tree lookup per tree level. Batches
//! never change once written, so nothing is ever stale; the cache keeps
//! the most recently loaded batches within a memory bound (clients ask
//! mostly for recent proofs), and a batch too large for the bound is
//! served from the database as before. The store inserts only records
//! that passed their checksum, so a cached batch is served without
//! hashing it again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use ots_proof::codec::Reader;

/// Bytes of tree levels the cache holds at most (about 8 million
/// commitments' worth at 8 bytes each).
pub const MAX_CACHED_LEVEL_BYTES: usize = 64 << 20;
/// Batches the cache holds at most, whatever their size.
pub const MAX_CACHED_BATCHES: usize = 100_000;

/// A batch as stored in the `batches` table, parsed.
#[derive(Debug)]
pub struct BatchMeta {
    /// Commitments in the batch.
    pub n: u64,
    /// Their journal indices, as (start, len) runs in leaf order.
    pub runs: Vec<(u64, u64)>,
    /// The batch's Merkle root.
    pub root: [u8; 32],
    /// The shared tail, serialized.
    pub tail: Vec<u8>,
    /// The stored levels (from `GROUP_BITS` up), each its nodes
    /// concatenated; `None` when not loaded.
    pub levels: Option<Vec<Vec<u8>>>,
}

impl BatchMeta {
    /// Parses a `batches` value.
    pub fn parse(value: &[u8]) -> Result<BatchMeta, ots_proof::DecodeError> {
        let mut r = Reader::new(value);
        let n = r.read_varuint()?;
        let mut runs = Vec::new();
        for _ in 0..r.read_varuint()? {
            runs.push((r.read_varuint()?, r.read_varuint()?));
        }
        let root = r.read_array()?;
        Ok(BatchMeta {
            n,
            runs,
            root,
            tail: value[r.offset()..].to_vec(),
            levels: None,
        })
    }

    /// Bytes of levels held.
    pub fn level_bytes(&self) -> usize {
        self.levels
            .as_ref()
            .map_or(0, |l| l.iter().map(Vec::len).sum())
    }

    /// Node `index` of stored level `level` (counted from `GROUP_BITS`),
    /// when the levels are loaded and hold it.
    pub fn node(&self, level: usize, index: u64) -> Option<&[u8]> {
        let row = self.levels.as_ref()?.get(level)?;
        let at = usize::try_from(index).ok()?.checked_mul(32)?;
        row.get(at..at + 32)
    }
}

#[derive(Debug, Default)]
struct Inner {
    batches: HashMap<u64, Arc<BatchMeta>>,
    order: VecDeque<u64>,
    level_bytes: usize,
}

/// The cache.
#[derive(Debug, Default)]
pub struct BatchCache {
    inner: Mutex<Inner>,
}

impl BatchCache {
    /// A cached batch.
    pub fn get(&self, batch: u64) -> Option<Arc<BatchMeta>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.batches.get(&batch).cloned()
    }

    /// Whether a batch of `n` commitments may have its levels loaded.
    pub fn fits(n: u64) -> bool {
        // The stored levels (GROUP_BITS and up) hold about twice
        // n / 2^GROUP_BITS nodes of 32 bytes; one batch may take at most
        // half of the bound, so that it never evicts everything else.
        let bytes = n.saturating_mul(32) >> super::GROUP_BITS;
        bytes.saturating_mul(2) <= MAX_CACHED_LEVEL_BYTES as u64 / 2
    }

    /// Keeps `meta`, dropping the oldest batches beyond the bound.
    pub fn insert(&self, batch: u64, meta: Arc<BatchMeta>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.batches.contains_key(&batch) {
            return;
        }
        inner.level_bytes += meta.level_bytes();
        inner.batches.insert(batch, meta);
        inner.order.push_back(batch);
        while inner.level_bytes > MAX_CACHED_LEVEL_BYTES || inner.order.len() > MAX_CACHED_BATCHES {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(gone) = inner.batches.remove(&old) {
                inner.level_bytes -= gone.level_bytes();
            }
        }
    }

    /// Batches held, and their level bytes.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (inner.batches.len(), inner.level_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(level_bytes: usize) -> Arc<BatchMeta> {
        Arc::new(BatchMeta {
            n: 1,
            runs: vec![(0, 1)],
            root: [0; 32],
            tail: Vec::new(),
            levels: Some(vec![vec![7; level_bytes]]),
        })
    }

    #[test]
    fn the_oldest_batches_go_first_beyond_the_bound() {
        let cache = BatchCache::default();
        let third = MAX_CACHED_LEVEL_BYTES / 3;
        for id in 0..3 {
            cache.insert(id, meta(third));
        }
        assert_eq!(cache.usage(), (3, 3 * third));
        cache.insert(3, meta(third));
        assert!(cache.get(0).is_none(), "the oldest left");
        assert!(cache.get(1).is_some() && cache.get(3).is_some());
        assert!(cache.usage().1 <= MAX_CACHED_LEVEL_BYTES);
        // Nodes come out of the right place.
        let m = cache.get(3).unwrap();
        assert_eq!(m.node(0, 0), Some(&[7u8; 32][..]));
        assert_eq!(m.node(0, u64::MAX), None);
        assert_eq!(m.node(1, 0), None);
    }

    #[test]
    fn parse_reads_the_stored_layout() {
        let mut value = Vec::new();
        ots_proof::codec::write_varuint(&mut value, 10);
        ots_proof::codec::write_varuint(&mut value, 2);
        for v in [5, 4, 20, 6] {
            ots_proof::codec::write_varuint(&mut value, v);
        }
        value.extend([9u8; 32]);
        value.extend([1, 2, 3]);
        let m = BatchMeta::parse(&value).unwrap();
        assert_eq!(
            (m.n, m.runs.as_slice(), m.root),
            (10, &[(5, 4), (20, 6)][..], [9; 32])
        );
        assert_eq!(m.tail, [1, 2, 3]);
        assert!(BatchMeta::parse(&value[..10]).is_err());
    }

    #[test]
    fn a_batch_too_large_for_the_bound_is_not_loaded() {
        assert!(BatchCache::fits(1_000_000));
        assert!(!BatchCache::fits(100_000_000));
    }
}
