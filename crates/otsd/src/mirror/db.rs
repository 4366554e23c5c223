//! The mirror's store, one `redb` database ([`MIRROR_FILE`] in the
//! mirror's directory): the node records of every chunk it took, keyed by
//! (calendar, chunk, message), so that a chunk's records sit together on
//! disk and a chunk is written as one run of pages (messages are hashes:
//! keyed by message alone, each chunk would rewrite thousands of random
//! B-tree pages through copy-on-write). Tables:
//!
//! * `calendars`: URL → calendar id;
//! * `progress`: calendar id → the next chunk wanted (chunks `0..next`
//!   are held);
//! * `nodes`: (calendar id, chunk, message) → node record (PROTOCOL §3),
//!   all its operations and attestations;
//! * `index`: commitment (a chunk's root) → the (calendar id, chunk)s
//!   holding its proof (more than one when two calendars, or a calendar
//!   and its mirror, hold it: the served proof merges them, the smallest
//!   first and the others while the whole fits in what a client reads, so
//!   that a calendar padding another's commitments cannot make them
//!   unreadable);
//! * `sequence`: this mirror's own chunk number → (calendar id, chunk),
//!   in the order chunks were stored, which `GET /experimental/backup/<n>`
//!   serves so that mirrors can chain;
//! * `meta`: `"format"` → [`MIRROR_FORMAT_VERSION`].
//!
//! A chunk's nodes, its index entries, its sequence number and the
//! calendar's progress are written in one transaction, committed durably:
//! a chunk is held whole or not at all, and only when `progress` says it
//! is the next one, so it is stored exactly once whatever crashes.
//!
//! # Integrity
//!
//! As in the proof store (`crate::store`), redb does not check pages on
//! reads, so every value but the format ends in a [`CHECKSUM_LEN`]-byte
//! checksum over the table, the key and the value; a value failing it is
//! [`MirrorStoreError::Corrupt`] (a 500), never a proof. Eight bytes are
//! enough to catch disk damage and keep the per-node overhead small; like
//! the store's, the checksum does not guard against someone who can write
//! the file. A proof is rebuilt by following each operation's result to
//! the next key of the same chunk: a missing node, a record that does not
//! parse, a proof over [`MAX_PROOF_NODES`] or [`MAX_DEPTH`], or one that
//! reaches no Bitcoin attestation is an error, never a wrong proof.

use std::path::{Path, PathBuf};

use ots_proof::op::sha256;
use ots_proof::timestamp::MAX_DEPTH;
use ots_proof::{Attestation, Timestamp};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::chunk::{Chunk, MAX_PROOF_NODES};
use crate::refstore::node;

/// The most bytes a proof merged from several chunks may have: what a
/// client reads of a reply.
pub const MAX_SERVED_LEN: usize = ots_calendar::MAX_REPLY_LEN;

/// Name of the mirror's database in its directory.
pub const MIRROR_FILE: &str = "mirror.redb";
/// The format this build writes and reads.
pub const MIRROR_FORMAT_VERSION: u64 = 1;
/// redb's page cache: small, so a mirror of a large calendar stays within
/// a modest RSS (the OS page cache does the rest).
pub const MIRROR_CACHE_BYTES: usize = 32 << 20;
/// Bytes of the checksum ending each value.
pub const CHECKSUM_LEN: usize = 8;
/// What every checksum hashes first.
const CHECKSUM_DOMAIN: &[u8] = b"otsd mirror record\0";

const CALENDARS: TableDefinition<&str, &[u8]> = TableDefinition::new("calendars");
const PROGRESS: TableDefinition<u32, &[u8]> = TableDefinition::new("progress");
const NODES: TableDefinition<(u32, u64, &[u8]), &[u8]> = TableDefinition::new("nodes");
const INDEX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("index");
const SEQUENCE: TableDefinition<u64, &[u8]> = TableDefinition::new("sequence");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const FORMAT_KEY: &str = "format";

/// Bytes of one (calendar id, chunk) reference.
const REF_LEN: usize = 12;
/// The most chunks indexed as holding one commitment; a later chunk
/// holding it is stored (and served as one of our own chunks) but not
/// indexed for it. Honest copies are a few (a calendar and its mirrors);
/// without a bound, a calendar serving the same chunk under every number
/// would make each `GET` of its commitments read one more copy per chunk.
pub const MAX_INDEXED_COPIES: usize = 16;

