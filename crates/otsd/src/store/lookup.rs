//! The lookup path of the [`Store`]: finding a commitment's batch through
//! the index, loading the batch (its record checked against its checksum,
//! with its levels when small enough) into the cache, rebuilding the path
//! up to the batch's root from the journal and the stored levels, and
//! assembling the proof (decoded, or serialized without decoding the
//! shared tail). Each public lookup runs guarded: a panic inside redb is
//! an error.

use std::sync::Arc;

use ots_proof::codec::{write_varbytes, Reader};
use ots_proof::merkle::Sibling;
use ots_proof::op::{TAG_APPEND, TAG_PREPEND, TAG_SHA256};
use ots_proof::{MerkleTree, Op, Timestamp};
use redb::ReadTransaction;

use super::batchcache::{BatchCache, BatchMeta};
use super::{
    commitment_bytes, corrupt, db, index_key, leaf, record_of, unsealed, Store, StoreError,
    BATCHES, GROUP_BITS, INDEX, LEVELS, LEVEL_CHUNK_NODES,
};
use crate::calendar::Commitment;

impl Store {
    /// The full proof of `commitment` (44 bytes, or 36 for a reference
    /// legacy commitment), from the commitment down to its attestations.
    pub fn get(&self, commitment: &[u8]) -> Result<Option<Timestamp>, StoreError> {
        self.guarded("looking up a proof", || self.get_inner(commitment))
    }

    fn get_inner(&self, commitment: &[u8]) -> Result<Option<Timestamp>, StoreError> {
        let Some(found) = self.locate(commitment)? else {
            return Ok(None);
        };
        let batch = found.batch;
        let bad = |e: ots_proof::DecodeError| corrupt(batch, e.to_string());
        let mut r = Reader::new(&found.meta.tail);
        let tail = Timestamp::decode(&mut r, &found.meta.root).map_err(bad)?;
        r.expect_end().map_err(bad)?;
        let mut ts = Timestamp::new(commitment_bytes(&found.record).to_vec())
            .map_err(|e| corrupt(batch, e.to_string()))?;
        let mut ops = vec![Op::Sha256];
        for step in &found.steps {
            ops.push(step.op());
            ops.push(Op::Sha256);
        }
        let end = ts
            .add_path(ops)
            .map_err(|e| corrupt(batch, e.to_string()))?;
        if end.msg() != found.meta.root {
            return Err(corrupt(batch, "path does not reach the root"));
        }
        end.merge(tail).map_err(|e| corrupt(batch, e.to_string()))?;
        Ok(Some(ts))
    }

    /// [`get`](Store::get), serialized: the same bytes as
    /// `get(c)?.serialize()`, built without decoding the shared tail (the
    /// path is one op after another, and the tail's bytes are stored in
    /// their serialized form).
    pub fn get_serialized(&self, commitment: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.guarded("looking up a proof", || {
            self.get_serialized_inner(commitment)
        })
    }

    fn get_serialized_inner(&self, commitment: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(found) = self.locate(commitment)? else {
            return Ok(None);
        };
        let mut msg = leaf(&found.record);
        let mut out = Vec::with_capacity(1 + found.steps.len() * 35 + found.meta.tail.len());
        out.push(TAG_SHA256);
        for step in &found.steps {
            out.push(if step.left { TAG_PREPEND } else { TAG_APPEND });
            write_varbytes(&mut out, &step.node);
            out.push(TAG_SHA256);
            msg = step.parent(&msg);
        }
        if msg != found.meta.root {
            return Err(corrupt(found.batch, "path does not reach the root"));
        }
        out.extend_from_slice(&found.meta.tail);
        Ok(Some(out))
    }

