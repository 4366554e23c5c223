//! `Chain`, the sans-I/O core: chain state, mempool and wallets tied
//! together, with a clock (`setmocktime`), mining, fee estimation and a
//! journal of what must be persisted. No file or network access happens here.
//! Building and mining blocks is in [`crate::chain::mining`]; the persisted
//! snapshot and restoring from it in [`crate::chain::snapshot`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::{Block, BlockHash, ScriptBuf, Transaction, Txid};

use crate::chain::chainstate::{ChainChange, ChainState};
use crate::error::{Result, TxReject};
use crate::mempool::pool::{fee_rate, AcceptOptions, Accepted, Mempool, MIN_RELAY_FEE_SAT_PER_KVB};
use crate::wallet::hd::{Wallet, WalletSnapshot};

/// Blocks of history the fee estimator looks at.
pub const FEE_ESTIMATE_WINDOW: u32 = 1_008;
/// Confirmed samples needed before the estimator answers.
pub const FEE_ESTIMATE_MIN_SAMPLES: usize = 3;
/// Largest `conf_target` Core accepts.
pub const MAX_CONF_TARGET: u32 = 1_008;

/// What changed since the last persist: new blocks to append and whether
/// the state file needs rewriting.
#[derive(Debug, Default)]
pub struct Journal {
    /// Blocks accepted since the last drain, in arrival order.
    pub blocks: Vec<Arc<Block>>,
    /// Wallets, mempool, invalidations or mock time changed.
    pub dirty: bool,
}

/// A fee-estimator sample: fee rate (sat/kvB) and blocks it took to confirm.
#[derive(Debug, Clone, Copy)]
struct FeeSample {
    height: u32,
    rate: u64,
    blocks: u32,
}

/// The whole simulated node.
#[derive(Debug)]
pub struct Chain {
    pub(crate) state: ChainState,
    pub(crate) mempool: Mempool,
    pub(crate) wallets: BTreeMap<String, Wallet>,
    pub(crate) unloaded: BTreeMap<String, WalletSnapshot>,
    pub(crate) mock_time: u64,
    fee_samples: VecDeque<FeeSample>,
    /// What `estimatesmartfee` answers instead of the samples' median,
    /// when a test set it (never persisted).
    fee_estimate: FeeEstimateSetting,
    pub(crate) journal: Journal,
}

/// Where `estimatesmartfee`'s answer comes from: a devchain-only knob for
/// tests (Bitcoin Core has none), set with [`Chain::set_fee_estimate`] or
/// the `devchain_setfeeestimate` RPC. Not persisted: a restarted devchain
/// estimates from its samples again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FeeEstimateSetting {
    /// The median of confirmed samples (see [`Chain::estimate_fee`]).
    #[default]
    Samples,
    /// This rate, sat/kvB, for every target.
    Fixed(u64),
    /// No estimate: Core's "Insufficient data" answer.
    Insufficient,
}

impl Default for Chain {
    fn default() -> Self {
        Self::new()
    }
}

impl Chain {
    /// A chain holding only the regtest genesis block, no wallets.
    pub fn new() -> Self {
        Chain {
            state: ChainState::new(),
            mempool: Mempool::new(),
            wallets: BTreeMap::new(),
            unloaded: BTreeMap::new(),
            mock_time: 0,
            fee_samples: VecDeque::new(),
            fee_estimate: FeeEstimateSetting::Samples,
            journal: Journal::default(),
        }
    }

    /// Block tree, active chain and UTXO set.
    pub fn state(&self) -> &ChainState {
        &self.state
    }