/// Errors of the mirror's store.
#[derive(Debug, thiserror::Error)]
pub enum MirrorStoreError {
    /// The database failed while doing `op`.
    #[error("mirror store: {op}: {source}")]
    Db {
        /// What the store was doing.
        op: &'static str,
        /// redb's error.
        #[source]
        source: Box<redb::Error>,
    },
    /// The file will not open.
    #[error("mirror store {}: unreadable: {why}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A format this build does not know.
    #[error("mirror store {}: unsupported format version {found} (this build reads {MIRROR_FORMAT_VERSION})", path.display())]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u64,
    },
    /// Stored data fails its checksum or does not make a proof.
    #[error("mirror store: corrupt: {0}")]
    Corrupt(String),
    /// A chunk offered out of order.
    #[error("mirror store: calendar {calendar}: chunk {got} offered, {expected} expected")]
    OutOfOrder {
        /// The calendar id.
        calendar: u32,
        /// The next chunk wanted.
        expected: u64,
        /// The chunk offered.
        got: u64,
    },
}

fn db<E: Into<redb::Error>>(op: &'static str) -> impl FnOnce(E) -> MirrorStoreError {
    move |e| MirrorStoreError::Db {
        op,
        source: Box::new(e.into()),
    }
}

fn checksum(table: &str, key: &[u8], value: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut buf =
        Vec::with_capacity(CHECKSUM_DOMAIN.len() + table.len() + key.len() + value.len() + 2);
    buf.extend_from_slice(CHECKSUM_DOMAIN);
    buf.extend_from_slice(table.as_bytes());
    buf.push(0);
    ots_proof::codec::write_varbytes(&mut buf, key);
    buf.extend_from_slice(value);
    let mut out = [0; CHECKSUM_LEN];
    out.copy_from_slice(&sha256(&buf)[..CHECKSUM_LEN]);
    out
}

/// `value` followed by its checksum.
fn seal(table: &str, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = value.to_vec();
    out.extend_from_slice(&checksum(table, key, value));
    out
}

/// The value of a sealed `stored`, checked.
fn unseal<'a>(table: &str, key: &[u8], stored: &'a [u8]) -> Result<&'a [u8], MirrorStoreError> {
    let bad = || {
        MirrorStoreError::Corrupt(format!(
            "{table} value of key {} fails its checksum",
            hex::encode(key)
        ))
    };
    if stored.len() < CHECKSUM_LEN {
        return Err(bad());
    }
    let (value, sum) = stored.split_at(stored.len() - CHECKSUM_LEN);
    if checksum(table, key, value) != sum {
        return Err(bad());
    }
    Ok(value)
}

/// The key bytes the checksum of a `nodes` value covers.
fn node_key(cal: u32, chunk: u64, msg: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(REF_LEN + msg.len());
    k.extend_from_slice(&cal.to_be_bytes());
    k.extend_from_slice(&chunk.to_be_bytes());
    k.extend_from_slice(msg);
    k
}

fn parse_ref(b: &[u8]) -> (u32, u64) {
    let mut c = [0; 4];
    let mut n = [0; 8];
    c.copy_from_slice(&b[..4]);
    n.copy_from_slice(&b[4..REF_LEN]);
    (u32::from_be_bytes(c), u64::from_be_bytes(n))
}

fn u64_of(b: &[u8], what: &str) -> Result<u64, MirrorStoreError> {
    let a: [u8; 8] = b
        .try_into()
        .map_err(|_| MirrorStoreError::Corrupt(format!("{what}: {} bytes, not 8", b.len())))?;
    Ok(u64::from_be_bytes(a))
}

/// The outcome of [`MirrorStore::store_chunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored now, as this mirror's own chunk `seq`.
    New {
        /// Its number in this mirror's own sequence.
        seq: u64,
    },
    /// Already held (a retry after a commit whose answer was lost).
    AlreadyHeld,
}

/// The mirror's store.
#[derive(Debug)]
pub struct MirrorStore {
    db: Database,
    path: PathBuf,
}

