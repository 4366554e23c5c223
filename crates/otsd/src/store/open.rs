//! Opening the [`Store`]: creating a new one under a temporary name,
//! refusing files that will not open (empty, truncated, damaged: a typed
//! error, never a panic), and reading the format version, upgrading a
//! format-1 store after re-verifying each batch.

use std::panic::catch_unwind;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use ots_proof::codec::Reader;
use ots_proof::{MerkleTree, Timestamp};
use redb::{Database, ReadableTable, TableError};

use super::batchcache::{BatchCache, BatchMeta};
use super::{
    corrupt, db, leaf, panic_message, sealed, Store, StoreError, BATCHES, FORMAT_KEY, INDEX,
    LEVELS, META, STORE_CACHE_BYTES, STORE_FILE, STORE_FORMAT_VERSION, STORE_FORMAT_WITHDRAWN,
    STORE_NEW_FILE,
};
use crate::journal::JournalReader;

impl Store {
    /// Opens (or creates) the store of the calendar in `dir`, upgrading a
    /// format-1 store (see the module's *Format versions*). A file that
    /// will not open is [`StoreError::Unreadable`], never a panic.
    pub fn open(dir: &Path, journal: JournalReader) -> Result<Store, StoreError> {
        let path = dir.join(STORE_FILE);
        let unreadable = |why: String| StoreError::Unreadable {
            path: path.clone(),
            why,
        };
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(dir, &path)?,
            Err(e) => return Err(unreadable(e.to_string())),
            Ok(m) if m.len() == 0 => {
                return Err(unreadable(
                    "the file is empty (0 bytes): truncated, or not a store".into(),
                ))
            }
            Ok(_) => {}
        }
        let opened = catch_unwind(|| {
            Database::builder()
                .set_cache_size(STORE_CACHE_BYTES)
                .open(&path)
        });
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(e @ redb::DatabaseError::DatabaseAlreadyOpen)) => {
                return Err(db("opening the database")(e))
            }
            Ok(Err(e)) => return Err(unreadable(e.to_string())),
            Err(p) => {
                return Err(unreadable(format!(
                    "redb panicked opening it (truncated or damaged?): {}",
                    panic_message(&*p)
                )))
            }
        };
        let store = Store {
            db,
            path,
            journal,
            cache: BatchCache::default(),
            cache_levels: AtomicBool::new(true),
            broken: AtomicBool::new(false),
            withdrawn: Default::default(),
        };
        store.guarded("checking the format", || store.check_format())?;
        store.guarded("reading the withdrawn batches", || store.load_withdrawn())?;
        Ok(store)
    }

    /// Reads the format version; upgrades a format-1 store.
    fn check_format(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(db("checking the format"))?;
        let version = match txn.open_table(META) {
            Ok(meta) => meta
                .get(FORMAT_KEY)
                .map_err(db("reading the format version"))?
                .map(|v| v.value()),
            Err(TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(db("reading the format version")(e)),
        };
        drop(txn);
        match version {
            Some(STORE_FORMAT_VERSION | STORE_FORMAT_WITHDRAWN) => Ok(()),
            Some(found) => Err(StoreError::UnsupportedFormat {
                path: self.path.clone(),
                found,
            }),
            None => self.upgrade_format_1(),
        }
    }

    /// Seals every batch record of a format-1 store with its checksum,
    /// after re-verifying it, and records the version: one transaction.
    fn upgrade_format_1(&self) -> Result<(), StoreError> {
        let op = "upgrading from format 1";
        let txn = self.db.begin_write().map_err(db(op))?;
        let mut upgraded = 0u64;
        {
            txn.open_table(LEVELS).map_err(db(op))?;
            txn.open_table(INDEX).map_err(db(op))?;
            let mut batches = txn.open_table(BATCHES).map_err(db(op))?;
            let old = batches
                .iter()
                .map_err(db(op))?
                .map(|row| row.map(|(k, v)| (k.value(), v.value().to_vec())))
                .collect::<Result<Vec<_>, _>>()
                .map_err(db(op))?;
            for (id, record) in old {
                self.reverify_format_1(id, &record)?;
                batches
                    .insert(id, sealed(id, record).as_slice())
                    .map_err(db(op))?;
                upgraded += 1;
            }
            let mut meta = txn.open_table(META).map_err(db(op))?;
            meta.insert(FORMAT_KEY, STORE_FORMAT_VERSION)
                .map_err(db(op))?;
        }
        txn.commit().map_err(db(op))?;
        if upgraded > 0 {
            tracing::warn!(
                batches = upgraded,
                path = %self.path.display(),
                "proof store upgraded from format 1: each batch's tree was rebuilt from the \
                 journal and its tail decoded before its record was sealed with a checksum"
            );
        }
        Ok(())
    }

    /// The checks a format-1 record gets before it is sealed: its tree,
    /// rebuilt from the journal's records, gives its root, and its tail
    /// decodes from that root to the record's end.
    fn reverify_format_1(&self, batch: u64, record: &[u8]) -> Result<(), StoreError> {
        let bad = |what: String| corrupt(batch, format!("format-1 record: {what}"));
        let meta = BatchMeta::parse(record).map_err(|e| bad(e.to_string()))?;
        let mut leaves = Vec::new();
        for &(start, len) in &meta.runs {
            let len = usize::try_from(len).map_err(|_| bad("run too long".into()))?;
            let recs = self.journal.read_range(start, len)?;
            if recs.len() != len {
                return Err(bad("journal records missing".into()));
            }
            leaves.extend(recs.iter().map(leaf));
        }
        if leaves.len() as u64 != meta.n {
            return Err(bad("runs do not cover its leaves".into()));
        }
        let tree = MerkleTree::new(leaves).ok_or_else(|| bad("no leaves".into()))?;
        if tree.root() != meta.root {
            return Err(bad("tree rebuilt from the journal misses its root".into()));
        }
        let mut r = Reader::new(&meta.tail);
        Timestamp::decode(&mut r, &meta.root).map_err(|e| bad(format!("tail: {e}")))?;
        r.expect_end().map_err(|e| bad(format!("tail: {e}")))?;
        Ok(())
    }
}

/// Creates a new store at `path`: initialised (tables and format version)
/// under [`STORE_NEW_FILE`], then renamed into place, so that a crash
/// leaves either no store or a complete empty one.
fn create(dir: &Path, path: &Path) -> Result<(), StoreError> {
    let op = "creating the store";
    let new = dir.join(STORE_NEW_FILE);
    let io = |e: std::io::Error| StoreError::Unreadable {
        path: path.to_owned(),
        why: format!("cannot create it: {e}"),
    };
    // A leftover of a creation that did not finish.
    match std::fs::remove_file(&new) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    {
        let db_ = Database::builder()
            .set_cache_size(STORE_CACHE_BYTES)
            .create(&new)
            .map_err(db(op))?;
        let txn = db_.begin_write().map_err(db(op))?;
        txn.open_table(BATCHES).map_err(db(op))?;
        txn.open_table(LEVELS).map_err(db(op))?;
        txn.open_table(INDEX).map_err(db(op))?;
        txn.open_table(META)
            .map_err(db(op))?
            .insert(FORMAT_KEY, STORE_FORMAT_VERSION)
            .map_err(db(op))?;
        txn.commit().map_err(db(op))?;
    }
    std::fs::rename(&new, path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}
