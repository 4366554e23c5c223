//! Finding the reference's batches in its LevelDB and rebuilding each as
//! one of ours: the walk from each journal commitment along its proof, the
//! grouping of commitments by the node their proofs end in, and the check
//! that a group is exactly one batch of ours (its tree over
//! `sha256(commitment)` leaves, in journal order, is the one stored, node
//! for node, and its tail reaches Bitcoin).
//!
//! Why a walk per commitment and not a scan of the LevelDB: the keys are
//! hashes, so a scan meets a proof's nodes in random order and would have to
//! hold the whole store in memory to connect them (hundreds of millions of
//! nodes on a real calendar). The walk holds only the nodes of the few
//! batches still open ([`MAX_OPEN_GROUPS`]), and reads each node once: a
//! commitment's walk stops at the first node already walked (where its
//! path joins an earlier one), so a batch of `n` costs about `4n` lookups
//! (the commitment, its leaf, and per pair a concatenation and its hash)
//! plus its tail once.

use std::collections::VecDeque;

use ots_proof::timestamp::MAX_DEPTH;
use ots_proof::{Attestation, MerkleTree, Op, Timestamp};
use rustc_hash::FxHashMap;
use rusty_leveldb::DB;

use super::shape::{self, Leaves};
use crate::calendar::Commitment;
use crate::refstore::{self, get_record, node, Records, RefStoreError};
use crate::store::{commitment_bytes, leaf, CompletedBatch};

/// Batches whose commitments are still being gathered. The reference
/// stamps pending commitments in journal order, so a batch's commitments
/// are consecutive in the journal but for those it had already stamped;
/// a batch is complete once this many later ones have started.
pub const MAX_OPEN_GROUPS: usize = 4;
/// Nodes held for the open batches at most (about 200 bytes each): beyond
/// it the oldest open batch is closed early (a batch larger than this
/// cannot be gathered whole, and its commitments are reported).
pub const MAX_MEMO_NODES: usize = 4_000_000;

/// The record of a node whose only operation is `sha256`.
const SHA256_RECORD: [u8; 3] = [0, 1, 0x08];

/// A node walked: its record, and the batch whose walk met it first.
struct Node {
    record: Vec<u8>,
    group: u64,
}

/// A batch being gathered: its commitments in journal order.
pub struct Group {
    id: u64,
    /// `(journal position, record)`.
    pub members: Vec<(u64, Commitment)>,
    /// Found whole from its first commitment's path ([`shape`]): only
    /// that path's nodes were read, so the check is of its tail and of
    /// sample proofs, not node for node.
    whole: bool,
}

impl Group {
    /// The journal position of its first commitment.
    pub fn first(&self) -> u64 {
        self.members.first().map_or(u64::MAX, |m| m.0)
    }
}

/// What the walk from one commitment found.
pub enum Walked {
    /// The commitment has no record: not stamped by the reference.
    NotInDb,
    /// The same commitment bytes are already in an open batch.
    Duplicate,
    /// Added to an open batch.
    Grouped,
    /// The first commitment of a batch not met before (only when the
    /// walker finds batches whole): hand it to [`Walker::start`].
    Starts(Start),
}

