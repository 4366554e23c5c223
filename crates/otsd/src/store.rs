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
//!   root, the shared tail (the serialized timestamp rooted at the root),
//!   then a 32-byte checksum of all that (see *Integrity*);
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
//! * `meta`: `"format"` → the store's format version
//!   ([`STORE_FORMAT_VERSION`], or [`STORE_FORMAT_WITHDRAWN`]);
//! * `withdrawn` (format 3): batch id → a seal, for batches whose block a
//!   reorg took out of the best chain: never served (`withdraw.rs`).
//!
//! That is about 8 bytes of tree plus one 20-byte index entry per
//! commitment (the bytes per commitment on disk, measured by the
//! `store_size` example, are in `bench/RESULTS.md`).
//!
//! # Integrity
//!
//! redb does not check its pages on reads, so a flipped bit on disk comes
//! back as data. A served proof is the path (journal records and `levels`
//! nodes) followed by the stored tail, and each part is checked before a
//! byte is served:
//!
//! * the batch record (n, runs, root, tail) ends in
//!   `sha256(BATCH_CHECKSUM_DOMAIN ‖ batch id ‖ record)`, verified whenever
//!   the record is read from the database (the batch cache then keeps the
//!   verified record, so a cached GET pays nothing);
//! * the path is recomputed from `sha256(commitment)` through the journal's
//!   records and the stored level nodes, and must reach the checksummed
//!   root. A wrong node cannot (that would be a sha256 second preimage), so
//!   level rows carry no checksum of their own, and a GET of a batch too
//!   large for the cache pays no hashing of 4 KiB rows;
//! * the index only points: a wrong entry leads to a leaf that is not the
//!   commitment's ("not here", a 404) or to a path that misses the root.
//!
//! A mismatch is [`StoreError::Corrupt`] naming the batch (the HTTP layer
//! answers 500 and logs the commitment), never a proof. This guards against
//! the disk, not against someone who can write the calendar directory: they
//! could recompute the checksum, as they could rewrite the journal.
//!
//! A file that will not open (empty, truncated, not redb, or making redb
//! panic, which [`Store`] catches) is [`StoreError::Unreadable`] with its
//! path; after a panic inside redb the store refuses writes until restarted
//! (redb's in-memory state may be inconsistent), while reads go on, each
//! guarded the same way. This relies on `panic = "unwind"`, the profiles'
//! default.
//!
//! # Format versions
//!
//! Format 2 (this build) added the checksum and the `meta` table. A store
//! without a version is format 1 and is upgraded when opened, in one
//! transaction, after each batch is re-verified as far as can be done
//! without a Bitcoin node: its tree is rebuilt from the journal's records
//! and must give the stored root, and its tail must decode from that root
//! to the end of the record. A batch failing that refuses the open. What
//! no offline check can prove is the tail's operations (its transaction
//! bytes): a format-1 tail damaged before the upgrade but still decoding
//! would be sealed as it is, which is what the format-1 build served. An
//! unknown version is [`StoreError::UnsupportedFormat`]. Format 3 is
//! format 2 with the `withdrawn` table: a store moves to it with its first
//! withdrawn batch (a reorg deeper than the stamper's confirmations), so
//! that a format-2 build, which would serve the withdrawn proofs, refuses
//! it; a store that never saw such a reorg stays format 2. A new store is
//! created as `store.redb.new` and renamed into place once initialised, so
//! an empty or half-written `store.redb` is never the store's own doing.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use ots_proof::codec::write_varuint;
use ots_proof::op::sha256;
use ots_proof::{MerkleTree, Timestamp};
use redb::{Database, ReadableTable, TableDefinition};

use batchcache::{BatchCache, BatchMeta};

use crate::calendar::{has_no_mac, Commitment, COMMITMENT_LEN, MAC_LEN, TIME_LEN};
use crate::journal::JournalReader;

