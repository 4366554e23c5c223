//! The node as the stamping runtime sees it: two narrow traits, the chain
//! ([`ChainSource`]) and the wallet ([`Wallet`]), with Bitcoin Core's
//! answers and [`RpcError`]s, implemented for [`RpcClient`]. The runner is
//! generic over them so that its failure paths are tested on an in-memory
//! node (`fake.rs`) that fails on purpose.

use std::future::Future;

use bitcoin::{Block, BlockHash, Transaction, Txid};
use ots_bitcoin::node::{Balances, FeeEstimate, Unspent};
use ots_bitcoin::{RpcClient, RpcError};

/// The best chain.
pub trait ChainSource: Send + Sync {
    /// Height of the best block.
    fn block_count(&self) -> impl Future<Output = Result<u64, RpcError>> + Send;
    /// Hash of the best block.
    fn best_block_hash(&self) -> impl Future<Output = Result<BlockHash, RpcError>> + Send;
    /// Hash of the best chain's block at `height`; `None` above the tip.
    fn block_hash(
        &self,
        height: u64,
    ) -> impl Future<Output = Result<Option<BlockHash>, RpcError>> + Send;
    /// The block `hash`, with its transactions; `None` if the node does not
    /// have it.
    fn block(
        &self,
        hash: &BlockHash,
    ) -> impl Future<Output = Result<Option<Block>, RpcError>> + Send;
}

/// The wallet the calendar spends from, and the mempool it sends to.
pub trait Wallet: Send + Sync {
    /// Unspent outputs with at least `min_conf` confirmations.
    fn list_unspent(
        &self,
        min_conf: u32,
    ) -> impl Future<Output = Result<Vec<Unspent>, RpcError>> + Send;
    /// The fee estimate for confirmation within `conf_target` blocks.
    fn estimate_smart_fee(
        &self,
        conf_target: u32,
    ) -> impl Future<Output = Result<FeeEstimate, RpcError>> + Send;
    /// A change address, as text (checked by the caller).
    fn raw_change_address(&self) -> impl Future<Output = Result<String, RpcError>> + Send;
    /// `tx` signed by the wallet.
    fn sign_raw_transaction_with_wallet(
        &self,
        tx: &Transaction,
    ) -> impl Future<Output = Result<Transaction, RpcError>> + Send;
    /// Broadcasts `tx`.
    fn send_raw_transaction(
        &self,
        tx: &Transaction,
    ) -> impl Future<Output = Result<Txid, RpcError>> + Send;
    /// The wallet's balances.
    fn balances(&self) -> impl Future<Output = Result<Balances, RpcError>> + Send;
}

impl ChainSource for RpcClient {
    async fn block_count(&self) -> Result<u64, RpcError> {
        RpcClient::block_count(self).await
    }
    async fn best_block_hash(&self) -> Result<BlockHash, RpcError> {
        RpcClient::best_block_hash(self).await
    }
    async fn block_hash(&self, height: u64) -> Result<Option<BlockHash>, RpcError> {
        RpcClient::block_hash(self, height).await
    }
    async fn block(&self, hash: &BlockHash) -> Result<Option<Block>, RpcError> {
        RpcClient::block(self, hash).await
    }
}

impl Wallet for RpcClient {
    async fn list_unspent(&self, min_conf: u32) -> Result<Vec<Unspent>, RpcError> {
        RpcClient::list_unspent(self, min_conf).await
    }
    async fn estimate_smart_fee(&self, conf_target: u32) -> Result<FeeEstimate, RpcError> {
        RpcClient::estimate_smart_fee(self, conf_target).await
    }
    async fn raw_change_address(&self) -> Result<String, RpcError> {
        RpcClient::raw_change_address(self).await
    }
    async fn sign_raw_transaction_with_wallet(
        &self,
        tx: &Transaction,
    ) -> Result<Transaction, RpcError> {
        RpcClient::sign_raw_transaction_with_wallet(self, tx).await
    }
    async fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, RpcError> {
        RpcClient::send_raw_transaction(self, tx).await
    }
    async fn balances(&self) -> Result<Balances, RpcError> {
        RpcClient::balances(self).await
    }
}