impl MirrorStore {
    /// Opens (or creates) `dir/mirror.redb`.
    pub fn open(dir: &Path) -> Result<MirrorStore, MirrorStoreError> {
        let path = dir.join(MIRROR_FILE);
        std::fs::create_dir_all(dir).map_err(|e| MirrorStoreError::Unreadable {
            path: path.clone(),
            why: format!("creating its directory: {e}"),
        })?;
        let opened = std::panic::catch_unwind(|| {
            Database::builder()
                .set_cache_size(MIRROR_CACHE_BYTES)
                .create(&path)
        });
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(e)) => {
                return Err(MirrorStoreError::Unreadable {
                    path,
                    why: e.to_string(),
                })
            }
            Err(_) => {
                return Err(MirrorStoreError::Unreadable {
                    path,
                    why: "redb panicked opening it (truncated or damaged?)".into(),
                })
            }
        };
        let store = MirrorStore { db, path };
        store.init()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the tables and checks the format.
    fn init(&self) -> Result<(), MirrorStoreError> {
        let txn = self.db.begin_write().map_err(db("initialising"))?;
        {
            let mut meta = txn.open_table(META).map_err(db("initialising"))?;
            let found = meta
                .get(FORMAT_KEY)
                .map_err(db("reading the format"))?
                .map(|v| v.value());
            match found {
                None => {
                    meta.insert(FORMAT_KEY, MIRROR_FORMAT_VERSION)
                        .map_err(db("writing the format"))?;
                }
                Some(MIRROR_FORMAT_VERSION) => {}
                Some(found) => {
                    return Err(MirrorStoreError::UnsupportedFormat {
                        path: self.path.clone(),
                        found,
                    })
                }
            }
            txn.open_table(CALENDARS).map_err(db("initialising"))?;
            txn.open_table(PROGRESS).map_err(db("initialising"))?;
            txn.open_table(NODES).map_err(db("initialising"))?;
            txn.open_table(INDEX).map_err(db("initialising"))?;
            txn.open_table(SEQUENCE).map_err(db("initialising"))?;
        }
        txn.commit().map_err(db("initialising"))
    }

    /// The id of the calendar at `url`, given one the first time.
    pub fn calendar_id(&self, url: &str) -> Result<u32, MirrorStoreError> {
        let txn = self.db.begin_write().map_err(db("adding a calendar"))?;
        let id = {
            let mut cals = txn.open_table(CALENDARS).map_err(db("adding a calendar"))?;
            let found = match cals.get(url).map_err(db("reading calendars"))? {
                Some(v) => Some(u64_of(
                    unseal("calendars", url.as_bytes(), v.value())?,
                    "calendar id",
                )?),
                None => None,
            };
            match found {
                Some(id) => u32::try_from(id)
                    .map_err(|_| MirrorStoreError::Corrupt(format!("calendar id {id}")))?,
                None => {
                    let id = u32::try_from(cals.len().map_err(db("counting calendars"))?)
                        .map_err(|_| MirrorStoreError::Corrupt("too many calendars".into()))?;
                    let v = seal("calendars", url.as_bytes(), &u64::from(id).to_be_bytes());
                    cals.insert(url, v.as_slice())
                        .map_err(db("adding a calendar"))?;
                    id
                }
            }
        };
        txn.commit().map_err(db("adding a calendar"))?;
        Ok(id)
    }

    /// The next chunk wanted of calendar `cal` (chunks below it are held).
    pub fn next_chunk(&self, cal: u32) -> Result<u64, MirrorStoreError> {
        let txn = self.db.begin_read().map_err(db("reading progress"))?;
        let t = txn.open_table(PROGRESS).map_err(db("reading progress"))?;
        read_progress(&t, cal)
    }

    /// Stores checked chunk `n` of calendar `cal` with its progress, in
    /// one durable transaction; only the next chunk wanted is taken.
    pub fn store_chunk(&self, cal: u32, n: u64, chunk: &Chunk) -> Result<Stored, MirrorStoreError> {
        let stored = self.store_chunks(cal, n, std::slice::from_ref(chunk))?;
        Ok(stored[0])
    }

    /// Stores checked chunks `first..` of calendar `cal`, each with its
    /// progress, in one durable transaction (one fsync for several chunks
    /// that arrived together): each is taken only if it is the next one
    /// wanted, and all or none of them are stored.
    pub fn store_chunks(
        &self,
        cal: u32,
        first: u64,
        chunks: &[Chunk],
    ) -> Result<Vec<Stored>, MirrorStoreError> {
        let txn = self.db.begin_write().map_err(db("storing a chunk"))?;
        let mut out = Vec::with_capacity(chunks.len());
        {
            let mut progress = txn.open_table(PROGRESS).map_err(db("storing a chunk"))?;
            let mut nodes = txn.open_table(NODES).map_err(db("storing a chunk"))?;
            let mut index = txn.open_table(INDEX).map_err(db("storing a chunk"))?;
            let mut sequence = txn.open_table(SEQUENCE).map_err(db("storing a chunk"))?;
            for (k, chunk) in chunks.iter().enumerate() {
                let n = first + k as u64;
                let expected = read_progress(&progress, cal)?;
                if n < expected {
                    out.push(Stored::AlreadyHeld);
                    continue;
                }
                if n > expected {
                    return Err(MirrorStoreError::OutOfOrder {
                        calendar: cal,
                        expected,
                        got: n,
                    });
                }
                for (msg, record) in &chunk.nodes {
                    let v = seal("nodes", &node_key(cal, n, msg), record);
                    nodes
                        .insert((cal, n, msg.as_slice()), v.as_slice())
                        .map_err(db("storing a node"))?;
                }
                let mut r = [0u8; REF_LEN];
                r[..4].copy_from_slice(&cal.to_be_bytes());
                r[4..].copy_from_slice(&n.to_be_bytes());
                let mut unindexed = 0usize;
                for root in &chunk.roots {
                    let mut refs = match index
                        .get(root.as_slice())
                        .map_err(db("reading the index"))?
                    {
                        Some(v) => unseal("index", root, v.value())?.to_vec(),
                        None => Vec::new(),
                    };
                    if refs.chunks(REF_LEN).any(|x| x == r) {
                        continue;
                    }
                    if refs.len() / REF_LEN >= MAX_INDEXED_COPIES {
                        unindexed += 1;
                        continue;
                    }
                    refs.extend_from_slice(&r);
                    let v = seal("index", root, &refs);
                    index
                        .insert(root.as_slice(), v.as_slice())
                        .map_err(db("storing the index"))?;
                }
                if unindexed > 0 {
                    tracing::warn!(calendar = cal, chunk = n, commitments = unindexed, max = MAX_INDEXED_COPIES, "commitments already held by as many chunks as are served: stored, not indexed again");
                }
                let seq = match sequence.last().map_err(db("reading the sequence"))? {
                    Some((k, _)) => k.value() + 1,
                    None => 0,
                };
                let v = seal("sequence", &seq.to_be_bytes(), &r);
                sequence
                    .insert(seq, v.as_slice())
                    .map_err(db("storing the sequence"))?;
                let v = seal("progress", &cal.to_be_bytes(), &(n + 1).to_be_bytes());
                progress
                    .insert(cal, v.as_slice())
                    .map_err(db("storing progress"))?;
                out.push(Stored::New { seq });
            }
        }
        txn.commit().map_err(db("committing chunks"))?;
        Ok(out)
    }

    /// How many chunks this mirror holds (its own sequence's length).
    pub fn own_chunks(&self) -> Result<u64, MirrorStoreError> {
        let txn = self.db.begin_read().map_err(db("reading the sequence"))?;
        let t = txn
            .open_table(SEQUENCE)
            .map_err(db("reading the sequence"))?;
        t.len().map_err(db("counting chunks"))
    }

    /// This mirror's own chunk `seq`, in the backup chunk format (sorted
    /// by message, as the calendar serves it); `None` if not held.
    pub fn own_chunk(&self, seq: u64) -> Result<Option<Vec<u8>>, MirrorStoreError> {
        let txn = self.db.begin_read().map_err(db("reading a chunk"))?;
        let sequence = txn.open_table(SEQUENCE).map_err(db("reading a chunk"))?;
        let Some(v) = sequence.get(seq).map_err(db("reading the sequence"))? else {
            return Ok(None);
        };
        let r = unseal("sequence", &seq.to_be_bytes(), v.value())?;
        if r.len() != REF_LEN {
            return Err(MirrorStoreError::Corrupt(format!("sequence entry {seq}")));
        }
        let (cal, n) = parse_ref(r);
        let nodes = txn.open_table(NODES).map_err(db("reading a chunk"))?;
        let mut out = Vec::new();
        let end = n.checked_add(1).map_or((cal + 1, 0), |m| (cal, m));
        let range = nodes
            .range((cal, n, &[][..])..(end.0, end.1, &[][..]))
            .map_err(db("reading a chunk"))?;
        for item in range {
            let (k, v) = item.map_err(db("reading a chunk"))?;
            let (_, _, msg) = k.value();
            let record = unseal("nodes", &node_key(cal, n, msg), v.value())?;
            ots_proof::codec::write_varbytes(&mut out, msg);
            ots_proof::codec::write_varbytes(&mut out, record);
        }
        if out.is_empty() {
            return Err(MirrorStoreError::Corrupt(format!(
                "own chunk {seq} (calendar {cal}, chunk {n}) has no nodes"
            )));
        }
        Ok(Some(out))
    }

    /// The completed proof of `commitment`, merged over the chunks that
    /// hold it: the smallest proof, then each other one, smallest first,
    /// while the whole stays within [`MAX_SERVED_LEN`] bytes; `None` if no
    /// chunk holds it.
    pub fn proof(&self, commitment: &[u8]) -> Result<Option<Timestamp>, MirrorStoreError> {
        let txn = self.db.begin_read().map_err(db("reading a proof"))?;
        let index = txn.open_table(INDEX).map_err(db("reading a proof"))?;
        let Some(v) = index.get(commitment).map_err(db("reading the index"))? else {
            return Ok(None);
        };
        let refs = unseal("index", commitment, v.value())?.to_vec();
        if refs.is_empty() || refs.len() % REF_LEN != 0 {
            return Err(MirrorStoreError::Corrupt(format!(
                "index entry of {}",
                hex::encode(commitment)
            )));
        }
        let nodes = txn.open_table(NODES).map_err(db("reading a proof"))?;
        let mut proofs: Vec<(usize, Timestamp)> = Vec::new();
        for r in refs.chunks(REF_LEN) {
            let (cal, n) = parse_ref(r);
            let mut ts = Timestamp::new(commitment)
                .map_err(|e| MirrorStoreError::Corrupt(format!("commitment: {e}")))?;
            let mut budget = 1usize;
            fill(&nodes, cal, n, &mut ts, 0, &mut budget)?;
            let len = ts
                .serialize()
                .map_err(|e| MirrorStoreError::Corrupt(format!("serializing: {e}")))?
                .len();
            proofs.push((len, ts));
        }
        proofs.sort_by_key(|(len, _)| *len);
        let mut proofs = proofs.into_iter();
        let (_, mut ts) = proofs.next().expect("at least one reference");
        for (_, other) in proofs {
            let mut candidate = ts.clone();
            candidate
                .merge(other)
                .map_err(|e| MirrorStoreError::Corrupt(format!("merging proofs: {e}")))?;
            match candidate.serialize() {
                Ok(bytes) if bytes.len() <= MAX_SERVED_LEN => ts = candidate,
                // Debug only: this is on every GET of the commitment.
                _ => {
                    tracing::debug!(commitment = %hex::encode(commitment), "a mirrored proof does not fit in the served proof: left out")
                }
            }
        }
        let complete = ts
            .all_attestations()
            .iter()
            .any(|(_, a)| matches!(a, Attestation::Bitcoin { .. }));
        if !complete {
            return Err(MirrorStoreError::Corrupt(format!(
                "proof of {} reaches no Bitcoin attestation",
                hex::encode(commitment)
            )));
        }
        Ok(Some(ts))
    }

    /// [`MirrorStore::proof`], serialized as `GET /timestamp` serves it.
    pub fn proof_serialized(&self, commitment: &[u8]) -> Result<Option<Vec<u8>>, MirrorStoreError> {
        match self.proof(commitment)? {
            None => Ok(None),
            Some(ts) => ts
                .serialize()
                .map(Some)
                .map_err(|e| MirrorStoreError::Corrupt(format!("serializing: {e}"))),
        }
    }
}

