//! What the runner gathers for the stamper's actions, from the journal
//! and the node: a round's Merkle tip, its funding (wallet outputs, fee
//! estimate, change address, height), and a mined transaction's proofs,
//! built and handed to the proof sink.

use std::ops::Range;
use std::str::FromStr;

use bitcoin::{Address, ScriptBuf};
use ots_bitcoin::timestamp_from_block;

use crate::merkle_tip;
use crate::runner::{Runner, StepError};
use crate::stamper::Utxo;

impl Runner {
    pub(crate) fn tip_of(&self, covered: &[Range<u64>]) -> Result<[u8; 32], StepError> {
        let commitments = self
            .source
            .read(covered)
            .map_err(|e| StepError::Storage(e.to_string()))?;
        let bytes: Vec<&Vec<u8>> = commitments.iter().map(|(_, c)| c).collect();
        merkle_tip(&bytes)
            .ok_or_else(|| StepError::Storage("no commitments at the requested positions".into()))
    }

    pub(crate) async fn gather_funding(
        &mut self,
        covered: &[Range<u64>],
    ) -> Result<(Vec<Utxo>, Option<u64>, ScriptBuf, u64, [u8; 32]), StepError> {
        let tip = self.tip_of(covered)?;
        let unspent = self.rpc.list_unspent(0).await?;
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
        let estimate = self.rpc.estimate_smart_fee(self.config.conf_target).await?;
        // BTC/kvB → sat/kvB, rounded up.
        let rate = estimate
            .feerate
            .map(|r| (r * 1e8).ceil().clamp(0.0, 1e12) as u64);
        let change = self.rpc.raw_change_address().await?;
        let change = Address::from_str(&change)
            .map_err(|e| {
                StepError::Storage(format!(
                    "the wallet gave an unusable change address {change}: {e}"
                ))
            })?
            .assume_checked()
            .script_pubkey();
        let height = self.rpc.block_count().await?;
        Ok((utxos, rate, change, height, tip))
    }

    /// Stores the proofs of `mined`; returns how many and the block time.
    pub(crate) async fn complete(
        &self,
        mined: &crate::stamper::Mined,
    ) -> Result<(usize, u64), StepError> {
        let version = &mined.version;
        let block = self
            .rpc
            .block(&mined.block)
            .await?
            .ok_or_else(|| StepError::Storage(format!("block {} is gone", mined.block)))?;
        let tail = timestamp_from_block(&version.tip, version.txid, &block, mined.height)
            .map_err(|e| StepError::Storage(e.to_string()))?;
        let commitments = self
            .source
            .read(&version.ranges)
            .map_err(|e| StepError::Storage(e.to_string()))?;
        // The sink refuses commitments whose tree does not lead to the
        // tail's message, which is the version's tip.
        let count = commitments.len();
        self.sink
            .add_batch(commitments, tail)
            .map_err(StepError::Storage)?;
        Ok((count, u64::from(block.header.time)))
    }
}
