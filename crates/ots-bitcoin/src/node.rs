//! Typed wrappers over the RPC calls we use, with the reply fields we read.
//! Shapes follow Bitcoin Core's `help <call>` (Core 24 to 30); fields we do
//! not use are ignored, so newer nodes that add fields keep working.

use bitcoin::consensus::encode::{deserialize, serialize_hex};
use bitcoin::{Amount, Block, BlockHash, Transaction, Txid};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::rpc::{RpcClient, RpcError};

/// Core's code for "not found" (block, transaction, mempool entry).
pub const RPC_INVALID_ADDRESS_OR_KEY: i64 = -5;
/// Core's code for a transaction refused by the mempool (low fee, rejected
/// replacement...).
pub const RPC_VERIFY_REJECTED: i64 = -26;
/// Core's code for an input already spent or a transaction already mined.
pub const RPC_VERIFY_ALREADY_IN_CHAIN: i64 = -27;
/// Core's code for a transaction that failed verification (missing inputs).
pub const RPC_VERIFY_ERROR: i64 = -25;

/// `getblockchaininfo`, the fields we read.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct BlockchainInfo {
    /// `main`, `test`, `testnet4`, `signet` or `regtest`.
    pub chain: String,
    /// Height of the best validated block.
    pub blocks: u64,
    /// Height of the best known header.
    pub headers: u64,
    /// Hash of the best block.
    pub bestblockhash: BlockHash,
    /// Whether the node is still catching up.
    #[serde(default)]
    pub initialblockdownload: bool,
}

/// An unspent wallet output (`listunspent`), the fields we read.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Unspent {
    /// Transaction id.
    pub txid: Txid,
    /// Output index.
    pub vout: u32,
    /// Value in BTC, as Core sends it.
    #[serde(with = "bitcoin::amount::serde::as_btc")]
    pub amount: Amount,
    /// Confirmations (0 in the mempool).
    pub confirmations: u64,
    /// Output script, hex.
    #[serde(rename = "scriptPubKey")]
    pub script_pubkey: String,
    /// Whether the wallet can spend it.
    #[serde(default)]
    pub spendable: bool,
    /// Whether it is safe to spend (Core's notion).
    #[serde(default = "yes")]
    pub safe: bool,
}

fn yes() -> bool {
    true
}

/// A wallet transaction (`gettransaction`), the fields we read.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct WalletTransaction {
    /// Confirmations; negative when conflicted (replaced or double-spent).
    pub confirmations: i64,
    /// Block that holds it, when confirmed.
    #[serde(default)]
    pub blockhash: Option<BlockHash>,
    /// Height of that block.
    #[serde(default)]
    pub blockheight: Option<u64>,
    /// Transactions conflicting with it.
    #[serde(default)]
    pub walletconflicts: Vec<Txid>,
    /// The raw transaction, hex.
    pub hex: String,
}

/// The highest fee rate [`FeeEstimate::sat_per_kvb`] gives, sat/kvB
/// (10 BTC/kvB: far above any fee Bitcoin has seen).
pub const MAX_FEERATE_SAT_PER_KVB: u64 = 1_000_000_000;

/// `estimatesmartfee`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct FeeEstimate {
    /// Fee rate in BTC/kvB, when the node has an estimate.
    #[serde(default)]
    pub feerate: Option<f64>,
    /// Why there is none.
    #[serde(default)]
    pub errors: Vec<String>,
    /// The target the estimate is for.
    pub blocks: u32,
}

impl FeeEstimate {
    /// The estimate in sat/vB.
    pub fn sat_per_vbyte(&self) -> Option<f64> {
        // BTC/kvB -> sat/vB: × 1e8 sat/BTC ÷ 1000 vB/kvB.
        self.feerate.map(|r| r * 100_000.0)
    }

