//! A node for the runner's unit tests: an in-memory chain, mempool and
//! wallet behind [`ChainSource`] and [`Wallet`], that fails on purpose with
//! the errors the real client gives (a timeout, Core's `-28` warm-up, an
//! HTTP 500, a reply that does not decode, a 401 after a restart with new
//! credentials), for every call or for chosen calls.

use std::sync::{Arc, Mutex, MutexGuard};

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{
    absolute, transaction, Address, Amount, Block, BlockHash, CompactTarget, Network, OutPoint,
    ScriptBuf, Sequence, Transaction, TxIn, TxMerkleNode, TxOut, Txid, Witness,
};
use ots_bitcoin::node::{Balances, FeeEstimate, Unspent};
use ots_bitcoin::RpcError;

use super::node::{ChainSource, Wallet};

/// The fee estimate the fake gives, BTC/kvB (2 sat/vB).
pub const FEERATE_BTC_PER_KVB: f64 = 0.000_02;
/// The wallet's output at the start, in satoshis.
pub const FUNDS_SATS: u64 = 1_000_000;
/// Block time of the first block; each next one is 600 s later.
pub const FIRST_BLOCK_TIME: u32 = 1_700_000_000;

/// How a call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No answer in time (a transport error).
    Timeout,
    /// Core's warm-up, `-28`.
    Warmup,
    /// An HTTP 500 whose body is not JSON-RPC.
    Http500,
    /// A reply that does not decode.
    Garbage,
}

impl Fault {
    fn error(self, method: &str) -> RpcError {
        match self {
            Fault::Timeout => RpcError::Transport {
                url: "http://127.0.0.1:18443/".into(),
                message: "operation timed out".into(),
            },
            Fault::Warmup => RpcError::Rpc {
                code: ots_bitcoin::rpc::RPC_IN_WARMUP,
                message: "Loading block index…".into(),
            },
            Fault::Http500 => RpcError::Http {
                status: 500,
                body: "Internal Server Error".into(),
            },
            Fault::Garbage => RpcError::Decode {
                method: method.into(),
                message: "expected value at line 1 column 1".into(),
            },
        }
    }
}

/// A fault for chosen calls of one method: after `skip` calls, `times`
/// calls fail.
#[derive(Debug)]
struct Scheduled {
    method: &'static str,
    skip: usize,
    times: usize,
    fault: Fault,
}

#[derive(Debug)]
struct Chain {
    /// The best chain, genesis first.
    blocks: Vec<Block>,
    mempool: Vec<Transaction>,
    /// The wallet's outputs and the height that confirmed them.
    utxos: Vec<(OutPoint, Amount, ScriptBuf, u64)>,
    change_address: String,
    /// Every call fails so while set.
    down: Option<Fault>,
    scheduled: Vec<Scheduled>,
    /// Credentials generations: what the node accepts, what the client
    /// sends, what the cookie file holds.
    accepted: u32,
    sent: u32,
    cookie: u32,
    /// Blocks whose body the node no longer serves (pruned).
    forgotten: Vec<BlockHash>,
    /// Accepted broadcasts, in order.
    broadcasts: Vec<Txid>,
    /// Methods called, in order.
    calls: Vec<&'static str>,
    /// What `estimatesmartfee` answers, BTC/kvB (`None`: Core's "no
    /// estimate" shape).
    estimate: Option<f64>,
    /// The next call of this method first mines a block with the mempool
    /// (a block found while the runner is between two calls).
    mine_before: Option<&'static str>,
}

/// The wallet's script.
pub fn wallet_script() -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([3; 20]))
}

/// The fake node; clones share it.
#[derive(Debug, Clone)]
pub struct FakeNode(Arc<Mutex<Chain>>);