    /// The mempool.
    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    /// Current time: the mock time if set, else the system clock.
    pub fn now(&self) -> u64 {
        if self.mock_time != 0 {
            return self.mock_time;
        }
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// `setmocktime`; 0 returns to the system clock.
    pub fn set_mock_time(&mut self, t: u64) {
        self.mock_time = t;
        self.journal.dirty = true;
    }

    /// Flags the state file for rewriting.
    pub(crate) fn mark_dirty(&mut self) {
        self.journal.dirty = true;
    }

    /// Takes what must be persisted since the last call (for a chain that
    /// is not persisted; a store reads [`Chain::journal`] and forgets only
    /// what it has written).
    pub fn drain_journal(&mut self) -> Journal {
        std::mem::take(&mut self.journal)
    }

    /// What must be persisted since the last successful write.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Forgets the first `n` journaled blocks once they are durably
    /// written, and flags the state file, which follows the blocks, for
    /// rewriting.
    pub fn blocks_written(&mut self, n: usize) {
        let n = n.min(self.journal.blocks.len());
        self.journal.blocks.drain(..n);
        self.journal.dirty = true;
    }

    /// Clears the state file's flag once it is durably rewritten.
    pub fn state_written(&mut self) {
        self.journal.dirty = false;
    }

    /// Submits a block (`submitblock`, and the miner).
    pub fn submit_block(&mut self, block: Block) -> Result<BlockHash> {
        let (hash, change) = self.state.add_block(block)?;
        if let Some(e) = self.state.entry(&hash) {
            self.journal.blocks.push(e.block.clone());
        }
        self.after_change(&change);
        Ok(hash)
    }

    fn after_change(&mut self, change: &ChainChange) {
        for b in &change.connected {
            let height = self.state.entry(&b.block_hash()).map_or(0, |e| e.height);
            for tx in b.txdata.iter().skip(1) {
                if let Some(e) = self.mempool.get(&tx.compute_txid()) {
                    let rate = fee_rate(e.fee, e.vsize);
                    self.fee_samples.push_back(FeeSample {
                        height,
                        rate,
                        blocks: height - e.height,
                    });
                }
            }
        }
        let tip = self.state.height();
        while self
            .fee_samples
            .front()
            .is_some_and(|s| s.height + FEE_ESTIMATE_WINDOW <= tip)
        {
            self.fee_samples.pop_front();
        }
        self.mempool.update_for_chain_change(&self.state, change);
        let now = self.now();
        for b in &change.connected {
            for tx in &b.txdata {
                self.note_wallet_tx(tx, now);
            }
        }
        if !change.disconnected.is_empty() {
            self.journal.dirty = true;
        }
    }

    /// Looks a transaction up in the active chain or the mempool.
    pub fn lookup_tx(&self, txid: &Txid) -> Option<Transaction> {
        if let Some(e) = self.mempool.get(txid) {
            return Some(e.tx.clone());
        }
        let (entry, pos) = self.state.find_tx(txid)?;
        entry.block.txdata.get(pos).cloned()
    }

    /// Records `tx` in every wallet it pays or spends from.
    pub(crate) fn note_wallet_tx(&mut self, tx: &Transaction, now: u64) {
        let txid = tx.compute_txid();
        let prev_scripts: Vec<Option<ScriptBuf>> = tx
            .input
            .iter()
            .map(|i| {
                if tx.is_coinbase() {
                    return None;
                }
                let prev = self.lookup_tx(&i.previous_output.txid)?;
                prev.output
                    .get(i.previous_output.vout as usize)
                    .map(|o| o.script_pubkey.clone())
            })
            .collect();
        for w in self.wallets.values_mut() {
            let relevant = tx.output.iter().any(|o| w.is_mine(&o.script_pubkey))
                || prev_scripts.iter().flatten().any(|s| w.is_mine(s));
            if relevant && w.note_tx(txid, now) {
                self.journal.dirty = true;
            }
        }
    }

    /// Submits a transaction to the mempool under `opts`.
    pub fn accept_tx(
        &mut self,
        tx: Transaction,
        opts: &AcceptOptions,
    ) -> Result<Accepted, TxReject> {
        let now = self.now();
        if opts.test_only {
            let mut scratch = self.mempool.clone();
            return scratch.accept(&self.state, tx, now, opts);
        }
        let accepted = self.mempool.accept(&self.state, tx.clone(), now, opts)?;
        self.note_wallet_tx(&tx, now);
        self.journal.dirty = true;
        Ok(accepted)
    }

    /// Checks a package in order against a scratch copy of the mempool
    /// (`testmempoolaccept` with several transactions).
    pub fn test_accept_many(
        &self,
        txs: Vec<Transaction>,
        opts: &AcceptOptions,
    ) -> Vec<Result<Accepted, TxReject>> {
        let mut scratch = self.mempool.clone();
        let now = self.now();
        let commit = AcceptOptions {
            test_only: false,
            ..opts.clone()
        };
        txs.into_iter()
            .map(|tx| scratch.accept(&self.state, tx, now, &commit))
            .collect()
    }

    /// `invalidateblock`.
    pub fn invalidate(&mut self, hash: &BlockHash) -> Result<()> {
        let change = self.state.invalidate(hash)?;
        self.after_change(&change);
        self.journal.dirty = true;
        Ok(())
    }

    /// `reconsiderblock`.
    pub fn reconsider(&mut self, hash: &BlockHash) -> Result<()> {
        let change = self.state.reconsider(hash)?;
        self.after_change(&change);
        self.journal.dirty = true;
        Ok(())
    }

    /// Sets where [`Chain::estimate_fee`] answers from (a test's market:
    /// a fixed rate, or no data), or back to the samples.
    pub fn set_fee_estimate(&mut self, setting: FeeEstimateSetting) {
        self.fee_estimate = setting;
    }

    /// `estimatesmartfee`: unless a test fixed it
    /// ([`Chain::set_fee_estimate`]), the median fee rate (sat/kvB) of transactions
    /// that confirmed within `target` blocks over the last
    /// [`FEE_ESTIMATE_WINDOW`] blocks, never below the minimum relay fee;
    /// `None` with too few samples (Core's "Insufficient data").
    pub fn estimate_fee(&self, target: u32) -> Option<u64> {
        match self.fee_estimate {
            FeeEstimateSetting::Samples => {}
            FeeEstimateSetting::Fixed(rate) => return Some(rate),
            FeeEstimateSetting::Insufficient => return None,
        }
        let mut rates: Vec<u64> = self
            .fee_samples
            .iter()
            .filter(|s| s.blocks <= target)
            .map(|s| s.rate)
            .collect();
        if rates.len() < FEE_ESTIMATE_MIN_SAMPLES {
            return None;
        }
        rates.sort_unstable();
        Some(rates[rates.len() / 2].max(MIN_RELAY_FEE_SAT_PER_KVB))
    }
}
