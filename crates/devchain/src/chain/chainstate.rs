//! The block tree and active chain: block index with chainwork, UTXO set
//! with undo data and a transaction index (devchain behaves like
//! `-txindex=1`), and the queries over them. Adding blocks, validating them
//! in context and reorganising lives in [`crate::chain::reorg`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bitcoin::pow::Work;
use bitcoin::{Block, BlockHash, Network, OutPoint, Transaction, TxOut, Txid};

/// An unspent output with the context Core's `Coin` keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coin {
    /// The output itself.
    pub output: TxOut,
    /// Height of the block that created it.
    pub height: u32,
    /// Whether it is a coinbase output (subject to maturity).
    pub is_coinbase: bool,
}

/// One block in the tree with its position and validity.
#[derive(Debug, Clone)]
pub struct BlockEntry {
    /// The full block.
    pub block: Arc<Block>,
    /// Its hash.
    pub hash: BlockHash,
    /// Height above genesis.
    pub height: u32,
    /// Total work of the chain ending here.
    pub chainwork: Work,
    /// Median time of the last eleven blocks ending here (`GetMedianTimePast`).
    pub median_time: u32,
    /// Marked invalid itself (validation failure or `invalidateblock`).
    pub invalid: bool,
    /// Invalid itself or descends from an invalid block.
    pub failed: bool,
    /// Why validation marked it invalid (`None` if it never failed to connect).
    pub reject_reason: Option<String>,
    /// Order of arrival; ties in chainwork go to the block seen first.
    pub seq: u64,
}

/// What a chain update changed, so the mempool and wallets can follow.
#[derive(Debug, Default, Clone)]
pub struct ChainChange {
    /// Blocks removed from the active chain, tip first.
    pub disconnected: Vec<Arc<Block>>,
    /// Blocks added to the active chain, lowest first.
    pub connected: Vec<Arc<Block>>,
}

/// Undo data of one connected block: the coins its inputs spent, in order.
pub(crate) type Undo = Vec<(OutPoint, Coin)>;

/// The block tree, active chain, UTXO set and indexes.
#[derive(Debug)]
pub struct ChainState {
    pub(crate) entries: HashMap<BlockHash, BlockEntry>,
    pub(crate) children: HashMap<BlockHash, Vec<BlockHash>>,
    pub(crate) active: Vec<BlockHash>,
    pub(crate) utxo: HashMap<OutPoint, Coin>,
    pub(crate) undo: HashMap<BlockHash, Undo>,
    pub(crate) tx_index: HashMap<Txid, (BlockHash, usize)>,
    pub(crate) next_seq: u64,
}

impl Default for ChainState {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainState {
    /// A chain holding only regtest's genesis block. As in Core, the genesis
    /// coinbase is neither in the UTXO set nor in the transaction index.
    pub fn new() -> Self {
        let genesis = bitcoin::constants::genesis_block(Network::Regtest);
        let hash = genesis.block_hash();
        let entry = BlockEntry {
            chainwork: genesis.header.work(),
            median_time: genesis.header.time,
            block: Arc::new(genesis),
            hash,
            height: 0,
            invalid: false,
            failed: false,
            reject_reason: None,
            seq: 0,
        };
        ChainState {
            entries: HashMap::from([(hash, entry)]),
            children: HashMap::new(),
            active: vec![hash],
            utxo: HashMap::new(),
            undo: HashMap::new(),
            tx_index: HashMap::new(),
            next_seq: 1,
        }
    }

    /// The active tip.
    pub fn tip(&self) -> &BlockEntry {
        &self.entries[self.active.last().expect("active chain holds genesis")]
    }

    /// Height of the active tip.
    pub fn height(&self) -> u32 {
        (self.active.len() - 1) as u32
    }

    /// Hash of the active block at `height`.
    pub fn hash_at(&self, height: u32) -> Option<BlockHash> {
        self.active.get(height as usize).copied()
    }

    /// Any known block.
    pub fn entry(&self, hash: &BlockHash) -> Option<&BlockEntry> {
        self.entries.get(hash)
    }

    /// All known blocks, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &BlockEntry> {
        self.entries.values()
    }

    /// Whether `hash` is on the active chain.
    pub fn is_active(&self, hash: &BlockHash) -> bool {
        self.entries
            .get(hash)
            .is_some_and(|e| self.active.get(e.height as usize) == Some(hash))
    }

    /// Core's confirmations: depth in the active chain, or -1 off it.
    pub fn confirmations(&self, hash: &BlockHash) -> i64 {
        match self.entries.get(hash) {
            Some(e) if self.is_active(hash) => i64::from(self.height() - e.height) + 1,
            _ => -1,
        }
    }

    /// The active successor of an active block.
    pub fn next_active(&self, hash: &BlockHash) -> Option<BlockHash> {
        let e = self.entries.get(hash)?;
        if !self.is_active(hash) {
            return None;
        }
        self.hash_at(e.height + 1)
    }

    /// Blocks whose parent is `hash`.
    pub fn children(&self, hash: &BlockHash) -> &[BlockHash] {
        self.children.get(hash).map_or(&[], Vec::as_slice)
    }

    /// An unspent output of the active chain.
    pub fn coin(&self, outpoint: &OutPoint) -> Option<&Coin> {
        self.utxo.get(outpoint)
    }

    /// The whole UTXO set.
    pub fn utxos(&self) -> impl Iterator<Item = (&OutPoint, &Coin)> {
        self.utxo.iter()
    }

    /// A transaction of the active chain: block entry and position.
    pub fn find_tx(&self, txid: &Txid) -> Option<(&BlockEntry, usize)> {
        let (hash, pos) = self.tx_index.get(txid)?;
        Some((self.entries.get(hash)?, *pos))
    }

    /// Coins spent by an active block's transactions, in input order.
    pub fn block_undo(&self, hash: &BlockHash) -> Option<&[(OutPoint, Coin)]> {
        self.undo.get(hash).map(Vec::as_slice)
    }

    /// Median time past of the active tip, the lower bound for the next block's time.
    pub fn median_time_past(&self) -> u32 {
        self.tip().median_time
    }

    /// Whether any output of `tx` is unspent in the active chain.
    pub fn has_outputs_of(&self, tx: &Transaction) -> bool {
        let txid = tx.compute_txid();
        (0..tx.output.len() as u32).any(|vout| self.utxo.contains_key(&OutPoint { txid, vout }))
    }

    /// Active-chain block hashes from genesis to tip.
    pub fn active_hashes(&self) -> &[BlockHash] {
        &self.active
    }

    /// Tips of all branches (blocks without children), for `getchaintips`.
    pub fn tips(&self) -> Vec<&BlockEntry> {
        let with_children: HashSet<&BlockHash> = self
            .children
            .iter()
            .filter(|(_, c)| !c.is_empty())
            .map(|(h, _)| h)
            .collect();
        self.entries
            .values()
            .filter(|e| !with_children.contains(&e.hash))
            .collect()
    }
}