impl FakeNode {
    /// A chain of one block (genesis) and a wallet holding one confirmed
    /// output of [`FUNDS_SATS`] (`funded`) or nothing.
    pub fn new(funded: bool) -> FakeNode {
        let change_address = Address::from_script(&wallet_script(), Network::Regtest)
            .expect("a standard script")
            .to_string();
        let node = FakeNode(Arc::new(Mutex::new(Chain {
            blocks: Vec::new(),
            mempool: Vec::new(),
            utxos: Vec::new(),
            change_address,
            down: None,
            scheduled: Vec::new(),
            accepted: 0,
            sent: 0,
            cookie: 0,
            forgotten: Vec::new(),
            broadcasts: Vec::new(),
            calls: Vec::new(),
            estimate: Some(FEERATE_BTC_PER_KVB),
            mine_before: None,
        })));
        node.mine_empty();
        if funded {
            node.fund(FUNDS_SATS);
        }
        node
    }

    fn chain(&self) -> MutexGuard<'_, Chain> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives the wallet a confirmed output of `sats`.
    pub fn fund(&self, sats: u64) {
        let mut c = self.chain();
        let n = c.utxos.len() as u8 + 1;
        let height = c.blocks.len() as u64 - 1;
        c.utxos.push((
            OutPoint::new(Txid::from_byte_array([n; 32]), 0),
            Amount::from_sat(sats),
            wallet_script(),
            height,
        ));
    }

    /// `estimatesmartfee` answers `feerate` (BTC/kvB) from now on, or,
    /// with `None`, that it has too little data.
    pub fn set_estimate(&self, feerate: Option<f64>) {
        self.chain().estimate = feerate;
    }

    /// The mempool's transactions.
    pub fn mempool_txs(&self) -> Vec<Transaction> {
        self.chain().mempool.clone()
    }

    /// Every call fails with `fault` until [`FakeNode::up`].
    pub fn down(&self, fault: Fault) {
        self.chain().down = Some(fault);
    }

    /// Answers again.
    pub fn up(&self) {
        self.chain().down = None;
    }

    /// The next call of `method` first mines a block with the mempool.
    pub fn mine_before(&self, method: &'static str) {
        self.chain().mine_before = Some(method);
    }

    /// After `skip` more calls of `method`, the next `times` fail.
    pub fn fail(&self, method: &'static str, skip: usize, times: usize, fault: Fault) {
        self.chain().scheduled.push(Scheduled {
            method,
            skip,
            times,
            fault,
        });
    }

    /// The node restarts with new credentials; with `write_cookie` false
    /// its cookie file is not written yet, so the client's re-read after a
    /// 401 finds the old one until [`FakeNode::write_cookie`].
    pub fn restart_with_new_credentials(&self, write_cookie: bool) {
        let mut c = self.chain();
        c.accepted += 1;
        c.mempool.clear();
        if write_cookie {
            c.cookie = c.accepted;
        }
    }

    /// The restarted node writes its cookie file.
    pub fn write_cookie(&self) {
        let mut c = self.chain();
        c.cookie = c.accepted;
    }

    /// The wallet's change address (any text, to test a bad one).
    pub fn set_change_address(&self, address: &str) {
        self.chain().change_address = address.into();
    }

    /// The node stops serving block `hash`'s body, or serves it again.
    pub fn forget_block(&self, hash: BlockHash, forget: bool) {
        let mut c = self.chain();
        c.forgotten.retain(|h| *h != hash);
        if forget {
            c.forgotten.push(hash);
        }
    }

