//! Bounded resources on hostile proofs: the size limit of a proof file,
//! read before the file is, and a pass over the encoding that estimates
//! what decoding it would hold in memory, without decoding it.
//!
//! ots-proof's decoder checks every length before allocating, but a valid
//! proof can still cost far more memory than its size: each node holds
//! its whole message (up to 4096 bytes) and a node can cost one input
//! byte, so the decoded tree may be about 4,100 times the file (see
//! `docs/proof-format.md`, "Memory bounds when decoding"). [`estimate`]
//! walks the encoding holding only message *lengths*, so `ots` can refuse
//! a proof whose tree would not fit in [`decode_budget`] before building
//! it. It parses as ots-proof does (the same tags, limits and depth), but
//! only to count: whatever it cannot parse is left to the decoder, which
//! stops at the same byte with its own error.

use ots_proof::codec::Reader;
use ots_proof::op::{MAX_HEXLIFY_MSG_LENGTH, MAX_MSG_LENGTH};
use ots_proof::timestamp::MAX_DEPTH;
use ots_proof::{Attestation, Op};

/// The largest proof file `ots` reads: 1 MiB. Real proofs weigh a few KB
/// (the largest example, four calendars' worth, is 3.8 KB; a proof grows
/// by a Merkle path of some 34 bytes a level and a transaction of a few
/// hundred bytes per attestation), so no real proof comes near it, while
/// the decoded tree of anything under it stays within [`decode_budget`].
pub const MAX_PROOF_FILE_BYTES: u64 = 1 << 20;

/// What one decoded node costs beyond its message: the `Timestamp`
/// itself (72 bytes), its slot in its parent's B-tree map (the `Op` key
/// and the node, with the map's slack) and the allocator's rounding;
/// rounded up so the estimate errs high.
pub const NODE_COST: usize = 256;

/// What one decoded attestation costs: the first in a node allocates a
/// B-tree leaf of eleven 40-byte slots (about 460 bytes); rounded up.
pub const ATTESTATION_COST: usize = 512;

/// The decoded tree may cost this many times the proof's size (beside
/// [`BASE_BUDGET`]). Real proofs cost about ten times their size.
pub const BUDGET_FACTOR: usize = 64;

/// What any proof may cost decoded, however small: 1 MiB, so that a short
/// proof with a few long messages (a transaction of 4 KB) is never refused.
pub const BASE_BUDGET: usize = 1 << 20;

/// The most a proof of `len` bytes may cost decoded.
pub fn decode_budget(len: usize) -> usize {
    BASE_BUDGET.saturating_add(len.saturating_mul(BUDGET_FACTOR))
}

/// What [`estimate`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimate {
    /// Decoding costs at most this many bytes (or stops at a malformed
    /// byte before then, with the decoder's own error).
    Within(usize),
    /// Decoding would cost more than the budget: the walk stopped there.
    OverBudget,
}

/// Estimates what decoding the detached proof `bytes` would hold: the sum
/// over nodes of the message length and [`NODE_COST`], plus the arguments,
/// and [`ATTESTATION_COST`] and the encoded size of each attestation.
/// Stops at `budget`.
pub fn estimate(bytes: &[u8], budget: usize) -> Estimate {
    let mut walk = Walk { cost: 0, budget };
    let mut reader = Reader::new(bytes);
    // The header: magic, version, hash op, digest. Malformed headers are
    // the decoder's to report (and cost nothing).
    let header = ots_proof::detached::MAGIC.len() + 2;
    let Ok(head) = reader.read_bytes(header.min(bytes.len())) else {
        return Estimate::Within(0);
    };
    let Some(hash) = head
        .last()
        .and_then(|tag| ots_proof::HashOp::from_tag(*tag))
    else {
        return Estimate::Within(0);
    };
    if reader.read_bytes(hash.digest_len()).is_err() {
        return Estimate::Within(0);
    }
    match walk.node(&mut reader, hash.digest_len(), 1) {
        Err(Stop::OverBudget) => Estimate::OverBudget,
        Ok(()) | Err(Stop::Malformed) => Estimate::Within(walk.cost),
    }
}

enum Stop {
    OverBudget,
    Malformed,
}

struct Walk {
    cost: usize,
    budget: usize,
}

impl Walk {
    fn add(&mut self, bytes: usize) -> Result<(), Stop> {
        self.cost = self.cost.saturating_add(bytes);
        if self.cost > self.budget {
            Err(Stop::OverBudget)
        } else {
            Ok(())
        }
    }