    /// Finds a commitment's batch, its path up to the batch's root, and
    /// the batch's serialized tail.
    fn locate(&self, commitment: &[u8]) -> Result<Option<Located>, StoreError> {
        let Some(record) = record_of(commitment) else {
            return Ok(None);
        };
        let op = "looking up a proof";
        let txn = self.db.begin_read().map_err(db(op))?;
        let index = txn.open_table(INDEX).map_err(db(op))?;
        let Some((batch, pos)) = index
            .get(index_key(&record))
            .map_err(db(op))?
            .map(|v| (v.value() >> 32, v.value() as u32))
        else {
            return Ok(None);
        };
        if self.is_withdrawn(batch) {
            // Its block left the best chain: not served (see `withdraw`).
            return Ok(None);
        }
        let meta = match self.cache.get(batch) {
            Some(meta) => meta,
            None => self.load(&txn, batch)?,
        };
        let (n, runs) = (meta.n, &meta.runs);
        let pos = u64::from(pos);
        if pos >= n {
            return Err(corrupt(batch, "leaf position out of range"));
        }
        // Levels 0..GROUP_BITS: rebuilt from the group's records.
        let group_start = pos >> GROUP_BITS << GROUP_BITS;
        let group_end = n.min(group_start + (1 << GROUP_BITS));
        let mut group = Vec::new();
        match one_run(runs, group_start, group_end - group_start) {
            // The usual case: the group is one run of the journal.
            Some(first) => {
                let recs = self
                    .journal
                    .read_range(first, (group_end - group_start) as usize)?;
                if recs.len() as u64 != group_end - group_start {
                    return Err(corrupt(batch, "journal record missing"));
                }
                group.extend(recs.iter().map(leaf));
            }
            None => {
                for p in group_start..group_end {
                    let j =
                        journal_index(runs, p).ok_or_else(|| corrupt(batch, "runs too short"))?;
                    let rec = self
                        .journal
                        .get(j)?
                        .ok_or_else(|| corrupt(batch, "journal record missing"))?;
                    group.push(leaf(&rec));
                }
            }
        }
        let local = (pos - group_start) as usize;
        if group[local] != leaf(&record) {
            return Ok(None); // Another commitment with the same index key.
        }
        // The path through the group's own small tree.
        let mut steps = MerkleTree::new(group)
            .and_then(|mini| mini.siblings(local))
            .expect("the group holds the local leaf");
        // Levels GROUP_BITS and up: stored (in the cache, or read here).
        let mut levels = None;
        let mut fetched: Vec<u8>;
        let mut size = n;
        for _ in 0..GROUP_BITS {
            size = size.div_ceil(2);
        }
        let mut k = GROUP_BITS;
        while size > 1 {
            let i = pos >> k;
            let sib = i ^ 1;
            if sib < size {
                let node: &[u8] = match meta.node((k - GROUP_BITS) as usize, sib) {
                    Some(node) => node,
                    None if meta.levels.is_some() => {
                        return Err(corrupt(batch, "level row missing"));
                    }
                    None => {
                        if levels.is_none() {
                            levels = Some(txn.open_table(LEVELS).map_err(db(op))?);
                        }
                        let table = levels.as_ref().expect("just opened");
                        let row = table
                            .get((batch, k as u8, sib / LEVEL_CHUNK_NODES))
                            .map_err(db(op))?
                            .ok_or_else(|| corrupt(batch, "level row missing"))?;
                        let off = ((sib % LEVEL_CHUNK_NODES) * 32) as usize;
                        fetched = row
                            .value()
                            .get(off..off + 32)
                            .ok_or_else(|| corrupt(batch, "level row too short"))?
                            .to_vec();
                        &fetched
                    }
                };
                steps.push(Sibling {
                    left: i % 2 == 1,
                    node: node
                        .try_into()
                        .map_err(|_| corrupt(batch, "level row too short"))?,
                });
            }
            size = size.div_ceil(2);
            k += 1;
        }
        Ok(Some(Located {
            batch,
            record,
            steps,
            meta,
        }))
    }

    /// Reads a batch (with its levels, when small enough) into the cache,
    /// once its record passes its checksum: the cache holds only verified
    /// records.
    fn load(&self, txn: &ReadTransaction, batch: u64) -> Result<Arc<BatchMeta>, StoreError> {
        let op = "loading a batch";
        let batches = txn.open_table(BATCHES).map_err(db(op))?;
        let Some(value) = batches.get(batch).map_err(db(op))? else {
            return Err(corrupt(batch, "indexed batch missing"));
        };
        let record = unsealed(batch, value.value())?;
        let mut meta = BatchMeta::parse(record).map_err(|e| corrupt(batch, e.to_string()))?;
        if self.cache_levels.load(std::sync::atomic::Ordering::Relaxed) && BatchCache::fits(meta.n)
        {
            let table = txn.open_table(LEVELS).map_err(db(op))?;
            let mut levels: Vec<Vec<u8>> = Vec::new();
            let rows = table
                .range((batch, 0u8, 0u64)..=(batch, u8::MAX, u64::MAX))
                .map_err(db(op))?;
            for row in rows {
                let (key, value) = row.map_err(db(op))?;
                let (_, k, chunk) = key.value();
                let level = usize::from(k)
                    .checked_sub(GROUP_BITS as usize)
                    .ok_or_else(|| corrupt(batch, "level below the stored ones"))?;
                if levels.len() <= level {
                    levels.resize(level + 1, Vec::new());
                }
                let row = &mut levels[level];
                // A corrupt key must not overflow the arithmetic.
                if Some(row.len() as u64) != chunk.checked_mul(LEVEL_CHUNK_NODES * 32) {
                    return Err(corrupt(batch, "level rows out of order"));
                }
                row.extend_from_slice(value.value());
            }
            meta.levels = Some(levels);
        }
        let meta = Arc::new(meta);
        self.cache.insert(batch, meta.clone());
        Ok(meta)
    }
}

/// Where a commitment's proof is, as [`Store::locate`] found it.
struct Located {
    batch: u64,
    record: Commitment,
    /// The path above `sha256(commitment)`, leaf side first.
    steps: Vec<Sibling>,
    meta: Arc<BatchMeta>,
}

/// The journal index of leaf `pos` when leaves `pos..pos + count` all lie
/// in one run (consecutive journal records).
fn one_run(runs: &[(u64, u64)], mut pos: u64, count: u64) -> Option<u64> {
    for &(start, len) in runs {
        if pos < len {
            return pos
                .checked_add(count)
                .is_some_and(|end| end <= len)
                .then(|| start.checked_add(pos))
                .flatten();
        }
        pos -= len;
    }
    None
}

/// The journal index of leaf `pos` of a batch stored as `runs`.
fn journal_index(runs: &[(u64, u64)], mut pos: u64) -> Option<u64> {
    for &(start, len) in runs {
        if pos < len {
            return start.checked_add(pos);
        }
        pos -= len;
    }
    None
}
