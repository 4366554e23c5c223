//! The [`Chain`]'s persisted non-block state: the [`ChainSnapshot`] taken
//! of it, and rebuilding a chain from stored blocks plus a snapshot
//! (re-marking invalid blocks, reloading wallets and rescanning them,
//! re-accepting the mempool).

use bitcoin::{Block, BlockHash, Transaction};
use serde::{Deserialize, Serialize};

use crate::chain::node::{Chain, Journal};
use crate::error::{Error, Result};
use crate::mempool::pool::AcceptOptions;
use crate::wallet::hd::{Wallet, WalletSnapshot};

/// Version of the persisted [`ChainSnapshot`] format.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// The persisted non-block state (see the `store` module for the format).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChainSnapshot {
    /// [`SNAPSHOT_FORMAT`].
    pub format: u32,
    /// Blocks marked invalid, hex.
    pub invalid: Vec<String>,
    /// Mock time, 0 when off.
    pub mock_time: u64,
    /// Every wallet ever created.
    pub wallets: Vec<WalletSnapshot>,
    /// Names of loaded wallets.
    pub loaded: Vec<String>,
    /// Mempool transactions, hex, arrival order.
    pub mempool: Vec<String>,
}

impl Chain {
    /// The persisted form of everything but blocks.
    pub fn snapshot(&self) -> ChainSnapshot {
        let mut wallets: Vec<WalletSnapshot> = self.unloaded.values().cloned().collect();
        wallets.extend(self.wallets.values().map(Wallet::snapshot));
        ChainSnapshot {
            format: SNAPSHOT_FORMAT,
            invalid: self
                .state
                .invalid_blocks()
                .iter()
                .map(ToString::to_string)
                .collect(),
            mock_time: self.mock_time,
            wallets,
            loaded: self.wallets.keys().cloned().collect(),
            mempool: self
                .mempool
                .entries()
                .iter()
                .map(|e| bitcoin::consensus::encode::serialize_hex(&e.tx))
                .collect(),
        }
    }

    /// Rebuilds a chain from stored blocks and a snapshot.
    pub fn restore(blocks: Vec<Block>, snap: &ChainSnapshot) -> Result<Self> {
        let mut chain = Chain::new();
        chain.mock_time = snap.mock_time;
        for b in blocks {
            match chain.state.add_block(b) {
                Ok((_, change)) => chain.mempool.update_for_chain_change(&chain.state, &change),
                Err(Error::DuplicateBlock(_)) => {}
                // A block that failed validation stays stored; it is re-rejected here.
                Err(Error::BlockInvalid(_)) => {}
                Err(e) => return Err(e),
            }
        }
        for h in &snap.invalid {
            let hash: BlockHash = h
                .parse()
                .map_err(|_| Error::Key(format!("bad block hash {h}")))?;
            if chain.state.entry(&hash).is_some() {
                let _ = chain.state.invalidate(&hash);
            }
        }
        for w in &snap.wallets {
            if snap.loaded.contains(&w.name) {
                let wallet = Wallet::from_snapshot(w)?;
                chain.wallets.insert(w.name.clone(), wallet);
            } else {
                chain.unloaded.insert(w.name.clone(), w.clone());
            }
        }
        chain.rescan_wallets();
        let opts = AcceptOptions {
            verify_scripts: false,
            ..AcceptOptions::default()
        };
        for hex_tx in &snap.mempool {
            if let Ok(tx) = bitcoin::consensus::encode::deserialize_hex::<Transaction>(hex_tx) {
                let _ = chain.accept_tx(tx, &opts);
            }
        }
        chain.journal = Journal::default();
        Ok(chain)
    }

    /// Scans the active chain and mempool into every loaded wallet.
    pub(crate) fn rescan_wallets(&mut self) {
        let hashes: Vec<BlockHash> = self.state.active_hashes().iter().skip(1).copied().collect();
        for h in hashes {
            let Some(e) = self.state.entry(&h) else {
                continue;
            };
            let (block, time) = (e.block.clone(), u64::from(e.block.header.time));
            for tx in &block.txdata {
                self.note_wallet_tx(tx, time);
            }
        }
        let now = self.now();
        let txs: Vec<Transaction> = self
            .mempool
            .entries()
            .iter()
            .map(|e| e.tx.clone())
            .collect();
        for tx in txs {
            self.note_wallet_tx(&tx, now);
        }
    }
}
