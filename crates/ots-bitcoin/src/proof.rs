//! The Bitcoin part of a proof: from the 32-byte tip committed in a
//! transaction's `OP_RETURN` output, through the transaction to its txid,
//! then up the block's merkle tree to a `BitcoinBlockHeaderAttestation`.
//!
//! Steps, as the reference builds them:
//!
//! 1. In the transaction serialized *without witness* (the form whose double
//!    SHA-256 is the txid), the tip sits between a prefix and a suffix:
//!    `prepend(prefix)`, `append(suffix)`, `sha256`, `sha256` gives the txid
//!    in internal byte order.
//! 2. Bitcoin's merkle tree pairs txids left to right with
//!    `sha256(sha256(left ‖ right))`; unlike OpenTimestamps' own trees, an odd
//!    level duplicates its last element. Each step is `append(right)` or
//!    `prepend(left)`, then `sha256`, `sha256`.
//! 3. The message reached is the block's merkle root, attested by
//!    `BitcoinBlockHeaderAttestation(height)`.

use bitcoin::consensus::encode::serialize;
use bitcoin::hashes::Hash;
use bitcoin::{Block, Transaction, Txid};
use ots_proof::{Attestation, Op, Timestamp};
use thiserror::Error;

/// Why the Bitcoin part of a proof cannot be built.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProofError {
    /// The tip does not occur in the transaction.
    #[error("the tip {tip} does not occur in transaction {txid}")]
    TipNotInTransaction {
        /// The tip, hex.
        tip: String,
        /// The transaction.
        txid: Txid,
    },
    /// The transaction is not in the block.
    #[error("transaction {0} is not in the block")]
    TransactionNotInBlock(Txid),
    /// The computed root does not match the block header's: the block is
    /// malformed (or this code is wrong), never a proof to hand out.
    #[error("computed merkle root {computed} differs from the header's {header}")]
    MerkleRootMismatch {
        /// What the steps give, hex (internal order).
        computed: String,
        /// What the header says, hex (internal order).
        header: String,
    },
    /// An operation exceeded a format limit (a transaction over 4 KB).
    #[error("proof step invalid: {0}")]
    Op(#[from] ots_proof::OpError),
}

/// The steps from `tip` to the txid of `tx`: prepend, append, sha256, sha256.
pub fn tip_to_txid_ops(tip: &[u8], tx: &Transaction) -> Result<Vec<Op>, ProofError> {
    // `serialize` of a Transaction includes the witness when there is one;
    // the txid commits to the legacy form, so strip witnesses first.
    let mut stripped = tx.clone();
    for input in &mut stripped.input {
        input.witness.clear();
    }
    let bytes = serialize(&stripped);
    let at = find(&bytes, tip).ok_or_else(|| ProofError::TipNotInTransaction {
        tip: hex::encode(tip),
        txid: tx.compute_txid(),
    })?;
    let (prefix, suffix) = (&bytes[..at], &bytes[at + tip.len()..]);
    let mut ops = Vec::with_capacity(4);
    // A tip at the very start or end would leave an empty argument, which the
    // format forbids; an OP_RETURN output is never there, but be exact.
    if !prefix.is_empty() {
        ops.push(Op::prepend(prefix.to_vec())?);
    }
    if !suffix.is_empty() {
        ops.push(Op::append(suffix.to_vec())?);
    }
    ops.extend([Op::Sha256, Op::Sha256]);
    Ok(ops)
}

/// The steps from the txid at `index` of `txids` to the merkle root, by
/// Bitcoin's rule (an odd level duplicates its last element).
pub fn txid_to_merkle_root_ops(txids: &[[u8; 32]], index: usize) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut level: Vec<[u8; 32]> = txids.to_vec();
    let mut i = index;
    while level.len() > 1 {
        if level.len() % 2 == 1 {
            let last = level[level.len() - 1];
            level.push(last);
        }
        if i % 2 == 0 {
            ops.push(Op::Append(level[i + 1].to_vec()));
        } else {
            ops.push(Op::Prepend(level[i - 1].to_vec()));
        }
        ops.extend([Op::Sha256, Op::Sha256]);
        level = level
            .chunks(2)
            .map(|pair| {
                let mut buf = [0u8; 64];
                buf[..32].copy_from_slice(&pair[0]);
                buf[32..].copy_from_slice(&pair[1]);
                bitcoin::hashes::sha256d::Hash::hash(&buf).to_byte_array()
            })
            .collect();
        i /= 2;
    }
    ops
}

