//! The reference calendar's proof store, served in place: the LevelDB
//! `db/` that the Python `otsd` keeps in the calendar directory (keys are
//! node messages, values node records, PROTOCOL §3), read-only.
//!
//! A commitment's proof is built by following each operation's result to
//! the next key, within [`MAX_PROOF_NODES`] nodes and
//! [`MAX_DEPTH`] levels (a corrupt or hostile store can hold cycles, such
//! as two reverse operations), and is served only if it reaches a Bitcoin
//! attestation: the bytes are what the reference serves, the timestamp
//! serialized from the commitment's node.
//!
//! Never written: LevelDB writes to its directory on open (`LOCK`, `LOG`, a
//! new log and `MANIFEST`, deletions, compactions); [`env::OverlayEnv`]
//! reads the disk and keeps every write in memory. Opening reads `CURRENT`,
//! the `MANIFEST` and the (usually empty) log, not the tables: start-up
//! does not scan the store. Caveat: the in-memory `LOCK` does not stop the
//! reference server from running on the same directory at the same time;
//! the operator stops it first (they share the journal anyway).
//!
//! rusty-leveldb's database is single-threaded (`Rc` inside), so one
//! thread owns it and answers lookups sent over a channel.

pub mod env;
pub mod node;

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc;

use ots_proof::timestamp::MAX_DEPTH;
use ots_proof::{Attestation, Timestamp};
use rusty_leveldb::{Options, DB};

use node::NodeError;

/// The reference's store, in the calendar directory.
pub const REFERENCE_DB_DIR: &str = "db";

/// The most nodes a proof built from the store may have. A real one has
/// about a hundred (a calendar round's Merkle path, the transaction, the
/// block's Merkle path).
pub const MAX_PROOF_NODES: usize = 4096;

/// LevelDB's block cache for the reference's tables.
const BLOCK_CACHE_BYTES: usize = 8 << 20;

/// Node records kept by the thread that serves proofs, most recently used
/// first (about 200 bytes each with the cache's own). Proofs of one batch
/// share their upper tree levels and the whole tail (a few dozen of the
/// 50-odd nodes of a proof), so random requests find most of those here and
/// read only the lower levels from LevelDB, whose lookups cost tens of
/// microseconds each. `db/` never changes under us (read-only, the
/// reference stopped), so a kept record is the record; errors are not kept.
const RECORD_CACHE_ENTRIES: usize = 1 << 18;

/// The stack of the thread that owns the store: building a proof recurses
/// once per level, up to [`MAX_DEPTH`].
const THREAD_STACK_BYTES: usize = 8 << 20;

/// What went wrong reading the reference's store.
#[derive(Debug, thiserror::Error)]
pub enum RefStoreError {
    /// The store will not open.
    #[error("reference store {}: {message}; otsd never writes it. To start without it, move it aside: its commitments are then pending, and with a Bitcoin backend stamped again (the journal keeps them all)", path.display())]
    Open {
        /// Its directory.
        path: PathBuf,
        /// LevelDB's reason.
        message: String,
    },
    /// LevelDB failed to read a key (a bad checksum, a truncated table).
    #[error("reference store: reading key {key}: {message}")]
    Read {
        /// The key, hex.
        key: String,
        /// LevelDB's reason.
        message: String,
    },
    /// A stored node record does not parse.
    #[error("reference store: record of key {key}: {source}")]
    Record {
        /// The key, hex.
        key: String,
        /// Why.
        source: NodeError,
    },
    /// An operation cannot be applied to its node's message.
    #[error("reference store: operation at key {key}: {message}")]
    Op {
        /// The key, hex.
        key: String,
        /// Why.
        message: String,
    },
    /// An operation leads to a message that has no record. The reference
    /// writes a proof's nodes in one batch, so this is damage: a block
    /// failing its checksum reads as no record (rusty-leveldb's lookups
    /// drop table read errors).
    #[error("reference store: key {key} leads to {missing}, which has no record (missing, or in a table block that fails its checksum)")]
    Missing {
        /// The node, hex.
        key: String,
        /// The message its operation leads to, hex.
        missing: String,
    },
    /// The proof exceeds [`MAX_PROOF_NODES`] or [`MAX_DEPTH`].
    #[error("reference store: proof of {key} exceeds {what}")]
    TooLarge {
        /// The commitment, hex.
        key: String,
        /// The limit hit.
        what: &'static str,
    },
    /// The proof reaches no Bitcoin attestation: not a completed proof.
    #[error("reference store: proof of {key} reaches no Bitcoin attestation")]
    Incomplete {
        /// The commitment, hex.
        key: String,
    },
    /// The proof does not serialize.
    #[error("reference store: proof of {key}: {message}")]
    Encode {
        /// The commitment, hex.
        key: String,
        /// Why.
        message: String,
    },
    /// The store's thread has stopped.
    #[error("reference store: its thread has stopped")]
    Gone,
}