    fn push_block(c: &mut Chain, txs: Vec<Transaction>) -> BlockHash {
        let height = c.blocks.len() as u32;
        let coinbase = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: ScriptBuf::from_bytes(height.to_le_bytes().to_vec()),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(50),
                // Unique per block: a block replacing a disconnected one
                // never comes back with its hash.
                script_pubkey: ScriptBuf::new_op_return(rand::random::<[u8; 8]>()),
            }],
        };
        let prev = c
            .blocks
            .last()
            .map_or(BlockHash::all_zeros(), |b| b.block_hash());
        let mut txdata = vec![coinbase];
        txdata.extend(txs);
        let mut block = Block {
            header: Header {
                version: Version::TWO,
                prev_blockhash: prev,
                merkle_root: TxMerkleNode::all_zeros(),
                time: FIRST_BLOCK_TIME + 600 * height,
                bits: CompactTarget::from_consensus(0x207f_ffff),
                nonce: rand::random(),
            },
            txdata,
        };
        block.header.merkle_root = block.compute_merkle_root().expect("a coinbase");
        // The wallet: spent outputs go, change to our script comes.
        let at = u64::from(height);
        for tx in &block.txdata[1..] {
            let txid = tx.compute_txid();
            c.utxos
                .retain(|u| !tx.input.iter().any(|i| i.previous_output == u.0));
            for (vout, out) in tx.output.iter().enumerate() {
                if out.script_pubkey == wallet_script() {
                    c.utxos.push((
                        OutPoint::new(txid, vout as u32),
                        out.value,
                        out.script_pubkey.clone(),
                        at,
                    ));
                }
            }
        }
        let hash = block.block_hash();
        c.blocks.push(block);
        hash
    }

    /// Mines a block with the whole mempool; returns its hash.
    pub fn mine(&self) -> BlockHash {
        let mut c = self.chain();
        let txs = std::mem::take(&mut c.mempool);
        Self::push_block(&mut c, txs)
    }

    /// Mines a block without the mempool.
    pub fn mine_empty(&self) -> BlockHash {
        let mut c = self.chain();
        Self::push_block(&mut c, Vec::new())
    }

    /// Disconnects the best block; its transactions go back to the
    /// mempool (the wallet's outputs are not rolled back: the tests reorg
    /// before spending again).
    pub fn disconnect_tip(&self) {
        let mut c = self.chain();
        if let Some(block) = c.blocks.pop() {
            let txs: Vec<_> = block.txdata.into_iter().skip(1).collect();
            c.mempool.extend(txs);
        }
    }

    /// The mempool's txids.
    pub fn mempool(&self) -> Vec<Txid> {
        self.chain()
            .mempool
            .iter()
            .map(Transaction::compute_txid)
            .collect()
    }

    /// The accepted broadcasts, in order.
    pub fn broadcasts(&self) -> Vec<Txid> {
        self.chain().broadcasts.clone()
    }

    /// How many times `method` was called.
    pub fn calls(&self, method: &str) -> usize {
        self.chain().calls.iter().filter(|m| **m == method).count()
    }

    /// Answers `method` or fails as set up.
    fn enter(&self, method: &'static str) -> Result<MutexGuard<'_, Chain>, RpcError> {
        let mut c = self.chain();
        c.calls.push(method);
        if let Some(fault) = c.down {
            return Err(fault.error(method));
        }
        if c.sent != c.accepted {
            // A 401: the client re-reads the cookie file and tries again.
            c.sent = c.cookie;
            if c.sent != c.accepted {
                return Err(RpcError::Unauthorized);
            }
        }
        let mut failed = None;
        for s in c.scheduled.iter_mut().filter(|s| s.method == method) {
            if s.skip > 0 {
                s.skip -= 1;
            } else if s.times > 0 {
                s.times -= 1;
                failed = Some(s.fault);
                break;
            }
        }
        c.scheduled.retain(|s| s.times > 0);
        if failed.is_none() && c.mine_before == Some(method) {
            c.mine_before = None;
            let txs = std::mem::take(&mut c.mempool);
            Self::push_block(&mut c, txs);
        }
        match failed {
            Some(fault) => Err(fault.error(method)),
            None => Ok(c),
        }
    }
}

impl ChainSource for FakeNode {
    async fn block_count(&self) -> Result<u64, RpcError> {
        let c = self.enter("getblockcount")?;
        Ok(c.blocks.len() as u64 - 1)
    }

    async fn best_block_hash(&self) -> Result<BlockHash, RpcError> {
        let c = self.enter("getbestblockhash")?;
        Ok(c.blocks.last().expect("genesis").block_hash())
    }

    async fn block_hash(&self, height: u64) -> Result<Option<BlockHash>, RpcError> {
        let c = self.enter("getblockhash")?;
        let block = usize::try_from(height).ok().and_then(|h| c.blocks.get(h));
        Ok(block.map(Block::block_hash))
    }