fn read_progress(
    t: &impl ReadableTable<u32, &'static [u8]>,
    cal: u32,
) -> Result<u64, MirrorStoreError> {
    match t.get(cal).map_err(db("reading progress"))? {
        None => Ok(0),
        Some(v) => u64_of(
            unseal("progress", &cal.to_be_bytes(), v.value())?,
            "progress",
        ),
    }
}

/// Fills `node` from its record in chunk (`cal`, `n`), then its children,
/// depth first, within the limits.
fn fill(
    nodes: &impl ReadableTable<(u32, u64, &'static [u8]), &'static [u8]>,
    cal: u32,
    n: u64,
    node: &mut Timestamp,
    depth: usize,
    budget: &mut usize,
) -> Result<(), MirrorStoreError> {
    let key = node_key(cal, n, node.msg());
    let record = {
        let Some(v) = nodes
            .get((cal, n, node.msg()))
            .map_err(db("reading a node"))?
        else {
            return Err(MirrorStoreError::Corrupt(format!(
                "node {} of calendar {cal} chunk {n} is missing",
                hex::encode(node.msg())
            )));
        };
        let record = unseal("nodes", &key, v.value())?;
        node::parse(record).map_err(|e| {
            MirrorStoreError::Corrupt(format!("node {}: {e}", hex::encode(node.msg())))
        })?
    };
    for a in record.attestations {
        node.add_attestation(a);
    }
    if !record.ops.is_empty() && depth + 1 >= MAX_DEPTH {
        return Err(MirrorStoreError::Corrupt(
            "proof over the depth limit".into(),
        ));
    }
    for op in record.ops {
        *budget += 1;
        if *budget > MAX_PROOF_NODES {
            return Err(MirrorStoreError::Corrupt(
                "proof over the node limit".into(),
            ));
        }
        let child = node
            .add_op(op)
            .map_err(|e| MirrorStoreError::Corrupt(format!("operation: {e}")))?;
        fill(nodes, cal, n, child, depth + 1, budget)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::chunk;
    use ots_proof::codec::write_varbytes;
    use ots_proof::Op;
    use std::collections::BTreeMap;

    /// A one-commitment chunk attested at `height`.
    fn one(c: &[u8], height: u64) -> (Chunk, Vec<u8>) {
        let leaf = sha256(c).to_vec();
        let mut bytes = Vec::new();
        let mut put = |k: &[u8], rec: node::NodeRecord| {
            write_varbytes(&mut bytes, k);
            write_varbytes(&mut bytes, &rec.encode());
        };
        let (a, b) = if c < leaf.as_slice() {
            ((c, true), (leaf.as_slice(), false))
        } else {
            ((leaf.as_slice(), false), (c, true))
        };
        for (k, is_root) in [a, b] {
            put(
                k,
                match is_root {
                    true => node::NodeRecord {
                        attestations: vec![],
                        ops: vec![Op::Sha256],
                    },
                    false => node::NodeRecord {
                        attestations: vec![Attestation::Bitcoin { height }],
                        ops: vec![],
                    },
                },
            );
        }
        (chunk::parse(&bytes).unwrap(), bytes)
    }

    #[test]
    fn a_chunk_is_stored_once_in_order_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (c0, b0) = one(b"first commitment", 1);
        let (c1, _) = one(b"second commitment", 2);
        {
            let s = MirrorStore::open(dir.path()).unwrap();
            let cal = s.calendar_id("http://a").unwrap();
            assert_eq!(s.calendar_id("http://b").unwrap(), cal + 1);
            assert!(matches!(
                s.store_chunk(cal, 1, &c1),
                Err(MirrorStoreError::OutOfOrder {
                    expected: 0,
                    got: 1,
                    ..
                })
            ));
            assert_eq!(s.store_chunk(cal, 0, &c0).unwrap(), Stored::New { seq: 0 });
            assert_eq!(s.store_chunk(cal, 0, &c0).unwrap(), Stored::AlreadyHeld);
            assert_eq!(s.next_chunk(cal).unwrap(), 1);
        }
        let s = MirrorStore::open(dir.path()).unwrap();
        let cal = s.calendar_id("http://a").unwrap();
        assert_eq!(cal, 0);
        assert_eq!(s.next_chunk(cal).unwrap(), 1);
        assert_eq!(s.own_chunks().unwrap(), 1);
        assert_eq!(s.own_chunk(0).unwrap(), Some(b0));
        assert_eq!(s.own_chunk(1).unwrap(), None);
        let ts = s.proof(b"first commitment").unwrap().unwrap();
        assert_eq!(
            ts.all_attestations()[0].1,
            &Attestation::Bitcoin { height: 1 }
        );
        assert!(s.proof(b"second commitment").unwrap().is_none());
    }

    /// `c`'s proof as a hostile calendar may chunk it: the honest path
    /// (`sha256`, Bitcoin at `height`) plus four padding branches, each an
    /// `append` of 3000 bytes ending in an unknown attestation: over
    /// 12,000 bytes served.
    fn padded(c: &[u8], height: u64) -> Chunk {
        let mut nodes: BTreeMap<Vec<u8>, node::NodeRecord> = BTreeMap::new();
        let mut ops = vec![Op::Sha256];
        nodes.insert(
            sha256(c).to_vec(),
            node::NodeRecord {
                attestations: vec![Attestation::Bitcoin { height }],
                ops: vec![],
            },
        );
        for i in 0..4u8 {
            let op = Op::Append(vec![i; 3000]);
            let unknown = Attestation::decode(&mut ots_proof::codec::Reader::new(
                &[[9u8; 8].as_slice(), &[1, 0]].concat(),
            ))
            .unwrap();
            nodes.insert(
                op.apply(c).unwrap(),
                node::NodeRecord {
                    attestations: vec![unknown],
                    ops: vec![],
                },
            );
            ops.push(op);
        }
        nodes.insert(
            c.to_vec(),
            node::NodeRecord {
                attestations: vec![],
                ops,
            },
        );
        let mut bytes = Vec::new();
        for (k, rec) in &nodes {
            write_varbytes(&mut bytes, k);
            write_varbytes(&mut bytes, &rec.encode());
        }
        chunk::parse(&bytes).unwrap()
    }

    /// A calendar holding another's commitment in its chunks, padded,
    /// does not make the served proof of it unreadable: the smallest proof
    /// comes first and the others are merged only while the whole fits in
    /// what a client reads.
    #[test]
    fn a_padded_proof_from_another_calendar_does_not_crowd_out_the_honest_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = MirrorStore::open(dir.path()).unwrap();
        let c = b"a commitment both calendars hold";
        let (hostile, honest) = (
            s.calendar_id("http://hostile").unwrap(),
            s.calendar_id("http://honest").unwrap(),
        );
        // The hostile calendar's chunk is stored first.
        s.store_chunk(hostile, 0, &padded(c, 7)).unwrap();
        let alone = s.proof_serialized(c).unwrap().unwrap();
        assert!(alone.len() > ots_calendar::MAX_REPLY_LEN, "{}", alone.len());
        s.store_chunk(honest, 0, &one(c, 7).0).unwrap();
        let served = s.proof_serialized(c).unwrap().unwrap();
        assert!(
            served.len() <= ots_calendar::MAX_REPLY_LEN,
            "{} bytes served",
            served.len()
        );
        let ts = Timestamp::deserialize(&served, c).unwrap();
        assert_eq!(
            ts.all_attestations(),
            vec![(sha256(c).as_slice(), &Attestation::Bitcoin { height: 7 })]
        );
    }

    #[test]
    fn a_commitment_is_indexed_for_a_bounded_number_of_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let s = MirrorStore::open(dir.path()).unwrap();
        let cal = s.calendar_id("http://same-chunk-every-time").unwrap();
        let (c0, bytes) = one(b"a commitment", 1);
        let n = MAX_INDEXED_COPIES as u64 + 4;
        for k in 0..n {
            assert_eq!(s.store_chunk(cal, k, &c0).unwrap(), Stored::New { seq: k });
        }
        let txn = s.db.begin_read().unwrap();
        let index = txn.open_table(INDEX).unwrap();
        let v = index.get(b"a commitment".as_slice()).unwrap().unwrap();
        let refs = unseal("index", b"a commitment", v.value()).unwrap().len() / REF_LEN;
        assert_eq!(refs, MAX_INDEXED_COPIES);
        // Every chunk is still held and served as our own.
        assert_eq!(s.own_chunks().unwrap(), n);
        assert_eq!(s.own_chunk(n - 1).unwrap(), Some(bytes));
        assert!(s.proof(b"a commitment").unwrap().is_some());
    }

    #[test]
    fn a_value_failing_its_checksum_is_corrupt() {
        let sealed = seal("nodes", b"key", b"record");
        assert_eq!(unseal("nodes", b"key", &sealed).unwrap(), b"record");
        assert!(unseal("nodes", b"other key", &sealed).is_err());
        assert!(unseal("index", b"key", &sealed).is_err());
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert!(matches!(
            unseal("nodes", b"key", &flipped),
            Err(MirrorStoreError::Corrupt(_))
        ));
        assert!(unseal("nodes", b"key", &sealed[..3]).is_err());
    }
}