/// The timestamp of `tip` through transaction `txid` of `block` (at
/// `height`) to the block's header. The result is checked: its last message
/// must be the header's merkle root.
pub fn timestamp_from_block(
    tip: &[u8],
    txid: Txid,
    block: &Block,
    height: u64,
) -> Result<Timestamp, ProofError> {
    let index = block
        .txdata
        .iter()
        .position(|tx| tx.compute_txid() == txid)
        .ok_or(ProofError::TransactionNotInBlock(txid))?;
    let mut ops = tip_to_txid_ops(tip, &block.txdata[index])?;
    let txids: Vec<[u8; 32]> = block
        .txdata
        .iter()
        .map(|tx| tx.compute_txid().to_byte_array())
        .collect();
    ops.extend(txid_to_merkle_root_ops(&txids, index));
    let mut timestamp = Timestamp::new(tip.to_vec())?;
    let end = timestamp.add_path(ops)?;
    let header_root = block.header.merkle_root.to_byte_array();
    if end.msg() != header_root {
        return Err(ProofError::MerkleRootMismatch {
            computed: hex::encode(end.msg()),
            header: hex::encode(header_root),
        });
    }
    end.add_attestation(Attestation::Bitcoin { height });
    Ok(timestamp)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::absolute::LockTime;
    use bitcoin::block::{Header, Version};
    use bitcoin::script::{Builder, PushBytesBuf};
    use bitcoin::transaction::Version as TxVersion;
    use bitcoin::{
        Amount, CompactTarget, OutPoint, ScriptBuf, Sequence, TxIn, TxMerkleNode, TxOut, Witness,
    };

    fn tx(tag: u8, tip: Option<[u8; 32]>) -> Transaction {
        let mut witness = Witness::new();
        witness.push([tag; 72]);
        let mut output = vec![TxOut {
            value: Amount::from_sat(1000 + u64::from(tag)),
            script_pubkey: ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([tag; 20])),
        }];
        if let Some(tip) = tip {
            let push = PushBytesBuf::try_from(tip.to_vec()).unwrap();
            output.push(TxOut {
                value: Amount::ZERO,
                script_pubkey: Builder::new()
                    .push_opcode(bitcoin::opcodes::all::OP_RETURN)
                    .push_slice(push)
                    .into_script(),
            });
        }
        Transaction {
            version: TxVersion::TWO,
            lock_time: LockTime::from_height(100).unwrap(),
            input: vec![TxIn {
                previous_output: OutPoint::new(Txid::from_byte_array([tag; 32]), 0),
                script_sig: ScriptBuf::new(),
                sequence: Sequence(0xffff_fffe),
                witness,
            }],
            output,
        }
    }

    fn block(txs: Vec<Transaction>) -> Block {
        let mut block = Block {
            header: Header {
                version: Version::TWO,
                prev_blockhash: bitcoin::BlockHash::all_zeros(),
                merkle_root: TxMerkleNode::all_zeros(),
                time: 1_700_000_000,
                bits: CompactTarget::from_consensus(0x207fffff),
                nonce: 0,
            },
            txdata: txs,
        };
        block.header.merkle_root = block.compute_merkle_root().unwrap();
        block
    }

    #[test]
    fn proof_reaches_the_merkle_root_at_every_position_and_size() {
        let tip = ots_proof::op::sha256(b"tip");
        for n in 1..=9u8 {
            for position in 0..n {
                let txs: Vec<_> = (0..n)
                    .map(|i| tx(i, (i == position).then_some(tip)))
                    .collect();
                let txid = txs[position as usize].compute_txid();
                let block = block(txs);
                let t = timestamp_from_block(&tip, txid, &block, 7).unwrap();
                let all = t.all_attestations();
                assert_eq!(all.len(), 1);
                assert_eq!(all[0].1, &Attestation::Bitcoin { height: 7 });
                let root = block.header.merkle_root.to_byte_array();
                assert_eq!(all[0].0, root.as_slice());
                let header = serialize(&block.header);
                assert_eq!(
                    ots_proof::verify::verify_bitcoin_header_bytes(all[0].0, &header),
                    Ok(1_700_000_000)
                );
            }
        }
    }

    #[test]
    fn txid_step_ignores_witness() {
        let tip = ots_proof::op::sha256(b"w");
        let t = tx(1, Some(tip));
        let ops = tip_to_txid_ops(&tip, &t).unwrap();
        let txid = ots_proof::verify::replay(&tip, &ops).unwrap();
        assert_eq!(txid, t.compute_txid().to_byte_array());
    }

    #[test]
    fn errors_are_specific() {
        let tip = ots_proof::op::sha256(b"absent");
        let t = tx(1, None);
        assert!(matches!(
            tip_to_txid_ops(&tip, &t),
            Err(ProofError::TipNotInTransaction { .. })
        ));
        let b = block(vec![tx(2, None)]);
        assert_eq!(
            timestamp_from_block(&tip, t.compute_txid(), &b, 1),
            Err(ProofError::TransactionNotInBlock(t.compute_txid()))
        );
    }
}