/// The first commitment of a new batch and the path its walk read.
pub struct Start {
    position: u64,
    record: Commitment,
    /// `(message, record)` from the commitment to where the walk ended.
    path: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What [`Walker::start`] made of a new batch.
pub enum Started {
    /// Found whole: these many journal commitments from the first, to be
    /// [`Walker::check`]ed now.
    Whole(Group),
    /// Opened for the node-for-node walk of the commitments after it.
    Open,
}

/// The journal after a batch's first commitment, read ahead.
pub trait Lookahead: Leaves {
    /// The `n` journal records from the batch's first commitment on.
    fn records(&mut self, n: usize) -> anyhow::Result<Vec<Commitment>>;
}

/// A batch checked and rebuilt, ready for the store.
pub struct Checked {
    /// The batch.
    pub batch: CompletedBatch,
}

/// Why a batch cannot be imported, with its commitments.
pub struct Rejected {
    /// The commitments `(position, record)`.
    pub members: Vec<(u64, Commitment)>,
    /// Why, naming the key.
    pub reason: String,
}

/// Checks a Bitcoin attestation: the merkle root of the block at a height
/// (internal byte order), `None` if the chain has no such block.
pub trait Headers {
    /// The merkle root of the block at `height`.
    fn merkle_root(&mut self, height: u64) -> anyhow::Result<Option<[u8; 32]>>;
}

/// The walker: the LevelDB, the nodes of the open batches and the batches.
pub struct Walker {
    db: DB,
    memo: FxHashMap<Vec<u8>, Node>,
    groups: VecDeque<Group>,
    next_id: u64,
    /// Whether a new batch is first tried whole ([`shape`]) before it is
    /// walked node for node.
    whole: bool,
}

/// Lookups during a batch's check: walked nodes first, then the LevelDB.
struct MemoThenDb<'a> {
    memo: &'a FxHashMap<Vec<u8>, Node>,
    db: &'a mut DB,
}

impl Records for MemoThenDb<'_> {
    fn record(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, RefStoreError> {
        match self.memo.get(key) {
            Some(n) => Ok(Some(n.record.clone())),
            None => get_record(self.db, key),
        }
    }
}

impl Walker {
    /// A walker over the open LevelDB `db`; with `whole`, each new batch
    /// is first found whole from its first commitment's path.
    pub fn new(db: DB, whole: bool) -> Walker {
        Walker {
            db,
            memo: FxHashMap::default(),
            groups: VecDeque::new(),
            next_id: 0,
            whole,
        }
    }

    /// A new batch from its first commitment: found whole from the path
    /// when the journal after it holds the tree whose root the path
    /// passes, else opened for the node-for-node walk.
    pub fn start(&mut self, start: Start, ahead: &mut dyn Lookahead) -> anyhow::Result<Started> {
        let messages: Vec<Vec<u8>> = start.path.iter().map(|(m, _)| m.clone()).collect();
        // The path from the commitment: its own record first, then its
        // leaf's; the tree starts at the leaf.
        let n = shape::batch_size(&messages[1.min(messages.len())..], ahead)?;
        let id = self.next_id;
        self.next_id += 1;
        for (key, rec) in start.path {
            self.memo.insert(
                key,
                Node {
                    record: rec,
                    group: id,
                },
            );
        }
        match n {
            Some(n) => {
                let records = ahead.records(n)?;
                let members = (start.position..).zip(records).collect();
                Ok(Started::Whole(Group {
                    id,
                    members,
                    whole: true,
                }))
            }
            None => {
                self.groups.push_back(Group {
                    id,
                    members: vec![(start.position, start.record)],
                    whole: false,
                });
                Ok(Started::Open)
            }
        }
    }

    /// The journal position of the earliest commitment of an open batch.
    pub fn first_open(&self) -> Option<u64> {
        self.groups.iter().map(Group::first).min()
    }

    /// Whether a batch should be closed now (too many open, or too many
    /// nodes held).
    pub fn should_close(&self) -> bool {
        self.groups.len() > MAX_OPEN_GROUPS
            || (self.groups.len() > 1 && self.memo.len() > MAX_MEMO_NODES)
    }

    /// Removes the oldest open batch, if any (then [`Walker::check`] it).
    pub fn pop_oldest(&mut self) -> Option<Group> {
        self.groups.pop_front()
    }

