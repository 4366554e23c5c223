//! Block building and mining on the [`Chain`]: the next block from given
//! transactions or the mempool's best by ancestor fee rate, the fees it
//! collects for its coinbase, and mining blocks (`generatetoaddress`).

use std::collections::BTreeMap;

use bitcoin::{Amount, Block, BlockHash, OutPoint, ScriptBuf, Transaction};

use crate::chain::block::{self, COINBASE_RESERVED_WEIGHT, MAX_BLOCK_WEIGHT};
use crate::chain::node::Chain;
use crate::error::{Error, Result};

impl Chain {
    /// Fees a list of block transactions pays, spending the UTXO set and
    /// earlier transactions of the same list.
    fn fees_of(&self, txs: &[Transaction]) -> Result<Amount> {
        let mut created: BTreeMap<OutPoint, Amount> = BTreeMap::new();
        let mut fees = Amount::ZERO;
        for tx in txs {
            let mut value_in = Amount::ZERO;
            for i in &tx.input {
                let v = match self.state.coin(&i.previous_output) {
                    Some(c) => c.output.value,
                    None => created.remove(&i.previous_output).ok_or_else(|| {
                        Error::BlockInvalid("bad-txns-inputs-missingorspent".into())
                    })?,
                };
                value_in += v;
            }
            let out: Amount = tx.output.iter().map(|o| o.value).sum();
            fees += value_in
                .checked_sub(out)
                .ok_or_else(|| Error::BlockInvalid("bad-txns-in-belowout".into()))?;
            let txid = tx.compute_txid();
            for (vout, o) in tx.output.iter().enumerate() {
                created.insert(
                    OutPoint {
                        txid,
                        vout: vout as u32,
                    },
                    o.value,
                );
            }
        }
        Ok(fees)
    }

    /// Builds the next block paying `script`: the given transactions, or
    /// the mempool's best by ancestor fee rate. Does not submit it.
    pub fn build_block(&self, script: &ScriptBuf, txs: Option<Vec<Transaction>>) -> Result<Block> {
        let txs = txs.unwrap_or_else(|| {
            self.mempool
                .block_template(MAX_BLOCK_WEIGHT - COINBASE_RESERVED_WEIGHT)
        });
        let fees = self.fees_of(&txs)?;
        let tip = self.state.tip();
        let height = tip.height + 1;
        let mut time = (self.now() as u32).max(self.state.median_time_past() + 1);
        loop {
            let value = block::subsidy(height) + fees;
            let cb = block::coinbase_tx(height, script.clone(), value);
            let blk = block::assemble(tip.hash, time, cb, txs.clone());
            // Two identical templates (e.g. re-mining after invalidateblock in
            // the same second) would collide; roll the time like a miner.
            if self.state.entry(&blk.block_hash()).is_none() {
                return Ok(blk);
            }
            time += 1;
        }
    }

    /// Mines one block paying `script` and submits it.
    pub fn mine_block(
        &mut self,
        script: &ScriptBuf,
        txs: Option<Vec<Transaction>>,
    ) -> Result<BlockHash> {
        let blk = self.build_block(script, txs)?;
        self.submit_block(blk)
    }

    /// `generatetoaddress`: mines `n` blocks paying `script`.
    pub fn generate(&mut self, n: u32, script: &ScriptBuf) -> Result<Vec<BlockHash>> {
        (0..n).map(|_| self.mine_block(script, None)).collect()
    }
}
