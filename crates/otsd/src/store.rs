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

use ots_proof::codec::write_varuint;
use ots_proof::op::sha256;
use ots_proof::{MerkleTree, Timestamp};
use redb::{Database, ReadableTable, TableDefinition};

use crate::batchcache::BatchCache;

use crate::calendar::{has_no_mac, Commitment, COMMITMENT_LEN, MAC_LEN, TIME_LEN};
use crate::journal::JournalReader;

mod lookup;

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

    /// Turns the loading of levels into the cache on or off (batches
    /// loaded from now on); off, every level is read from the database, as
    /// for batches too large for the cache.
    pub fn set_level_cache(&self, on: bool) {
        self.cache_levels
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }
}
