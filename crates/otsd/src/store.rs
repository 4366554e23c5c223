//! The proof store: completed proofs, added a batch at a time by the
//! stamper and served one commitment at a time, compactly.
//!
//! Commitments stamped together share everything from their batch's Merkle
//! root (over `sha256(commitment)` leaves, PROTOCOL §4) down to the Bitcoin
//! attestation, so the store keeps, per batch, in one `redb` database
//! (`store.redb` in the calendar directory):
//!
//! * `batches`: batch id → `varuint n`, the batch's journal indices as runs
//!   (`varuint #runs`, then `varuint start, varuint len` each), the 32-byte
//!   root, then the shared tail (the serialized timestamp rooted at the
//!   root);
//! * `levels`: (batch, level, chunk) → up to [`LEVEL_CHUNK_NODES`] 32-byte
//!   nodes of the batch's tree, for levels [`GROUP_BITS`] and up (levels
//!   below are recomputed from the commitments themselves, read from the
//!   journal: 8 records, one `pread`);
//! * `index`: (time, first 8 bytes of the tip) of the commitment → `batch
//!   << 32 | leaf position`. The tip is a hash nobody chooses; a lookup
//!   recomputes the path to the stored root, so a key shared by an
//!   unrelated commitment answers "not here", never a wrong proof. Time
//!   first keeps each batch's keys together, so a transaction rewrites few
//!   B-tree pages (random keys doubled the file through copy-on-write).
//!
//! That is about 8 bytes of tree plus one 20-byte index entry per
//! commitment: 67.9 bytes per commitment on disk at 1,000,000 commitments
//! in batches of 10,000 (the `store_size` example).

use std::path::Path;
use std::sync::Arc;

use ots_proof::codec::{write_varbytes, write_varuint, Reader};
use ots_proof::merkle::Sibling;
use ots_proof::op::{sha256, TAG_APPEND, TAG_PREPEND, TAG_SHA256};
use ots_proof::{MerkleTree, Op, Timestamp};
use redb::{Database, ReadTransaction, ReadableTable, TableDefinition};

use crate::batchcache::{BatchCache, BatchMeta};

use crate::calendar::{has_no_mac, Commitment, COMMITMENT_LEN, MAC_LEN, TIME_LEN};
use crate::journal::JournalReader;

/// Name of the store database in the calendar directory.
pub const STORE_FILE: &str = "store.redb";
/// Tree levels below this one are rebuilt from the journal (a group of
/// `2^GROUP_BITS` commitments) instead of being stored.
pub const GROUP_BITS: u32 = 3;
/// Nodes per stored row of a level (4 KiB rows).
pub const LEVEL_CHUNK_NODES: u64 = 128;