pub mod batchcache;
mod lookup;
mod open;
mod withdraw;

/// Name of the store database in the calendar directory.
pub const STORE_FILE: &str = "store.redb";
/// Name a new store is initialised under before it is renamed to
/// [`STORE_FILE`].
pub const STORE_NEW_FILE: &str = "store.redb.new";
/// The format this build writes and reads (format 1, without checksums
/// and without a version, is upgraded when opened).
pub const STORE_FORMAT_VERSION: u64 = 2;
/// The format of a store some batch of which was withdrawn (format 2 and
/// the `withdrawn` table, see [`Store::withdraw_batch`]); this build reads
/// both, and writes it with the first withdrawal.
pub const STORE_FORMAT_WITHDRAWN: u64 = 3;
/// What a `withdrawn` row's checksum hashes first.
pub const WITHDRAWN_DOMAIN: &[u8] = b"otsd store withdrawn batch\0";
/// Tree levels below this one are rebuilt from the journal (a group of
/// `2^GROUP_BITS` commitments) instead of being stored.
pub const GROUP_BITS: u32 = 3;
/// Nodes per stored row of a level (4 KiB rows).
pub const LEVEL_CHUNK_NODES: u64 = 128;
/// Bytes of the checksum ending each `batches` value.
pub const BATCH_CHECKSUM_LEN: usize = 32;
/// What the batch checksum hashes first, so that it is no other hash in
/// the system.
pub const BATCH_CHECKSUM_DOMAIN: &[u8] = b"otsd store batch record\0";

const BATCHES: TableDefinition<u64, &[u8]> = TableDefinition::new("batches");
const LEVELS: TableDefinition<(u64, u8, u64), &[u8]> = TableDefinition::new("levels");
/// Value: `batch << 32 | leaf position` (both below 2^32).
const INDEX: TableDefinition<(u32, u64), u64> = TableDefinition::new("index");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const FORMAT_KEY: &str = "format";
/// Batch id → its seal: batches whose proofs are withdrawn.
const WITHDRAWN: TableDefinition<u64, &[u8]> = TableDefinition::new("withdrawn");

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed while the store was doing `op`.
    #[error("proof store: {op}: {source}")]
    Db {
        /// What the store was doing.
        op: &'static str,
        /// redb's error (boxed: it is large, and errors are rare).
        #[source]
        source: Box<redb::Error>,
    },
    /// The store file cannot be opened or read: empty, truncated, not a
    /// redb database, or redb panicked on it.
    #[error("proof store {}: unreadable: {why}", path.display())]
    Unreadable {
        /// The store file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// The store names a format version this build does not know.
    #[error(
        "proof store {}: unsupported format version {found} (this build reads {})",
        path.display(),
        STORE_FORMAT_VERSION
    )]
    UnsupportedFormat {
        /// The store file.
        path: PathBuf,
        /// The version found.
        found: u64,
    },
    /// Reading the journal failed.
    #[error("proof store: reading the journal: {0}")]
    Journal(#[from] std::io::Error),
    /// A batch handed to [`Store::add_batch`] is inconsistent.
    #[error("proof store: rejected batch: {0}")]
    BadBatch(&'static str),
    /// Stored data fails its checksum, does not decode, or does not lead
    /// to its root.
    #[error("proof store: corrupt batch {batch}: {what}")]
    Corrupt {
        /// The batch.
        batch: u64,
        /// What is wrong.
        what: String,
    },
}

impl StoreError {
    /// The batch a [`StoreError::Corrupt`] names.
    pub fn batch(&self) -> Option<u64> {
        match self {
            StoreError::Corrupt { batch, .. } => Some(*batch),
            _ => None,
        }
    }
}

/// Maps a redb error to [`StoreError::Db`] naming the operation.
fn db<E: Into<redb::Error>>(op: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Db {
        op,
        source: Box::new(e.into()),
    }
}

/// The checksum ending a `batches` value: over the batch id too, so that
/// a record found under another key fails it.
fn batch_checksum(batch: u64, record: &[u8]) -> [u8; 32] {
    let mut buf = Vec::with_capacity(BATCH_CHECKSUM_DOMAIN.len() + 8 + record.len());
    buf.extend_from_slice(BATCH_CHECKSUM_DOMAIN);
    buf.extend_from_slice(&batch.to_be_bytes());
    buf.extend_from_slice(record);
    sha256(&buf)
}

/// A `batches` value: the record, then its checksum.
fn sealed(batch: u64, mut record: Vec<u8>) -> Vec<u8> {
    let sum = batch_checksum(batch, &record);
    record.extend_from_slice(&sum[..BATCH_CHECKSUM_LEN]);
    record
}

/// The record of a `batches` value whose checksum holds.
fn unsealed(batch: u64, value: &[u8]) -> Result<&[u8], StoreError> {
    let split = value
        .len()
        .checked_sub(BATCH_CHECKSUM_LEN)
        .ok_or_else(|| corrupt(batch, "batch record shorter than its checksum"))?;
    let (record, sum) = value.split_at(split);
    if batch_checksum(batch, record)[..BATCH_CHECKSUM_LEN] != *sum {
        return Err(corrupt(batch, "batch record fails its checksum"));
    }
    Ok(record)
}

fn corrupt(batch: u64, what: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        batch,
        what: what.into(),
    }
}