    /// Walks the proof of the commitment at `position` from its node along
    /// single-operation nodes until a node already walked (it joins that
    /// batch) or a node that ends the chain (attestations, or other than
    /// one operation: it starts a new batch). An error names the key.
    pub fn walk(&mut self, position: u64, record: Commitment) -> Result<Walked, RefStoreError> {
        let c = commitment_bytes(&record);
        let mut msg = c.to_vec();
        let mut path: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let group = loop {
            if let Some(node) = self.memo.get(&msg) {
                if path.is_empty() {
                    return Ok(Walked::Duplicate);
                }
                break node.group;
            }
            let Some(rec) = get_record(&mut self.db, &msg)? else {
                return match path.last() {
                    None => Ok(Walked::NotInDb),
                    Some((key, _)) => Err(RefStoreError::Missing {
                        key: hex::encode(key),
                        missing: hex::encode(&msg),
                    }),
                };
            };
            let parsed = node::parse(&rec).map_err(|source| RefStoreError::Record {
                key: hex::encode(&msg),
                source,
            })?;
            if parsed.attestations.is_empty() && parsed.ops.len() == 1 {
                let next = parsed.ops[0].apply(&msg).map_err(|e| RefStoreError::Op {
                    key: hex::encode(&msg),
                    message: e.to_string(),
                })?;
                path.push((msg, rec));
                if path.len() >= MAX_DEPTH {
                    return Err(RefStoreError::TooLarge {
                        key: hex::encode(c),
                        what: "the depth limit",
                    });
                }
                msg = next;
            } else {
                // The end of the chain: a new batch.
                if self.whole {
                    path.push((msg, rec));
                    return Ok(Walked::Starts(Start {
                        position,
                        record,
                        path,
                    }));
                }
                let id = self.next_id;
                self.next_id += 1;
                self.groups.push_back(Group {
                    id,
                    members: Vec::new(),
                    whole: false,
                });
                path.push((msg, rec));
                break id;
            }
        };
        for (key, rec) in path {
            self.memo.insert(key, Node { record: rec, group });
        }
        let g = self
            .groups
            .iter_mut()
            .find(|g| g.id == group)
            .expect("a walked node belongs to an open batch");
        g.members.push((position, record));
        Ok(Walked::Grouped)
    }

    /// Checks a closed batch and forgets its nodes: its tree over its
    /// commitments is the one stored, node for node (each node holds
    /// exactly the operation our batch's path has there, so the proofs we
    /// serve are byte for byte the reference's), its tail reaches a Bitcoin
    /// attestation, and with `headers` each attestation's block has that
    /// merkle root. An `Err` is a failure to ask `headers` (the import
    /// stops: it can resume).
    pub fn check(
        &mut self,
        group: Group,
        headers: Option<&mut dyn Headers>,
    ) -> anyhow::Result<Result<Checked, Rejected>> {
        let result = self.check_inner(&group, headers);
        let id = group.id;
        self.memo.retain(|_, n| n.group != id);
        Ok(match result? {
            Ok(tail) => Ok(Checked {
                batch: CompletedBatch {
                    commitments: group.members,
                    tail,
                },
            }),
            Err(reason) => Err(Rejected {
                members: group.members,
                reason,
            }),
        })
    }

