//! Block acceptance and reorganisation on [`ChainState`]: Core's
//! context-free and contextual checks when a block arrives, connecting and
//! disconnecting blocks against the UTXO set (with undo data), moving the
//! active chain to the most-work valid tip, and `invalidateblock` /
//! `reconsiderblock`.

use std::sync::Arc;

use bitcoin::blockdata::script::Builder;
use bitcoin::{Amount, Block, BlockHash, OutPoint};

use crate::chain::block::{self, COINBASE_MATURITY, MEDIAN_TIME_SPAN};
use crate::chain::chainstate::{BlockEntry, ChainChange, ChainState, Coin, Undo};
use crate::error::{Error, Result};
use crate::script::verify;

impl ChainState {
    fn compute_median_time(&self, prev: &BlockHash, own_time: u32) -> u32 {
        let mut times = vec![own_time];
        let mut cursor = *prev;
        while times.len() < MEDIAN_TIME_SPAN {
            let Some(e) = self.entries.get(&cursor) else {
                break;
            };
            times.push(e.block.header.time);
            if e.height == 0 {
                break;
            }
            cursor = e.block.header.prev_blockhash;
        }
        times.sort_unstable();
        times[times.len() / 2]
    }

    /// Adds a block to the tree after Core's context-free and header checks,
    /// then moves the active chain to the most-work valid tip.
    pub fn add_block(&mut self, block: Block) -> Result<(BlockHash, ChainChange)> {
        let hash = block.block_hash();
        if self.entries.contains_key(&hash) {
            return Err(Error::DuplicateBlock(hash));
        }
        let prev = self
            .entries
            .get(&block.header.prev_blockhash)
            .ok_or_else(|| Error::BlockInvalid("prev-blk-not-found".into()))?;
        block::check_block(&block).map_err(Error::BlockInvalid)?;
        if block.header.time <= prev.median_time {
            return Err(Error::BlockInvalid("time-too-old".into()));
        }
        let (height, chainwork, failed) = (
            prev.height + 1,
            prev.chainwork + block.header.work(),
            prev.failed,
        );
        let expected = Builder::new().push_int(i64::from(height)).into_script();
        if !block.txdata[0].input[0]
            .script_sig
            .as_bytes()
            .starts_with(expected.as_bytes())
        {
            return Err(Error::BlockInvalid("bad-cb-height".into()));
        }
        let median_time = self.compute_median_time(&block.header.prev_blockhash, block.header.time);
        let entry = BlockEntry {
            block: Arc::new(block),
            hash,
            height,
            chainwork,
            median_time,
            invalid: false,
            failed,
            reject_reason: None,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.children
            .entry(entry.block.header.prev_blockhash)
            .or_default()
            .push(hash);
        self.entries.insert(hash, entry);
        let tip_work = self.tip().chainwork;
        let mut change = ChainChange::default();
        // The active tip is always the most-work valid block, so only a new
        // block with more work can displace it.
        if !failed && chainwork > tip_work {
            self.activate_best(&mut change);
        }
        if let Some(reason) = self
            .entries
            .get(&hash)
            .and_then(|e| e.reject_reason.clone())
        {
            return Err(Error::BlockInvalid(reason));
        }
        Ok((hash, change))
    }

    /// `invalidateblock`: marks the block and its descendants invalid and
    /// reorganises away from them.
    pub fn invalidate(&mut self, hash: &BlockHash) -> Result<ChainChange> {
        let e = self
            .entries
            .get_mut(hash)
            .ok_or(Error::BlockNotFound(*hash))?;
        if e.height == 0 {
            return Err(Error::BlockInvalid(
                "genesis block cannot be invalidated".into(),
            ));
        }
        e.invalid = true;
        self.recompute_failed();
        let mut change = ChainChange::default();
        self.activate_best(&mut change);
        Ok(change)
    }

    /// `reconsiderblock`: clears invalid marks on the block, its ancestors
    /// and descendants (Core's `ResetBlockFailureFlags`) and reorganises to
    /// the most-work valid tip.
    pub fn reconsider(&mut self, hash: &BlockHash) -> Result<ChainChange> {
        if !self.entries.contains_key(hash) {
            return Err(Error::BlockNotFound(*hash));
        }
        let mut stack = vec![*hash];
        while let Some(h) = stack.pop() {
            if let Some(e) = self.entries.get_mut(&h) {
                e.invalid = false;
                e.reject_reason = None;
            }
            stack.extend(self.children(&h).iter().copied());
        }
        let mut cursor = *hash;
        while let Some(e) = self.entries.get_mut(&cursor) {
            e.invalid = false;
            e.reject_reason = None;
            if e.height == 0 {
                break;
            }
            cursor = e.block.header.prev_blockhash;
        }
        self.recompute_failed();
        let mut change = ChainChange::default();
        self.activate_best(&mut change);
        Ok(change)
    }

    /// Blocks explicitly marked invalid (persisted so restarts keep them).
    pub fn invalid_blocks(&self) -> Vec<BlockHash> {
        self.entries
            .values()
            .filter(|e| e.invalid)
            .map(|e| e.hash)
            .collect()
    }

    fn recompute_failed(&mut self) {
        let mut order: Vec<(u32, BlockHash)> =
            self.entries.values().map(|e| (e.height, e.hash)).collect();
        order.sort_unstable();
        for (_, h) in order {
            let parent_failed = {
                let e = &self.entries[&h];
                e.height > 0
                    && self
                        .entries
                        .get(&e.block.header.prev_blockhash)
                        .is_some_and(|p| p.failed)
            };
            if let Some(e) = self.entries.get_mut(&h) {
                e.failed = e.invalid || parent_failed;
            }
        }
    }

    fn best_candidate(&self) -> BlockHash {
        self.entries
            .values()
            .filter(|e| !e.failed)
            .max_by(|a, b| a.chainwork.cmp(&b.chainwork).then(b.seq.cmp(&a.seq)))
            .map_or(self.active[0], |e| e.hash)
    }

    /// Reorganises to the best candidate; a block that fails to connect is
    /// marked invalid and the search repeats.
    fn activate_best(&mut self, change: &mut ChainChange) {
        loop {
            let target = self.best_candidate();
            let mut branch = Vec::new();
            let mut cursor = target;
            while !self.is_active(&cursor) {
                branch.push(cursor);
                cursor = self.entries[&cursor].block.header.prev_blockhash;
            }
            let fork_height = self.entries[&cursor].height;
            while self.height() > fork_height {
                let removed = self.disconnect_tip();
                change.disconnected.push(removed);
            }
            let mut failed = false;
            for h in branch.into_iter().rev() {
                match self.connect(&h) {
                    Ok(()) => change.connected.push(self.entries[&h].block.clone()),
                    Err(reason) => {
                        tracing::warn!(block = %h, %reason, "block failed to connect");
                        if let Some(e) = self.entries.get_mut(&h) {
                            e.invalid = true;
                            e.reject_reason = Some(reason);
                        }
                        self.recompute_failed();
                        failed = true;
                        break;
                    }
                }
            }
            if !failed {
                return;
            }
        }
    }

    /// Connects `hash` on top of the active tip: Core's `ConnectBlock`
    /// checks (inputs exist, maturity, amounts, scripts, coinbase value).
    fn connect(&mut self, hash: &BlockHash) -> Result<(), String> {
        let entry = self.entries[hash].clone();
        let height = entry.height;
        let mut spent: Undo = Vec::new();
        let mut created: Vec<OutPoint> = Vec::new();
        let result = self.apply_block(&entry.block, height, &mut spent, &mut created);
        if let Err(reason) = result {
            for op in created {
                self.utxo.remove(&op);
            }
            for (op, coin) in spent {
                self.utxo.insert(op, coin);
            }
            return Err(reason);
        }
        for (i, tx) in entry.block.txdata.iter().enumerate() {
            self.tx_index.insert(tx.compute_txid(), (*hash, i));
        }
        self.undo.insert(*hash, spent);
        self.active.push(*hash);
        Ok(())
    }

    fn apply_block(
        &mut self,
        block: &Block,
        height: u32,
        spent: &mut Undo,
        created: &mut Vec<OutPoint>,
    ) -> Result<(), String> {
        let mut fees = Amount::ZERO;
        for (i, tx) in block.txdata.iter().enumerate() {
            let txid = tx.compute_txid();
            if i > 0 {
                let mut prevouts = Vec::with_capacity(tx.input.len());
                let mut value_in = Amount::ZERO;
                for input in &tx.input {
                    let coin = self
                        .utxo
                        .remove(&input.previous_output)
                        .ok_or("bad-txns-inputs-missingorspent")?;
                    let premature = coin.is_coinbase && height - coin.height < COINBASE_MATURITY;
                    value_in += coin.output.value;
                    prevouts.push(coin.output.clone());
                    spent.push((input.previous_output, coin));
                    if premature {
                        return Err("bad-txns-premature-spend-of-coinbase".into());
                    }
                }
                let value_out: Amount = tx.output.iter().map(|o| o.value).sum();
                if value_out > value_in {
                    return Err("bad-txns-in-belowout".into());
                }
                fees += value_in - value_out;
                verify::verify_tx(tx, &prevouts).map_err(|(_, f)| {
                    format!("mandatory-script-verify-flag-failed ({})", f.message)
                })?;
                let lock_ok = !tx.is_lock_time_enabled()
                    || tx.lock_time.is_satisfied_by(
                        bitcoin::absolute::Height::from_consensus(height)
                            .unwrap_or(bitcoin::absolute::Height::ZERO),
                        bitcoin::absolute::Time::from_consensus(self.tip().median_time)
                            .unwrap_or(bitcoin::absolute::Time::MIN),
                    );
                if !lock_ok {
                    return Err("bad-txns-nonfinal".into());
                }
            }
            for (vout, out) in tx.output.iter().enumerate() {
                if out.script_pubkey.is_op_return() {
                    continue;
                }
                let op = OutPoint {
                    txid,
                    vout: vout as u32,
                };
                self.utxo.insert(
                    op,
                    Coin {
                        output: out.clone(),
                        height,
                        is_coinbase: i == 0,
                    },
                );
                created.push(op);
            }
        }
        let cb_value: Amount = block.txdata[0].output.iter().map(|o| o.value).sum();
        if cb_value > block::subsidy(height) + fees {
            return Err("bad-cb-amount".into());
        }
        Ok(())
    }

    fn disconnect_tip(&mut self) -> Arc<Block> {
        let hash = self.active.pop().expect("never disconnects genesis");
        let block = self.entries[&hash].block.clone();
        for tx in block.txdata.iter() {
            let txid = tx.compute_txid();
            for vout in 0..tx.output.len() {
                self.utxo.remove(&OutPoint {
                    txid,
                    vout: vout as u32,
                });
            }
            self.tx_index.remove(&txid);
        }
        for (op, coin) in self.undo.remove(&hash).unwrap_or_default() {
            self.utxo.insert(op, coin);
        }
        block
    }
}
