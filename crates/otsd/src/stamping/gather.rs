//! What the runner gathers for the stamper's actions, from the journal and
//! the node: a round's Merkle tip, its funding (wallet outputs, fee
//! estimate, change address, height), the fresh fee estimate of a bump,
//! and a mined transaction's proofs, built and stored (or withdrawn, after
//! a reorg deeper than the confirmations). The journal's
//! records go to the store as they are (one commitment form), and their
//! leaves follow the store's one rule, [`crate::store::leaf`].

use std::ops::Range;
use std::str::FromStr;

use bitcoin::{Address, ScriptBuf};
use ots_bitcoin::timestamp_from_block;
use ots_proof::{MerkleTree, Timestamp};
use ots_stamper::stamper::{FundingOffer, Mined, Reorged, Utxo};

use super::node::{ChainSource, Wallet};
use super::runner::{Runner, StepError};
use crate::calendar::Commitment;
use crate::journal::JournalReader;
use crate::status::PendingIndex;
use crate::store::{commitment_bytes, leaf, CompletedBatch, Store, StoreError};

/// Journal records read per request.
pub const READ_CHUNK: usize = 65_536;

/// The journal's records at `ranges`, in order, each with its position.
pub fn read_commitments(
    journal: &JournalReader,
    ranges: &[Range<u64>],
) -> Result<Vec<(u64, Commitment)>, StepError> {
    let mut out = Vec::new();
    for range in ranges {
        let mut at = range.start;
        while at < range.end {
            let want = usize::try_from(range.end - at).map_or(READ_CHUNK, |n| n.min(READ_CHUNK));
            let records = journal.read_range(at, want).map_err(StepError::Journal)?;
            if records.is_empty() {
                return Err(StepError::MissingRecord(at));
            }
            for record in records {
                out.push((at, record));
                at += 1;
            }
        }
    }
    Ok(out)
}

/// The Merkle tip of a round: its commitments' leaves ([`leaf`]) in
/// journal order, merkled by OpenTimestamps' rule. `None` for none.
pub fn merkle_tip(commitments: &[(u64, Commitment)]) -> Option<[u8; 32]> {
    MerkleTree::new(commitments.iter().map(|(_, c)| leaf(c)).collect()).map(|t| t.root())
}

/// Stores the proofs of `commitments` (in leaf order; `tail` is the proof
/// from their Merkle root to the block) as one batch, durably, then takes
/// them out of the pending index; returns the batch's id. The store
/// refuses, storing nothing, records that are not the journal's or a tail
/// not rooted at their tree.
pub fn store_batch(
    store: &Store,
    pending: &PendingIndex,
    commitments: Vec<(u64, Commitment)>,
    tail: Timestamp,
) -> Result<u64, StoreError> {
    let batch = CompletedBatch { commitments, tail };
    let id = store.add_batch(batch.clone())?;
    for (index, record) in &batch.commitments {
        pending.remove_at(record, *index);
    }
    Ok(id)
}

impl<N: ChainSource + Wallet> Runner<N> {
    /// Withdraws the proofs of reorged-out `r` from the store and puts its
    /// commitments back in the pending index (once each), so that GET
    /// answers "pending" until they are stamped again.
    pub(super) fn withdraw(&self, r: &Reorged) -> Result<usize, StepError> {
        self.store.withdraw_batch(r.batch)?;
        let commitments = read_commitments(&self.journal, &r.ranges)?;
        for (position, record) in &commitments {
            if self.pending.lookup(commitment_bytes(record)) != Some(*position) {
                self.pending.insert(record, *position);
            }
        }
        Ok(commitments.len())
    }

    pub(super) fn tip_of(&self, covered: &[Range<u64>]) -> Result<[u8; 32], StepError> {
        merkle_tip(&read_commitments(&self.journal, covered)?).ok_or(StepError::NothingToStamp)
    }

    /// The node's fee estimate for `--btc-conf-target`, sat/kvB; `None`
    /// when it has none (too little data).
    pub(super) async fn fee_estimate(&self) -> Result<Option<u64>, StepError> {
        let estimate = self
            .node
            .estimate_smart_fee(self.config.conf_target)
            .await?;
        Ok(estimate.sat_per_kvb())
    }

    pub(super) async fn gather_funding(
        &mut self,
        covered: &[Range<u64>],
    ) -> Result<FundingOffer, StepError> {
        let tip = self.tip_of(covered)?;
        let unspent = self.node.list_unspent(0).await?;
        let utxos = unspent
            .into_iter()
            .filter(|u| u.spendable && u.safe)
            .filter_map(|u| {
                Some(Utxo {
                    outpoint: bitcoin::OutPoint::new(u.txid, u.vout),
                    value: u.amount,
                    script: ScriptBuf::from_hex(&u.script_pubkey).ok()?,
                    confirmations: u.confirmations,
                })
            })
            .collect();
        let feerate = self.fee_estimate().await?;
        let address = self.node.raw_change_address().await?;
        let change = match Address::from_str(&address) {
            Ok(a) => a.assume_checked().script_pubkey(),
            Err(source) => return Err(StepError::BadChangeAddress { address, source }),
        };
        let height = self.node.block_count().await?;
        Ok(FundingOffer {
            utxos,
            feerate,
            change,
            height,
            tip,
        })
    }

    /// Stores the proofs of `mined`; returns how many, the block time and
    /// the store's batch id.
    pub(super) async fn complete(&self, mined: &Mined) -> Result<(usize, u64, u64), StepError> {
        let version = &mined.version;
        let block = self
            .node
            .block(&mined.block)
            .await?
            .ok_or(StepError::MissingBlock(mined.block))?;
        let tail = timestamp_from_block(&version.tip, version.txid, &block, mined.height).map_err(
            |source| StepError::Proof {
                txid: version.txid,
                source,
            },
        )?;
        let commitments = read_commitments(&self.journal, &version.ranges)?;
        // Checked here as well as by the store (which refuses such a batch):
        // this failure is for good, and the runner sets the batch aside.
        if merkle_tip(&commitments) != Some(version.tip) {
            return Err(StepError::JournalChanged { txid: version.txid });
        }
        let count = commitments.len();
        let batch = store_batch(&self.store, &self.pending, commitments, tail)?;
        Ok((count, u64::from(block.header.time), batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{COMMITMENT_LEN, MAC_LEN};

    #[test]
    fn the_tip_is_the_merkle_root_of_the_commitments_sha256() {
        let mut legacy = [3u8; COMMITMENT_LEN];
        legacy[COMMITMENT_LEN - MAC_LEN..].fill(0);
        let records = vec![
            (0, [1u8; COMMITMENT_LEN]),
            (1, [2u8; COMMITMENT_LEN]),
            (7, legacy),
        ];
        // Written out: a record without MAC is known by its 36 bytes.
        let leaves = vec![
            ots_proof::op::sha256(&[1u8; COMMITMENT_LEN]),
            ots_proof::op::sha256(&[2u8; COMMITMENT_LEN]),
            ots_proof::op::sha256(&legacy[..COMMITMENT_LEN - MAC_LEN]),
        ];
        assert_eq!(
            merkle_tip(&records),
            Some(MerkleTree::new(leaves).unwrap().root())
        );
        assert_eq!(merkle_tip(&[]), None);
    }
}