    async fn block(&self, hash: &BlockHash) -> Result<Option<Block>, RpcError> {
        let c = self.enter("getblock")?;
        if c.forgotten.contains(hash) {
            return Ok(None);
        }
        Ok(c.blocks.iter().find(|b| b.block_hash() == *hash).cloned())
    }
}

impl Wallet for FakeNode {
    async fn list_unspent(&self, min_conf: u32) -> Result<Vec<Unspent>, RpcError> {
        let c = self.enter("listunspent")?;
        let tip = c.blocks.len() as u64 - 1;
        Ok(c.utxos
            .iter()
            .map(|(outpoint, value, script, height)| Unspent {
                txid: outpoint.txid,
                vout: outpoint.vout,
                amount: *value,
                confirmations: tip + 1 - height,
                script_pubkey: script.to_hex_string(),
                spendable: true,
                safe: true,
            })
            .filter(|u| u.confirmations >= u64::from(min_conf))
            .collect())
    }

    async fn estimate_smart_fee(&self, conf_target: u32) -> Result<FeeEstimate, RpcError> {
        let c = self.enter("estimatesmartfee")?;
        Ok(match c.estimate {
            Some(rate) => FeeEstimate {
                feerate: Some(rate),
                errors: Vec::new(),
                blocks: conf_target,
            },
            None => FeeEstimate {
                feerate: None,
                errors: vec!["Insufficient data or no feerate found".into()],
                blocks: 0,
            },
        })
    }

    async fn raw_change_address(&self) -> Result<String, RpcError> {
        let c = self.enter("getrawchangeaddress")?;
        Ok(c.change_address.clone())
    }

    async fn sign_raw_transaction_with_wallet(
        &self,
        tx: &Transaction,
    ) -> Result<Transaction, RpcError> {
        let c = self.enter("signrawtransactionwithwallet")?;
        // As Core: an output spent in the best chain cannot be signed for
        // (one spent in the mempool only can: that is a replacement), and
        // the reply says "complete": false, which the client turns into
        // this error.
        let spent_in_chain = |i: &TxIn| {
            c.blocks.iter().flat_map(|b| &b.txdata).any(|t| {
                t.input
                    .iter()
                    .any(|j| j.previous_output == i.previous_output)
            })
        };
        if let Some(at) = tx.input.iter().position(spent_in_chain) {
            return Err(RpcError::Decode {
                method: "signrawtransactionwithwallet".into(),
                message: format!(
                    "wallet could not sign every input: [{{\"vout\":{at},\"error\":\"Input not found or already spent\"}}]"
                ),
            });
        }
        let mut signed = tx.clone();
        for input in &mut signed.input {
            input.witness = Witness::from_slice(&[vec![0x30; 72], vec![0x02; 33]]);
        }
        Ok(signed)
    }

    async fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, RpcError> {
        let mut c = self.enter("sendrawtransaction")?;
        let txid = tx.compute_txid();
        if c.blocks
            .iter()
            .any(|b| b.txdata.iter().any(|t| t.compute_txid() == txid))
        {
            return Err(RpcError::Rpc {
                code: ots_bitcoin::node::RPC_VERIFY_ALREADY_IN_CHAIN,
                message: "Transaction already in block chain".into(),
            });
        }
        // A replacement takes the place of what spends the same outputs.
        c.mempool.retain(|m| {
            m.compute_txid() == txid
                || !m.input.iter().any(|i| {
                    tx.input
                        .iter()
                        .any(|j| j.previous_output == i.previous_output)
                })
        });
        if !c.mempool.iter().any(|m| m.compute_txid() == txid) {
            c.mempool.push(tx.clone());
        }
        c.broadcasts.push(txid);
        Ok(txid)
    }

    async fn balances(&self) -> Result<Balances, RpcError> {
        let c = self.enter("getbalances")?;
        let trusted = c.utxos.iter().map(|u| u.1).sum();
        Ok(Balances {
            trusted,
            untrusted_pending: Amount::ZERO,
            immature: Amount::ZERO,
        })
    }
}