    /// The estimate in sat/kvB, clamped to what no fee arithmetic
    /// overflows on; `None` when the node has none (Core's `errors`, no
    /// `feerate`) or answers a rate that is not a number. Core's rates are
    /// whole sat/kvB (BTC with 8 decimals), so rounding to the nearest
    /// gives them back exactly, where rounding up would add one to the
    /// float's error (0.00002 × 1e8 is 2000.0000000000002).
    pub fn sat_per_kvb(&self) -> Option<u64> {
        // BTC/kvB → sat/kvB: × 1e8 sat/BTC.
        self.feerate
            .filter(|r| r.is_finite())
            .map(|r| (r * 1e8).round().clamp(0.0, MAX_FEERATE_SAT_PER_KVB as f64) as u64)
    }
}

/// `getmempoolentry`, the fields we read.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct MempoolEntry {
    /// Virtual size.
    pub vsize: u64,
    /// Fees.
    pub fees: MempoolFees,
}

/// Fee fields of a mempool entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct MempoolFees {
    /// The transaction's own fee.
    #[serde(with = "bitcoin::amount::serde::as_btc")]
    pub base: Amount,
}

/// `getbalances` → `mine`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Balances {
    /// Confirmed, spendable.
    #[serde(with = "bitcoin::amount::serde::as_btc")]
    pub trusted: Amount,
    /// Unconfirmed from others.
    #[serde(with = "bitcoin::amount::serde::as_btc")]
    pub untrusted_pending: Amount,
    /// Immature coinbase outputs.
    #[serde(with = "bitcoin::amount::serde::as_btc")]
    pub immature: Amount,
}

fn decode_hex<T: bitcoin::consensus::Decodable>(
    method: &str,
    hex_str: &str,
) -> Result<T, RpcError> {
    let bytes = hex::decode(hex_str).map_err(|e| RpcError::decode(method, e))?;
    deserialize(&bytes).map_err(|e| RpcError::decode(method, e))
}

/// Treats Core's "not found" (-5) as `None`.
fn optional<T>(result: Result<T, RpcError>) -> Result<Option<T>, RpcError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.code() == Some(RPC_INVALID_ADDRESS_OR_KEY) => Ok(None),
        Err(e) => Err(e),
    }
}

impl RpcClient {
    /// `getblockchaininfo`.
    pub async fn blockchain_info(&self) -> Result<BlockchainInfo, RpcError> {
        self.call("getblockchaininfo", json!([])).await
    }

    /// `getblockcount`.
    pub async fn block_count(&self) -> Result<u64, RpcError> {
        self.call("getblockcount", json!([])).await
    }

    /// `getbestblockhash`.
    pub async fn best_block_hash(&self) -> Result<BlockHash, RpcError> {
        self.call("getbestblockhash", json!([])).await
    }

    /// `getblockhash`; `None` above the tip (Core's -8 "Block height out of
    /// range").
    pub async fn block_hash(&self, height: u64) -> Result<Option<BlockHash>, RpcError> {
        match self.call("getblockhash", json!([height])).await {
            Err(e) if e.code() == Some(-8) => Ok(None),
            other => other.map(Some),
        }
    }

    /// `getblockheader <hash> false`: the 80-byte header.
    pub async fn block_header(
        &self,
        hash: &BlockHash,
    ) -> Result<Option<bitcoin::block::Header>, RpcError> {
        let hex_str: Option<String> =
            optional(self.call("getblockheader", json!([hash, false])).await)?;
        hex_str
            .map(|h| decode_hex("getblockheader", &h))
            .transpose()
    }

    /// `getblock <hash> 0`: the whole block.
    pub async fn block(&self, hash: &BlockHash) -> Result<Option<Block>, RpcError> {
        let hex_str: Option<String> = optional(self.call("getblock", json!([hash, 0])).await)?;
        hex_str.map(|h| decode_hex("getblock", &h)).transpose()
    }

    /// `estimatesmartfee <target>`.
    pub async fn estimate_smart_fee(&self, conf_target: u32) -> Result<FeeEstimate, RpcError> {
        self.call("estimatesmartfee", json!([conf_target])).await
    }

    /// `getmempoolentry`; `None` if not in the mempool.
    pub async fn mempool_entry(&self, txid: &Txid) -> Result<Option<MempoolEntry>, RpcError> {
        optional(self.call("getmempoolentry", json!([txid])).await)
    }

    /// `sendrawtransaction`.
    pub async fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, RpcError> {
        self.call("sendrawtransaction", json!([serialize_hex(tx)]))
            .await
    }