impl RefStoreError {
    /// Whether the commitment is answered as not yet complete (404 with
    /// its reason) rather than with a 500: a proof that reaches no Bitcoin
    /// attestation is not damage, just not a completed proof.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, RefStoreError::Incomplete { .. })
    }
}

/// What the store's thread is asked.
enum Request {
    /// Whether a key has a record.
    Contains(Vec<u8>, mpsc::Sender<Result<bool, RefStoreError>>),
    /// The serialized, completed proof of a message.
    Proof(
        Vec<u8>,
        tokio::sync::oneshot::Sender<Result<Option<Vec<u8>>, RefStoreError>>,
    ),
}

/// The reference's store, open read-only; cheap to share (a channel).
#[derive(Debug, Clone)]
pub struct RefStore {
    requests: mpsc::Sender<Request>,
    path: PathBuf,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Request")
    }
}

impl RefStore {
    /// Opens `dir/db` if there is one (`None` without), on its own thread.
    pub fn open(dir: &Path) -> Result<Option<RefStore>, RefStoreError> {
        let path = dir.join(REFERENCE_DB_DIR);
        if !path.join("CURRENT").is_file() {
            return Ok(None);
        }
        let (requests, rx) = mpsc::channel();
        let (opened_tx, opened_rx) = mpsc::channel();
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("refstore".into())
            .stack_size(THREAD_STACK_BYTES)
            .spawn(move || match open_db(&thread_path) {
                Ok(db) => {
                    let _ = opened_tx.send(Ok(()));
                    run(db, rx);
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                }
            })
            .map_err(|e| RefStoreError::Open {
                path: path.clone(),
                message: format!("starting its thread: {e}"),
            })?;
        opened_rx.recv().map_err(|_| RefStoreError::Gone)??;
        Ok(Some(RefStore { requests, path }))
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `key` has a record: one LevelDB lookup (what start-up asks
    /// of each journal record).
    pub fn contains(&self, key: &[u8]) -> Result<bool, RefStoreError> {
        let (tx, rx) = mpsc::channel();
        self.requests
            .send(Request::Contains(key.to_vec(), tx))
            .map_err(|_| RefStoreError::Gone)?;
        rx.recv().map_err(|_| RefStoreError::Gone)?
    }

    /// The completed proof of `msg`, serialized as the reference serves
    /// it; `None` if the store has no record of `msg`.
    pub async fn proof(&self, msg: &[u8]) -> Result<Option<Vec<u8>>, RefStoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.requests
            .send(Request::Proof(msg.to_vec(), tx))
            .map_err(|_| RefStoreError::Gone)?;
        rx.await.map_err(|_| RefStoreError::Gone)?
    }
}

fn open_db(path: &Path) -> Result<DB, RefStoreError> {
    open_read_only(path, BLOCK_CACHE_BYTES)
}

/// Opens the LevelDB at `path` (the `db/` directory itself) through
/// [`env::OverlayEnv`], never writing to it, with a block cache of
/// `block_cache_bytes`: for a caller on its own thread (the importer),
/// which asks with [`get_record`].
pub fn open_read_only(path: &Path, block_cache_bytes: usize) -> Result<DB, RefStoreError> {
    // rusty-leveldb writes a compaction's tables under the canonical path
    // and reads tables under the path it was given: on disk the same
    // files, in the overlay's memory two names, so a compaction while
    // opening would leave its tables unreadable (and its inputs gone)
    // unless the two are one.
    let path = &path.canonicalize().map_err(|e| RefStoreError::Open {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let overlay = env::OverlayEnv::new();
    let seal = overlay.seal();
    let opt = Options {
        env: Rc::new(Box::new(overlay)),
        create_if_missing: false,
        paranoid_checks: true,
        block_cache_capacity_bytes: block_cache_bytes,
        ..Options::default()
    };
    let db = DB::open(path, opt).map_err(|e| RefStoreError::Open {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    seal.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(db)
}

/// The store's thread: answers until every [`RefStore`] is dropped.
fn run(mut db: DB, requests: mpsc::Receiver<Request>) {
    let mut cache = lru::LruCache::new(
        std::num::NonZeroUsize::new(RECORD_CACHE_ENTRIES).expect("a non-zero constant"),
    );
    while let Ok(req) = requests.recv() {
        match req {
            // Start-up's lookups of each journal record: not kept (each
            // commitment's own record is met once).
            Request::Contains(key, reply) => {
                let _ = reply.send(get_record(&mut db, &key).map(|v| v.is_some()));
            }
            Request::Proof(msg, reply) => {
                let mut records = Cached {
                    db: &mut db,
                    cache: &mut cache,
                };
                let _ = reply.send(proof(&mut records, &msg));
            }
        }
    }
}

/// Lookups through the thread's record cache ([`RECORD_CACHE_ENTRIES`]).
struct Cached<'a> {
    db: &'a mut DB,
    cache: &'a mut lru::LruCache<Vec<u8>, Vec<u8>>,
}

impl Records for Cached<'_> {
    fn record(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, RefStoreError> {
        if let Some(r) = self.cache.get(key) {
            return Ok(Some(r.clone()));
        }
        let r = get_record(self.db, key)?;
        if let Some(r) = &r {
            self.cache.put(key.to_vec(), r.clone());
        }
        Ok(r)
    }
}

/// One key's record, with LevelDB's errors (`DB::get` would drop them).
///
/// rusty-leveldb 4.0.2 panics on some damage instead of failing (a table
/// whose footer is gone trips an assertion when the table is opened): the
/// panic is caught and is an error for this key, like any read error. The
/// table is not cached after such a failure, so later lookups fail alike.
pub fn get_record(db: &mut DB, key: &[u8]) -> Result<Option<Vec<u8>>, RefStoreError> {
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let snapshot = db.get_snapshot();
        db.get_at(&snapshot, key)
            .map(|v| v.map(|b| b.to_vec()))
            .map_err(|e| e.to_string())
    }));
    let message = match read {
        Ok(Ok(value)) => return Ok(value),
        Ok(Err(message)) => message,
        Err(panic) => format!(
            "LevelDB failed on a damaged table: {}",
            panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned())
                .replace('\n', "; ")
        ),
    };
    Err(RefStoreError::Read {
        key: hex::encode(key),
        message,
    })
}