const BATCHES: TableDefinition<u64, &[u8]> = TableDefinition::new("batches");
const LEVELS: TableDefinition<(u64, u8, u64), &[u8]> = TableDefinition::new("levels");
/// Value: `batch << 32 | leaf position` (both below 2^32).
const INDEX: TableDefinition<(u32, u64), u64> = TableDefinition::new("index");

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("proof store: {0}")]
    Db(String),
    /// Reading the journal failed.
    #[error("proof store: reading the journal: {0}")]
    Journal(#[from] std::io::Error),
    /// A batch handed to [`Store::add_batch`] is inconsistent.
    #[error("proof store: rejected batch: {0}")]
    BadBatch(&'static str),
    /// Stored data does not decode or does not lead to its root.
    #[error("proof store: corrupt batch {batch}: {what}")]
    Corrupt {
        /// The batch.
        batch: u64,
        /// What is wrong.
        what: String,
    },
}

fn dberr<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

/// The completed proofs of one stamper batch.
#[derive(Debug, Clone)]
pub struct CompletedBatch {
    /// The batch's commitments in leaf order, each with its journal index.
    pub commitments: Vec<(u64, Commitment)>,
    /// The proof from the Merkle root of `sha256(commitment)` leaves to
    /// its attestation(s).
    pub tail: Timestamp,
}

/// The bytes a commitment is known by: a record without MAC (reference
/// legacy) is the 36-byte commitment `time ‖ tip`.
pub fn commitment_bytes(record: &Commitment) -> &[u8] {
    if has_no_mac(record) {
        &record[..COMMITMENT_LEN - MAC_LEN]
    } else {
        record
    }
}

/// The journal record a commitment's bytes stand for (the inverse of
/// [`commitment_bytes`]); `None` for any other length.
pub fn record_of(bytes: &[u8]) -> Option<Commitment> {
    let mut record = [0u8; COMMITMENT_LEN];
    match bytes.len() {
        COMMITMENT_LEN => record.copy_from_slice(bytes),
        n if n == COMMITMENT_LEN - MAC_LEN => record[..n].copy_from_slice(bytes),
        _ => return None,
    }
    Some(record)
}

/// The leaf of a commitment in a stamper tree: `sha256(commitment)`.
pub fn leaf(record: &Commitment) -> [u8; 32] {
    sha256(commitment_bytes(record))
}

/// The index key: the commitment's time, then 8 bytes of its tip. Time
/// first keeps a batch's keys together at the end of the B-tree (batches
/// complete recent commitments), so each transaction rewrites few pages.
fn index_key(c: &[u8]) -> (u32, u64) {
    let mut t = [0u8; TIME_LEN];
    t.copy_from_slice(&c[..TIME_LEN]);
    let mut tip = [0u8; 8];
    tip.copy_from_slice(&c[TIME_LEN..TIME_LEN + 8]);
    (u32::from_be_bytes(t), u64::from_be_bytes(tip))
}

/// redb's page cache. Its default, 1 GiB, would let a calendar's memory
/// grow with its store for years; this holds the pages of about two
/// million completed commitments, and colder pages come from the OS's page
/// cache.
pub const STORE_CACHE_BYTES: usize = 128 << 20;

/// The proof store.
#[derive(Debug)]
pub struct Store {
    db: Database,
    journal: JournalReader,
    cache: BatchCache,
    /// Whether batches' levels are loaded into the cache (on by default).
    cache_levels: std::sync::atomic::AtomicBool,
}

impl Store {
    /// Opens (or creates) the store of the calendar in `dir`.
    pub fn open(dir: &Path, journal: JournalReader) -> Result<Store, StoreError> {
        let db = Database::builder()
            .set_cache_size(STORE_CACHE_BYTES)
            .create(dir.join(STORE_FILE))
            .map_err(dberr)?;
        let txn = db.begin_write().map_err(dberr)?;
        txn.open_table(BATCHES).map_err(dberr)?;
        txn.open_table(LEVELS).map_err(dberr)?;
        txn.open_table(INDEX).map_err(dberr)?;
        txn.commit().map_err(dberr)?;
        Ok(Store {
            db,
            journal,
            cache: BatchCache::default(),
            cache_levels: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// Adds the completed proofs of a batch in one transaction (one fsync).
    /// Checks that the commitments are the journal's records and that their
    /// tree leads to the tail's message.
    pub fn add_batch(&self, batch: CompletedBatch) -> Result<(), StoreError> {
        let n = batch.commitments.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(StoreError::BadBatch("batch size out of range"));
        }
        // Journal indices as runs.
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for &(i, _) in &batch.commitments {
            match runs.last_mut() {
                Some((s, l)) if *s + *l == i => *l += 1,
                _ => runs.push((i, 1)),
            }
        }
        let mut pos = 0;
        for &(start, len) in &runs {
            let recs = self.journal.read_range(start, len as usize)?;
            if recs.len() as u64 != len
                || recs
                    .iter()
                    .zip(&batch.commitments[pos..])
                    .any(|(r, (_, c))| r != c)
            {
                return Err(StoreError::BadBatch("commitments differ from the journal"));
            }
            pos += len as usize;
        }
        let levels = MerkleTree::new(batch.commitments.iter().map(|(_, c)| leaf(c)).collect())
            .expect("n > 0")
            .into_levels();
        let root = levels.last().expect("non-empty")[0];
        if batch.tail.msg() != root {
            return Err(StoreError::BadBatch(
                "tail is not rooted at the batch's merkle root",
            ));
        }
        let mut value = Vec::new();
        write_varuint(&mut value, n as u64);
        write_varuint(&mut value, runs.len() as u64);
        for (s, l) in &runs {
            write_varuint(&mut value, *s);
            write_varuint(&mut value, *l);
        }
        value.extend_from_slice(&root);
        batch
            .tail
            .serialize_into(&mut value)
            .map_err(|_| StoreError::BadBatch("tail cannot be serialized"))?;

        let txn = self.db.begin_write().map_err(dberr)?;
        {
            let mut batches = txn.open_table(BATCHES).map_err(dberr)?;
            let id = batches
                .last()
                .map_err(dberr)?
                .map_or(0, |(k, _)| k.value() + 1);
            if id > u64::from(u32::MAX) {
                return Err(StoreError::BadBatch("too many batches"));
            }
            batches.insert(id, value.as_slice()).map_err(dberr)?;
            let mut lv = txn.open_table(LEVELS).map_err(dberr)?;
            for (k, level) in levels.iter().enumerate().skip(GROUP_BITS as usize) {
                if level.len() < 2 {
                    break;
                }
                for (chunk, nodes) in level.chunks(LEVEL_CHUNK_NODES as usize).enumerate() {
                    lv.insert((id, k as u8, chunk as u64), nodes.concat().as_slice())
                        .map_err(dberr)?;
                }
            }
            let mut index = txn.open_table(INDEX).map_err(dberr)?;
            let mut keys: Vec<((u32, u64), u32)> = batch
                .commitments
                .iter()
                .enumerate()
                .map(|(p, (_, c))| (index_key(c), p as u32))
                .collect();
            keys.sort_unstable();
            for (key, p) in keys {
                index
                    .insert(key, (id << 32) | u64::from(p))
                    .map_err(dberr)?;
            }
        }
        txn.commit().map_err(dberr)?;
        Ok(())
    }

    /// Rewrites the database without free pages (redb keeps the pages freed
    /// by copy-on-write for reuse; this returns them to the file system).
    /// Needs exclusive access: call it with the server stopped.
    pub fn compact(&mut self) -> Result<bool, StoreError> {
        self.db.compact().map_err(dberr)
    }

    /// Whether no batch has been added yet.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        let txn = self.db.begin_read().map_err(dberr)?;
        let batches = txn.open_table(BATCHES).map_err(dberr)?;
        let empty = batches.last().map_err(dberr)?.is_none();
        Ok(empty)
    }

    /// Whether the index knows `commitment` (by its 12-byte key; [`get`]
    /// confirms).
    ///
    /// [`get`]: Store::get
    pub fn contains(&self, commitment: &[u8]) -> Result<bool, StoreError> {
        if commitment.len() < TIME_LEN + 12 {
            return Ok(false);
        }
        let txn = self.db.begin_read().map_err(dberr)?;
        let index = txn.open_table(INDEX).map_err(dberr)?;
        Ok(index.get(index_key(commitment)).map_err(dberr)?.is_some())
    }

    /// The full proof of `commitment` (44 bytes, or 36 for a reference
    /// legacy commitment), from the commitment down to its attestations.
    pub fn get(&self, commitment: &[u8]) -> Result<Option<Timestamp>, StoreError> {
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
        let Some(found) = self.locate(commitment)? else {
            return Ok(None);
        };
        let mut msg = sha256(commitment_bytes(&found.record));
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
        let txn = self.db.begin_read().map_err(dberr)?;
        let index = txn.open_table(INDEX).map_err(dberr)?;
        let Some((batch, pos)) = index
            .get(index_key(&record))
            .map_err(dberr)?
            .map(|v| (v.value() >> 32, v.value() as u32))
        else {
            return Ok(None);
        };
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
                            levels = Some(txn.open_table(LEVELS).map_err(dberr)?);
                        }
                        let table = levels.as_ref().expect("just opened");
                        let row = table
                            .get((batch, k as u8, sib / LEVEL_CHUNK_NODES))
                            .map_err(dberr)?
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

    /// Turns the loading of levels into the cache on or off (batches
    /// loaded from now on); off, every level is read from the database, as
    /// for batches too large for the cache.
    pub fn set_level_cache(&self, on: bool) {
        self.cache_levels
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Reads a batch (with its levels, when small enough) into the cache.
    fn load(&self, txn: &ReadTransaction, batch: u64) -> Result<Arc<BatchMeta>, StoreError> {
        let batches = txn.open_table(BATCHES).map_err(dberr)?;
        let Some(value) = batches.get(batch).map_err(dberr)? else {
            return Err(corrupt(batch, "indexed batch missing"));
        };
        let mut meta =
            BatchMeta::parse(value.value()).map_err(|e| corrupt(batch, e.to_string()))?;
        if self.cache_levels.load(std::sync::atomic::Ordering::Relaxed) && BatchCache::fits(meta.n)
        {
            let table = txn.open_table(LEVELS).map_err(dberr)?;
            let mut levels: Vec<Vec<u8>> = Vec::new();
            let rows = table
                .range((batch, 0u8, 0u64)..=(batch, u8::MAX, u64::MAX))
                .map_err(dberr)?;
            for row in rows {
                let (key, value) = row.map_err(dberr)?;
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

fn corrupt(batch: u64, what: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        batch,
        what: what.into(),
    }
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