    /// `getrawtransaction <txid> false [blockhash]`; `None` if unknown.
    pub async fn raw_transaction(
        &self,
        txid: &Txid,
        block: Option<&BlockHash>,
    ) -> Result<Option<Transaction>, RpcError> {
        let params = match block {
            Some(b) => json!([txid, false, b]),
            None => json!([txid, false]),
        };
        let hex_str: Option<String> = optional(self.call("getrawtransaction", params).await)?;
        hex_str
            .map(|h| decode_hex("getrawtransaction", &h))
            .transpose()
    }

    /// `listunspent <minconf>`.
    pub async fn list_unspent(&self, min_conf: u32) -> Result<Vec<Unspent>, RpcError> {
        self.wallet_call("listunspent", json!([min_conf])).await
    }

    /// `getnewaddress "" bech32`.
    pub async fn new_address(&self) -> Result<String, RpcError> {
        self.wallet_call("getnewaddress", json!(["", "bech32"]))
            .await
    }

    /// `getrawchangeaddress bech32`.
    pub async fn raw_change_address(&self) -> Result<String, RpcError> {
        self.wallet_call("getrawchangeaddress", json!(["bech32"]))
            .await
    }

    /// `signrawtransactionwithwallet`: the signed transaction, or an error
    /// when the wallet could not sign every input.
    pub async fn sign_raw_transaction_with_wallet(
        &self,
        tx: &Transaction,
    ) -> Result<Transaction, RpcError> {
        let reply: Value = self
            .wallet_call("signrawtransactionwithwallet", json!([serialize_hex(tx)]))
            .await?;
        let method = "signrawtransactionwithwallet";
        if reply.get("complete").and_then(Value::as_bool) != Some(true) {
            return Err(RpcError::decode(
                method,
                format!(
                    "wallet could not sign every input: {}",
                    reply.get("errors").unwrap_or(&Value::Null)
                ),
            ));
        }
        let hex_str = reply
            .get("hex")
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::decode(method, "no hex"))?;
        decode_hex(method, hex_str)
    }

    /// `gettransaction`; `None` if the wallet does not know it.
    pub async fn wallet_transaction(
        &self,
        txid: &Txid,
    ) -> Result<Option<WalletTransaction>, RpcError> {
        optional(self.wallet_call("gettransaction", json!([txid])).await)
    }

    /// `getbalances` → `mine`.
    pub async fn balances(&self) -> Result<Balances, RpcError> {
        let reply: Value = self.wallet_call("getbalances", json!([])).await?;
        let mine = reply
            .get("mine")
            .cloned()
            .ok_or_else(|| RpcError::decode("getbalances", "no `mine`"))?;
        serde_json::from_value(mine).map_err(|e| RpcError::decode("getbalances", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_estimates_decode_with_and_without_a_rate() {
        // Bitcoin Core's two shapes.
        let some: FeeEstimate =
            serde_json::from_str(r#"{"feerate": 0.00020123, "blocks": 2}"#).unwrap();
        assert_eq!(some.sat_per_kvb(), Some(20_123));
        assert_eq!(some.blocks, 2);
        let none: FeeEstimate = serde_json::from_str(
            r#"{"errors": ["Insufficient data or no feerate found"], "blocks": 0}"#,
        )
        .unwrap();
        assert_eq!(none.sat_per_kvb(), None);
        assert_eq!(none.errors.len(), 1);
        // Exact where a float is not; absurd rates clamped.
        let odd = |feerate| FeeEstimate {
            feerate: Some(feerate),
            errors: Vec::new(),
            blocks: 2,
        };
        assert_eq!(odd(0.000_02).sat_per_kvb(), Some(2_000));
        assert_eq!(odd(0.000_010_01).sat_per_kvb(), Some(1_001));
        assert_eq!(odd(1e300).sat_per_kvb(), Some(MAX_FEERATE_SAT_PER_KVB));
        assert_eq!(odd(-1.0).sat_per_kvb(), Some(0));
        assert_eq!(odd(f64::NAN).sat_per_kvb(), None);
    }
}