/// Whether a panic comes from inside rusty-leveldb (one [`get_record`]
/// turns into an error): a panic hook can leave such panics unprinted.
pub fn is_leveldb_panic(info: &std::panic::PanicHookInfo<'_>) -> bool {
    info.location()
        .is_some_and(|l| l.file().contains("rusty-leveldb"))
}

/// The file an operator may keep beside a reference calendar's journal
/// (PROTOCOL §3): a journal index, as decimal text, below which every
/// commitment is known to be in `db/`.
pub const KNOWN_GOOD_FILE: &str = "journal.known-good";

/// The journal index of `dir`'s [`KNOWN_GOOD_FILE`]: `Ok(None)` without
/// the file, `Err` (why, for the log) when it cannot be read as one number.
/// The reference's stamper starts its scan for pending commitments there;
/// so does our start-up, which then looks up only the records after it.
pub fn known_good(dir: &Path) -> Result<Option<u64>, String> {
    let path = dir.join(KNOWN_GOOD_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    // A journal index fits in 20 digits; anything longer is not one.
    let text = std::str::from_utf8(&text)
        .ok()
        .filter(|t| t.len() <= 64)
        .ok_or_else(|| format!("{}: not a decimal journal index", path.display()))?;
    text.trim().parse::<u64>().map(Some).map_err(|_| {
        format!(
            "{}: not a decimal journal index: {:?}",
            path.display(),
            text.trim()
        )
    })
}

/// Where node records come from: the store, or a map in tests.
pub trait Records {
    /// The record stored under `key`.
    fn record(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, RefStoreError>;
}

impl Records for std::collections::HashMap<Vec<u8>, Vec<u8>> {
    fn record(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, RefStoreError> {
        Ok(self.get(key).cloned())
    }
}

/// The serialized completed proof of `msg` from `records`; `None` if
/// `msg` has no record.
pub fn proof(records: &mut impl Records, msg: &[u8]) -> Result<Option<Vec<u8>>, RefStoreError> {
    let Some(ts) = build(records, msg)? else {
        return Ok(None);
    };
    let reaches_bitcoin = ts
        .all_attestations()
        .iter()
        .any(|(_, a)| matches!(a, Attestation::Bitcoin { .. }));
    if !reaches_bitcoin {
        return Err(RefStoreError::Incomplete {
            key: hex::encode(msg),
        });
    }
    ts.serialize().map(Some).map_err(|e| RefStoreError::Encode {
        key: hex::encode(msg),
        message: e.to_string(),
    })
}

/// The whole timestamp of `msg` as stored; `None` if `msg` has no record.
pub fn build(records: &mut impl Records, msg: &[u8]) -> Result<Option<Timestamp>, RefStoreError> {
    let Some(record) = records.record(msg)? else {
        return Ok(None);
    };
    let mut ts = Timestamp::new(msg).map_err(|e| RefStoreError::Op {
        key: hex::encode(msg),
        message: e.to_string(),
    })?;
    let mut budget = Budget {
        commitment: msg,
        nodes: 1,
    };
    fill(records, &mut ts, record, 0, &mut budget)?;
    Ok(Some(ts))
}

/// How much of the limits a proof being built has used.
struct Budget<'a> {
    commitment: &'a [u8],
    nodes: usize,
}

/// Fills `node` from its `record`, then each child from its own, depth
/// first.
fn fill(
    records: &mut impl Records,
    node: &mut Timestamp,
    record: Vec<u8>,
    depth: usize,
    budget: &mut Budget<'_>,
) -> Result<(), RefStoreError> {
    let key = || hex::encode(node.msg());
    let parsed =
        node::parse(&record).map_err(|source| RefStoreError::Record { key: key(), source })?;
    for a in parsed.attestations {
        node.add_attestation(a);
    }
    if !parsed.ops.is_empty() && depth + 1 >= MAX_DEPTH {
        return Err(RefStoreError::TooLarge {
            key: hex::encode(budget.commitment),
            what: "the depth limit",
        });
    }
    for op in parsed.ops {
        budget.nodes += 1;
        if budget.nodes > MAX_PROOF_NODES {
            return Err(RefStoreError::TooLarge {
                key: hex::encode(budget.commitment),
                what: "the node limit",
            });
        }
        let parent = hex::encode(node.msg());
        let child = node.add_op(op).map_err(|e| RefStoreError::Op {
            key: parent.clone(),
            message: e.to_string(),
        })?;
        let Some(child_record) = records.record(child.msg())? else {
            return Err(RefStoreError::Missing {
                key: parent,
                missing: hex::encode(child.msg()),
            });
        };
        fill(records, child, child_record, depth + 1, budget)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use ots_proof::attestation::TAG_BITCOIN;

    fn bitcoin_leaf() -> Vec<u8> {
        let mut rec = vec![1];
        rec.extend_from_slice(&TAG_BITCOIN);
        rec.extend_from_slice(&[1, 7, 0]);
        rec
    }

    #[test]
    fn follows_ops_to_a_bitcoin_attestation() {
        let msg = b"commitment".to_vec();
        let child = ots_proof::op::sha256(&msg).to_vec();
        let mut db = HashMap::new();
        db.insert(msg.clone(), vec![0, 1, 0x08]);
        db.insert(child, bitcoin_leaf());
        let bytes = proof(&mut db, &msg).unwrap().unwrap();
        let ts = Timestamp::deserialize(&bytes, &msg).unwrap();
        assert_eq!(ts.all_attestations().len(), 1);
        assert_eq!(proof(&mut db, b"other").unwrap(), None);
    }

    #[test]
    fn a_cycle_hits_the_depth_limit() {
        // reverse(reverse(m)) = m: two records that point at each other.
        let mut db = HashMap::new();
        db.insert(b"ab".to_vec(), vec![0, 1, 0xf2]);
        db.insert(b"ba".to_vec(), vec![0, 1, 0xf2]);
        assert!(matches!(
            proof(&mut db, b"ab"),
            Err(RefStoreError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_wide_tree_hits_the_node_limit() {
        // Two levels of 256 appends each, then Bitcoin leaves: 65,793
        // nodes, shallow, each a valid record.
        let mut wide = vec![0];
        ots_proof::codec::write_varuint(&mut wide, 256);
        for b in 0..=255u8 {
            wide.extend_from_slice(&[0xf0, 1, b]);
        }
        struct Fan(Vec<u8>);
        impl Records for Fan {
            fn record(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, RefStoreError> {
                Ok(Some(match key.len() {
                    0..=2 => self.0.clone(),
                    _ => bitcoin_leaf(),
                }))
            }
        }
        assert!(matches!(
            proof(&mut Fan(wide), b"x"),
            Err(RefStoreError::TooLarge {
                what: "the node limit",
                ..
            })
        ));
    }

    #[test]
    fn a_missing_child_is_damage_and_no_bitcoin_incomplete() {
        let mut db = HashMap::new();
        db.insert(b"m".to_vec(), vec![0, 1, 0x08]);
        let e = proof(&mut db, b"m").unwrap_err();
        assert!(matches!(e, RefStoreError::Missing { .. }) && !e.is_incomplete());
        let mut pending = vec![1];
        pending.extend_from_slice(&ots_proof::attestation::TAG_PENDING);
        pending.extend_from_slice(&[4, 3, b'a', b'.', b'b', 0]);
        db.insert(b"m".to_vec(), pending);
        let e = proof(&mut db, b"m").unwrap_err();
        assert!(matches!(e, RefStoreError::Incomplete { .. }) && e.is_incomplete());
        db.insert(b"m".to_vec(), vec![0, 1]);
        assert!(matches!(
            proof(&mut db, b"m"),
            Err(RefStoreError::Record { .. })
        ));
    }

    /// The fuzz target's seed corpus is real node records of the
    /// reference fixture: each parses and re-encodes to its own bytes (the
    /// reference writes canonical varuints), so `cargo fuzz run
    /// node_record` starts past the first bytes.
    #[test]
    fn the_fuzz_corpus_is_real_records() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/node_record");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            let record = node::parse(&bytes).unwrap();
            assert_eq!(record.encode(), bytes);
            n += 1;
        }
        assert!(n >= 30, "{n} records");
    }
}