    /// One node whose message is `len` bytes, as `Timestamp::decode_node`
    /// reads it.
    fn node(&mut self, reader: &mut Reader<'_>, len: usize, depth: usize) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop::Malformed);
        }
        self.add(NODE_COST + len)?;
        loop {
            let mut tag = reader.read_u8().map_err(|_| Stop::Malformed)?;
            let more = tag == 0xff;
            if more {
                tag = reader.read_u8().map_err(|_| Stop::Malformed)?;
            }
            let at = reader.offset() - 1;
            if tag == 0x00 {
                let start = reader.offset();
                Attestation::decode(reader).map_err(|_| Stop::Malformed)?;
                self.add(ATTESTATION_COST + reader.offset() - start)?;
            } else {
                let op = Op::decode_after_tag(reader, tag, at).map_err(|_| Stop::Malformed)?;
                let result = result_len(&op, len).ok_or(Stop::Malformed)?;
                self.add(op.argument().map_or(0, <[u8]>::len))?;
                self.node(reader, result, depth + 1)?;
            }
            if !more {
                return Ok(());
            }
        }
    }
}

/// The length of `op` applied to a message of `len` bytes, `None` where
/// `Op::apply` refuses.
fn result_len(op: &Op, len: usize) -> Option<usize> {
    match op {
        Op::Append(arg) | Op::Prepend(arg) => {
            let out = len + arg.len();
            (len <= MAX_MSG_LENGTH && out <= MAX_MSG_LENGTH).then_some(out)
        }
        Op::Reverse => (len > 0 && len <= MAX_MSG_LENGTH).then_some(len),
        Op::Hexlify => (len > 0 && len <= MAX_HEXLIFY_MSG_LENGTH).then_some(2 * len),
        other => {
            let hash = other.hash_op()?;
            (len <= MAX_MSG_LENGTH).then_some(hash.digest_len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples() -> Vec<(String, Vec<u8>)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../ots-proof/tests/data/examples");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "ots") {
                out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
        assert!(out.len() > 5);
        out
    }

    #[test]
    fn real_proofs_fit_far_within_the_budget() {
        for (name, bytes) in examples() {
            assert!(bytes.len() < 4096, "{name}");
            let Estimate::Within(cost) = estimate(&bytes, decode_budget(bytes.len())) else {
                panic!("{name} over budget");
            };
            // Every node counted: at least NODE_COST a node.
            let proof = ots_proof::DetachedTimestampFile::deserialize(&bytes).unwrap();
            assert!(cost >= NODE_COST * proof.timestamp().all_attestations().len());
            assert!(cost < BASE_BUDGET / 4, "{name}: {cost}");
        }
    }

    /// What the estimate must count at least: each node's message and
    /// [`NODE_COST`] (the fuzz target `bounds` checks the same).
    fn floor(t: &ots_proof::Timestamp) -> usize {
        NODE_COST + t.msg().len() + t.ops().map(|(_, c)| floor(c)).sum::<usize>()
    }

    #[test]
    fn never_counts_less_than_the_decoded_tree() {
        for (name, bytes) in examples() {
            // The proof and every one-byte change of it that still decodes.
            for at in 0..bytes.len() {
                for flip in [0u8, 0x01, 0x80] {
                    let mut changed = bytes.clone();
                    changed[at] ^= flip;
                    let Ok(proof) = ots_proof::DetachedTimestampFile::deserialize(&changed) else {
                        continue;
                    };
                    let Estimate::Within(cost) = estimate(&changed, usize::MAX) else {
                        panic!("{name}: no budget to exceed");
                    };
                    assert!(cost >= floor(proof.timestamp()), "{name} at {at} ^ {flip}");
                }
            }
        }
    }

    #[test]
    fn the_budget_stops_the_walk() {
        let (_, bytes) = examples().into_iter().next().unwrap();
        assert_eq!(estimate(&bytes, NODE_COST), Estimate::OverBudget);
    }

    #[test]
    fn malformed_and_truncated_input_is_left_to_the_decoder() {
        for (_, bytes) in examples() {
            for cut in 0..bytes.len() {
                // Never panics, never claims more than the budget.
                assert!(matches!(
                    estimate(&bytes[..cut], decode_budget(cut)),
                    Estimate::Within(_)
                ));
            }
        }
        assert_eq!(estimate(b"", 0), Estimate::Within(0));
        assert_eq!(estimate(&[0xff; 100], 0), Estimate::Within(0));
    }
}