    fn check_inner(
        &mut self,
        group: &Group,
        headers: Option<&mut dyn Headers>,
    ) -> anyhow::Result<Result<Timestamp, String>> {
        let n = group.members.len();
        let Some(tree) = MerkleTree::new(group.members.iter().map(|(_, r)| leaf(r)).collect())
        else {
            return Ok(Err("a batch without commitments".into()));
        };
        let expect = |key: &[u8], want: &[u8]| -> Result<(), String> {
            match self.memo.get(key) {
                Some(node) if node.group == group.id && node.record == want => Ok(()),
                Some(node) if node.group == group.id => Err(format!(
                    "key {}: record {} where a batch of these {n} commitments has {}",
                    hex::encode(key),
                    hex::encode(&node.record),
                    hex::encode(want)
                )),
                _ => Err(format!(
                    "key {}: a node of the tree of these {n} commitments is not on their proofs \
                     (they are not one batch of the reference's)",
                    hex::encode(key)
                )),
            }
        };
        let check_tree = || -> Result<(), String> {
            for (_, r) in &group.members {
                expect(commitment_bytes(r), &SHA256_RECORD)?;
            }
            let levels = tree.levels();
            for level in &levels[..levels.len() - 1] {
                for pair in level.chunks(2) {
                    if let [left, right] = pair {
                        expect(left, &op_record(&Op::Append(right.to_vec())))?;
                        expect(right, &op_record(&Op::Prepend(left.to_vec())))?;
                        let mut cat = left.to_vec();
                        cat.extend_from_slice(right);
                        expect(&cat, &SHA256_RECORD)?;
                    }
                }
            }
            Ok(())
        };
        if group.whole {
            // The root is a node of the first commitment's path
            // ([`shape`]); the tree needs no other node of `db/`.
            if self
                .memo
                .get(tree.root().as_slice())
                .is_none_or(|n| n.group != group.id)
            {
                return Ok(Err(format!(
                    "key {}: the root of these {n} commitments is not on the first one's path",
                    hex::encode(tree.root())
                )));
            }
        } else if let Err(reason) = check_tree() {
            return Ok(Err(reason));
        }
        let root = tree.root();
        let mut records = MemoThenDb {
            memo: &self.memo,
            db: &mut self.db,
        };
        let tail = match refstore::build(&mut records, &root) {
            Ok(Some(tail)) => tail,
            Ok(None) => {
                return Ok(Err(format!(
                    "key {}: the root of these {n} commitments has no record",
                    hex::encode(root)
                )))
            }
            Err(e) => return Ok(Err(e.to_string())),
        };
        let bitcoin: Vec<(Vec<u8>, u64)> = tail
            .all_attestations()
            .into_iter()
            .filter_map(|(msg, a)| match a {
                Attestation::Bitcoin { height } => Some((msg.to_vec(), *height)),
                _ => None,
            })
            .collect();
        if bitcoin.is_empty() {
            return Ok(Err(format!(
                "key {}: the proof of these {n} commitments reaches no Bitcoin attestation",
                hex::encode(root)
            )));
        }
        if let Some(headers) = headers {
            for (msg, height) in &bitcoin {
                match headers.merkle_root(*height)? {
                    Some(m) if m.as_slice() == msg.as_slice() => {}
                    Some(m) => {
                        return Ok(Err(format!(
                            "key {}: Bitcoin attestation at height {height}, but that block's \
                             merkle root is {}",
                            hex::encode(msg),
                            hex::encode(m)
                        )))
                    }
                    None => {
                        return Ok(Err(format!(
                            "key {}: Bitcoin attestation at height {height}, a block the chain \
                             does not have",
                            hex::encode(msg)
                        )))
                    }
                }
            }
        }
        // Belt and braces: the first, middle and last commitment's proofs,
        // as our store will serve them, against the reference's bytes.
        for i in [0, n / 2, n - 1] {
            let (_, r) = &group.members[i];
            let c = commitment_bytes(r);
            let ours = ours(&tree, i, c, &tail)?;
            let theirs = refstore::proof(&mut records, c);
            match theirs {
                Ok(Some(theirs)) if theirs == ours => {}
                Ok(_) | Err(_) => {
                    return Ok(Err(format!(
                        "key {}: the proof rebuilt as our batch differs from the reference's",
                        hex::encode(c)
                    )))
                }
            }
        }
        Ok(Ok(tail))
    }
}

/// The bytes our store serves for leaf `i` of `tree`: `sha256`, the path
/// to the root, the tail.
fn ours(tree: &MerkleTree, i: usize, c: &[u8], tail: &Timestamp) -> anyhow::Result<Vec<u8>> {
    let mut ts = Timestamp::new(c.to_vec())?;
    let mut ops = vec![Op::Sha256];
    ops.extend(tree.path(i).unwrap_or_default());
    let end = ts.add_path(ops)?;
    end.merge(tail.clone())?;
    Ok(ts.serialize()?)
}

/// The record of a node whose only operation is `op`.
fn op_record(op: &Op) -> Vec<u8> {
    node::NodeRecord {
        attestations: Vec::new(),
        ops: vec![op.clone()],
    }
    .encode()
}