/// A panic's message, for the error that replaces it.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
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

/// A batch checked and encoded for its transaction.
struct EncodedBatch {
    value: Vec<u8>,
    levels: Vec<Vec<[u8; 32]>>,
    keys: Vec<((u32, u64), u32)>,
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
    path: PathBuf,
    journal: JournalReader,
    cache: BatchCache,
    /// Whether batches' levels are loaded into the cache (on by default).
    cache_levels: AtomicBool,
    /// Set when redb panicked: writes are refused from then on.
    broken: AtomicBool,
    /// Batches never served again (see [`Store::withdraw_batch`]).
    withdrawn: std::sync::RwLock<std::collections::HashSet<u64>>,
}

impl Store {
    /// Runs `f`, turning a panic inside redb into [`StoreError::Unreadable`]
    /// (and refusing writes from then on).
    fn guarded<T>(
        &self,
        op: &'static str,
        f: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
            self.broken.store(true, Ordering::Relaxed);
            Err(StoreError::Unreadable {
                path: self.path.clone(),
                why: format!("redb panicked {op}: {}", panic_message(&*p)),
            })
        })
    }

    /// Adds the completed proofs of a batch in one transaction (one fsync);
    /// returns its id. Checks that the commitments are the journal's
    /// records and that their tree leads to the tail's message. Their
    /// index entries now lead to this batch (a commitment stamped again
    /// after a withdrawal is served from its new batch).
    pub fn add_batch(&self, batch: CompletedBatch) -> Result<u64, StoreError> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(StoreError::Unreadable {
                path: self.path.clone(),
                why: "redb panicked earlier: writes refused until restart".into(),
            });
        }
        self.guarded("adding a batch", || self.add_batch_inner(batch))
    }

    fn add_batch_inner(&self, batch: CompletedBatch) -> Result<u64, StoreError> {
        let ids = self.add_batches_inner(vec![batch], &[])?;
        ids.first()
            .copied()
            .ok_or(StoreError::BadBatch("no batch was added"))
    }

    /// Adds the completed proofs of several batches and sets `meta` values
    /// (a tool's progress, such as `import-reference`'s cursor) in one
    /// transaction: one fsync for all, and after a crash either all of it
    /// is in or none. Each batch is checked as by [`add_batch`]; the
    /// store's own `"format"` key cannot be set. Returns the new batches'
    /// ids, in order.
    ///
    /// [`add_batch`]: Store::add_batch
    pub fn add_batches(
        &self,
        batches: Vec<CompletedBatch>,
        meta: &[(&str, u64)],
    ) -> Result<Vec<u64>, StoreError> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(StoreError::Unreadable {
                path: self.path.clone(),
                why: "redb panicked earlier: writes refused until restart".into(),
            });
        }
        self.guarded("adding batches", || self.add_batches_inner(batches, meta))
    }

    /// A `meta` value set by [`add_batches`](Store::add_batches).
    pub fn meta_value(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let op = "reading the meta table";
        self.guarded(op, || {
            let txn = self.db.begin_read().map_err(db(op))?;
            let meta = txn.open_table(META).map_err(db(op))?;
            let value = meta.get(key).map_err(db(op))?.map(|v| v.value());
            Ok(value)
        })
    }

    fn add_batches_inner(
        &self,
        batches: Vec<CompletedBatch>,
        meta: &[(&str, u64)],
    ) -> Result<Vec<u64>, StoreError> {
        if meta.iter().any(|(k, _)| *k == FORMAT_KEY) {
            return Err(StoreError::BadBatch("the format key is the store's own"));
        }
        let encoded = batches
            .into_iter()
            .map(|b| self.encode_batch(b))
            .collect::<Result<Vec<_>, _>>()?;
        let op = "adding a batch";
        let txn = self.db.begin_write().map_err(db(op))?;
        let mut ids = Vec::with_capacity(encoded.len());
        {
            let mut batches = txn.open_table(BATCHES).map_err(db(op))?;
            let mut lv = txn.open_table(LEVELS).map_err(db(op))?;
            let mut index = txn.open_table(INDEX).map_err(db(op))?;
            let first = batches
                .last()
                .map_err(db(op))?
                .map_or(0, |(k, _)| k.value() + 1);
            for (id, encoded) in (first..).zip(encoded) {
                let EncodedBatch {
                    value,
                    levels,
                    keys,
                } = encoded;
                if id > u64::from(u32::MAX) {
                    return Err(StoreError::BadBatch("too many batches"));
                }
                ids.push(id);
                batches
                    .insert(id, sealed(id, value).as_slice())
                    .map_err(db(op))?;
                for (k, level) in levels.iter().enumerate().skip(GROUP_BITS as usize) {
                    if level.len() < 2 {
                        break;
                    }
                    for (chunk, nodes) in level.chunks(LEVEL_CHUNK_NODES as usize).enumerate() {
                        lv.insert((id, k as u8, chunk as u64), nodes.concat().as_slice())
                            .map_err(db(op))?;
                    }
                }
                for (key, p) in keys {
                    index
                        .insert(key, (id << 32) | u64::from(p))
                        .map_err(db(op))?;
                }
            }
            if !meta.is_empty() {
                let mut table = txn.open_table(META).map_err(db(op))?;
                for (k, v) in meta {
                    table.insert(*k, *v).map_err(db(op))?;
                }
            }
        }
        txn.commit().map_err(db(op))?;
        Ok(ids)
    }

    /// Checks a batch against the journal and its tail, and encodes its
    /// record, tree levels and index keys (sorted).
    fn encode_batch(&self, batch: CompletedBatch) -> Result<EncodedBatch, StoreError> {
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

        let mut keys: Vec<((u32, u64), u32)> = batch
            .commitments
            .iter()
            .enumerate()
            .map(|(p, (_, c))| (index_key(c), p as u32))
            .collect();
        keys.sort_unstable();
        Ok(EncodedBatch {
            value,
            levels,
            keys,
        })
    }

    /// Rewrites the database without free pages (redb keeps the pages freed
    /// by copy-on-write for reuse; this returns them to the file system).
    /// Needs exclusive access: call it with the server stopped.
    pub fn compact(&mut self) -> Result<bool, StoreError> {
        let db_ = &mut self.db;
        let compacted = catch_unwind(AssertUnwindSafe(|| db_.compact()));
        match compacted {
            Ok(r) => r.map_err(db("compacting")),
            Err(p) => {
                self.broken.store(true, Ordering::Relaxed);
                Err(StoreError::Unreadable {
                    path: self.path.clone(),
                    why: format!("redb panicked compacting: {}", panic_message(&*p)),
                })
            }
        }
    }

    /// Whether no batch has been added yet.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        let op = "reading the batches";
        self.guarded(op, || {
            let txn = self.db.begin_read().map_err(db(op))?;
            let batches = txn.open_table(BATCHES).map_err(db(op))?;
            let empty = batches.last().map_err(db(op))?.is_none();
            Ok(empty)
        })
    }

    /// One past the highest journal position that has a proof here (0 for
    /// an empty store): the journal must hold at least this many records.
    /// Reads every batch record (one per transaction), each checked
    /// against its checksum; a damaged one is logged and left out.
    pub fn journal_end(&self) -> Result<u64, StoreError> {
        let op = "reading the batches";
        self.guarded(op, || {
            let txn = self.db.begin_read().map_err(db(op))?;
            let batches = txn.open_table(BATCHES).map_err(db(op))?;
            let mut end = 0u64;
            for row in batches.iter().map_err(db(op))? {
                let (key, value) = row.map_err(db(op))?;
                let batch = key.value();
                // A damaged record is the read path's to refuse (a 500 for
                // its commitments); the others still bound the journal.
                let meta = match unsealed(batch, value.value()).and_then(|record| {
                    BatchMeta::parse(record).map_err(|e| corrupt(batch, e.to_string()))
                }) {
                    Ok(meta) => meta,
                    Err(e) => {
                        tracing::error!(batch, error = %e, "proof store: a damaged batch record; its proofs will not be served");
                        continue;
                    }
                };
                for (start, len) in meta.runs {
                    let run_end = start
                        .checked_add(len)
                        .ok_or_else(|| corrupt(batch, "journal run out of range"))?;
                    end = end.max(run_end);
                }
            }
            Ok(end)
        })
    }

    /// Whether the index knows `commitment` (by its 12-byte key; [`get`]
    /// confirms).
    ///
    /// [`get`]: Store::get
    pub fn contains(&self, commitment: &[u8]) -> Result<bool, StoreError> {
        if commitment.len() < TIME_LEN + 12 {
            return Ok(false);
        }
        let op = "reading the index";
        self.guarded(op, || {
            let txn = self.db.begin_read().map_err(db(op))?;
            let index = txn.open_table(INDEX).map_err(db(op))?;
            let found = index.get(index_key(commitment)).map_err(db(op))?;
            // A withdrawn batch's commitments have no proof to serve.
            Ok(found.is_some_and(|v| !self.is_withdrawn(v.value() >> 32)))
        })
    }

    /// Turns the loading of levels into the cache on or off (batches
    /// loaded from now on); off, every level is read from the database, as
    /// for batches too large for the cache.
    pub fn set_level_cache(&self, on: bool) {
        self.cache_levels.store(on, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_record_opens_only_unchanged_and_under_its_own_id() {
        let record = b"n, runs, root and tail".to_vec();
        let value = sealed(7, record.clone());
        assert_eq!(value.len(), record.len() + BATCH_CHECKSUM_LEN);
        assert_eq!(unsealed(7, &value).unwrap(), record.as_slice());
        assert_eq!(unsealed(8, &value).unwrap_err().batch(), Some(8));
        for bit in 0..value.len() * 8 {
            let mut v = value.clone();
            v[bit / 8] ^= 1 << (bit % 8);
            assert!(unsealed(7, &v).is_err(), "bit {bit}");
        }
        assert!(unsealed(7, &value[..BATCH_CHECKSUM_LEN - 1]).is_err());
        assert!(unsealed(7, &value[1..]).is_err());
    }
}
