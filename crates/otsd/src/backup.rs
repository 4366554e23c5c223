//! Backup chunks (`GET /experimental/backup/<n>`, PROTOCOL §2): the
//! completed proofs of 1000 consecutive journal commitments as a sorted
//! key-value list of proof nodes, the format the reference's backup
//! mirrors import into their LevelDB.

use std::collections::BTreeMap;

use ots_proof::codec::{write_varbytes, write_varuint};
use ots_proof::Timestamp;

use crate::journal::JournalReader;
use crate::store::{commitment_bytes, Store, StoreError};

/// Commitments per chunk (the reference's `PAGING`).
pub const BACKUP_CHUNK_COMMITMENTS: u64 = 1000;

/// Chunks built at once. A chunk is a thousand proof lookups and a merge,
/// 50 ms of a core from our store and 200 ms of the reference store's
/// thread in place; without a bound, clients asking for chunks in parallel
/// took the CPU (or that thread) from every other request (`GET
/// /timestamp` fell from 50,000/s to 900/s under 32 such clients). The
/// rest wait their turn, holding only their connection.
pub const CONCURRENT_BUILDS: usize = 1;

/// The node record of one proof node: `varuint #attestations`,
/// attestations (tag + varbytes payload), `varuint #ops`, ops (tag +
/// varbytes argument) without their children.
pub fn node_record(ts: &Timestamp) -> Vec<u8> {
    let mut out = Vec::new();
    write_varuint(&mut out, ts.attestations().len() as u64);
    for a in ts.attestations() {
        a.encode(&mut out);
    }
    write_varuint(&mut out, ts.ops().len() as u64);
    for (op, _) in ts.ops() {
        op.encode(&mut out);
    }
    out
}

/// Adds every node of `ts` to `map`, keyed by its message. Nodes with the
/// same message (shared parts of proofs) are merged.
fn collect(ts: &Timestamp, map: &mut BTreeMap<Vec<u8>, Timestamp>) {
    let mut stack = vec![ts];
    while let Some(node) = stack.pop() {
        let mut shallow = Timestamp::new(node.msg().to_vec()).expect("message already valid");
        for a in node.attestations() {
            shallow.add_attestation(a.clone());
        }
        for (op, child) in node.ops() {
            // A child of a valid node is valid.
            let _ = shallow.add_op(op.clone());
            stack.push(child);
        }
        match map.get_mut(node.msg()) {
            Some(existing) => {
                let _ = existing.merge(shallow);
            }
            None => {
                map.insert(node.msg().to_vec(), shallow);
            }
        }
    }
}

/// The journal commitments of chunk `n`, oldest first: `None` while the
/// journal holds fewer than all of them.
pub fn commitments(journal: &JournalReader, n: u64) -> std::io::Result<Option<Vec<Vec<u8>>>> {
    let Some(start) = n.checked_mul(BACKUP_CHUNK_COMMITMENTS) else {
        return Ok(None);
    };
    let records = journal.read_range(start, BACKUP_CHUNK_COMMITMENTS as usize)?;
    if records.len() as u64 != BACKUP_CHUNK_COMMITMENTS {
        return Ok(None);
    }
    Ok(Some(
        records
            .iter()
            .map(|r| commitment_bytes(r).to_vec())
            .collect(),
    ))
}

/// A chunk being put together: the nodes of the proofs found so far, and
/// the commitments whose proofs are not in our own store (a reference
/// calendar's `db/` served in place, an upstream's proof: the caller asks
/// whatever serves them, one place deciding what is complete).
pub struct Chunk {
    nodes: BTreeMap<Vec<u8>, Timestamp>,
    missing: Vec<Vec<u8>>,
}

impl Chunk {
    /// Every proof of `commitments` that our store holds.
    pub fn from_store(store: &Store, commitments: &[Vec<u8>]) -> Result<Chunk, StoreError> {
        let mut chunk = Chunk {
            nodes: BTreeMap::new(),
            missing: Vec::new(),
        };
        for c in commitments {
            match store.get(c)? {
                Some(ts) => collect(&ts, &mut chunk.nodes),
                None => chunk.missing.push(c.clone()),
            }
        }
        Ok(chunk)
    }

    /// The commitments without a proof in the store.
    pub fn missing(&self) -> &[Vec<u8>] {
        &self.missing
    }

    /// Adds a complete proof found elsewhere for one of [`Chunk::missing`].
    pub fn add(&mut self, ts: &Timestamp) {
        collect(ts, &mut self.nodes);
    }

    /// The chunk's bytes: every node, sorted by message, as varbytes
    /// (message) + varbytes (node record).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (msg, node) in &self.nodes {
            write_varbytes(&mut out, msg);
            write_varbytes(&mut out, &node_record(node));
        }
        out
    }
}

/// Chunk `n` from our own store alone: `None` while any of its 1000
/// commitments is not yet in the journal or has no proof in the store.
pub fn chunk(
    store: &Store,
    journal: &JournalReader,
    n: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(commitments) = commitments(journal, n)? else {
        return Ok(None);
    };
    let chunk = Chunk::from_store(store, &commitments)?;
    Ok(chunk.missing().is_empty().then(|| chunk.encode()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ots_proof::{Attestation, Op};

    #[test]
    fn node_records_follow_the_reference_layout() {
        let mut ts = Timestamp::new(vec![1; 32]).unwrap();
        ts.add_attestation(Attestation::pending("https://a.example").unwrap());
        ts.add_op(Op::Sha256)
            .unwrap()
            .add_attestation(Attestation::Bitcoin { height: 5 });
        let rec = node_record(&ts);
        let mut expect = vec![1u8];
        Attestation::pending("https://a.example")
            .unwrap()
            .encode(&mut expect);
        expect.extend_from_slice(&[1, 0x08]);
        assert_eq!(rec, expect);
        let mut map = BTreeMap::new();
        collect(&ts, &mut map);
        assert_eq!(map.len(), 2);
        let child = &map[&ots_proof::op::sha256(&[1; 32]).to_vec()];
        assert_eq!(node_record(child), {
            let mut v = vec![1u8];
            Attestation::Bitcoin { height: 5 }.encode(&mut v);
            v.push(0);
            v
        });
    }
}
