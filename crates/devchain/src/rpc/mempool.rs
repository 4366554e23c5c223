//! Mempool RPC replies: `sendrawtransaction`, `testmempoolaccept`,
//! `getmempoolentry` / `getrawmempool true` entries and `getmempoolinfo`.
//! Reply shapes follow `bitcoin-cli help <method>` of Bitcoin Core 28-30
//! (plus fields Core master added); each handler names the help text and
//! version it mirrors.

use bitcoin::{Amount, Transaction};

use crate::chain::node::Chain;
use crate::error::RejectClass;
use crate::json::Json;
use crate::mempool::cluster::Chunk;
use crate::mempool::pool::{
    fee_rate, AcceptOptions, INCREMENTAL_RELAY_FEE_SAT_PER_KVB, MAX_OP_RETURN_RELAY,
    MIN_RELAY_FEE_SAT_PER_KVB,
};
use crate::obj;
use crate::rpc::params::{code, decode_tx, tx_reject_error, Params, RpcError, RpcResult};

/// `sendrawtransaction`/`testmempoolaccept` default `maxfeerate`: 0.10 BTC/kvB.
pub const DEFAULT_MAX_RAW_TX_FEE_RATE_SAT_PER_KVB: u64 = 10_000_000;
/// Largest package `testmempoolaccept` takes (`MAX_PACKAGE_COUNT`).
pub const MAX_PACKAGE_COUNT: usize = 25;

/// Core's `ParseFeeRate` for `maxfeerate` (BTC/kvB): below 1 BTC/kvB.
fn max_fee_rate(p: &Params, i: usize) -> RpcResult<u64> {
    let rate = p
        .amount(i)?
        .map_or(DEFAULT_MAX_RAW_TX_FEE_RATE_SAT_PER_KVB, |a| a.to_sat());
    if rate >= Amount::ONE_BTC.to_sat() {
        return Err(RpcError::new(
            code::INVALID_PARAMETER,
            "Fee rates larger than or equal to 1BTC/kvB are not accepted",
        ));
    }
    Ok(rate)
}

/// help sendrawtransaction (Core 28-30): the txid as a string.
pub(crate) fn send_raw(chain: &mut Chain, p: &Params) -> RpcResult<Json> {
    let tx = decode_tx(p.req_str(0)?)?;
    let opts = AcceptOptions {
        max_fee_rate: Some(max_fee_rate(p, 1)?),
        max_burn: p.amount(2)?.unwrap_or(Amount::ZERO),
        ..AcceptOptions::default()
    };
    let txid = tx.compute_txid();
    match chain.accept_tx(tx, &opts) {
        Ok(a) => Ok(Json::from(a.txid.to_string())),
        // Core's BroadcastTransaction treats a known transaction as success.
        Err(r)
            if r.class == RejectClass::AlreadyInMempool && r.reason == "txn-already-in-mempool" =>
        {
            Ok(Json::from(txid.to_string()))
        }
        Err(r) => Err(tx_reject_error(&r)),
    }
}

/// help testmempoolaccept (Core 29+: `reject-details` next to
/// `reject-reason`; an extra field for Core 28 clients).
pub(crate) fn test_accept(chain: &Chain, p: &Params) -> RpcResult<Json> {
    let raw = p.array(0)?.cloned().unwrap_or_default();
    if raw.is_empty() || raw.len() > MAX_PACKAGE_COUNT {
        return Err(RpcError::new(
            code::INVALID_PARAMETER,
            format!("Array must contain between 1 and {MAX_PACKAGE_COUNT} transactions."),
        ));
    }
    // Core parses `maxfeerate` before decoding any transaction.
    let opts = AcceptOptions {
        max_fee_rate: Some(max_fee_rate(p, 1)?),
        ..AcceptOptions::default()
    };
    let txs: Vec<Transaction> = raw
        .iter()
        .map(|v| {
            v.as_str()
                .ok_or_else(|| {
                    RpcError::new(code::TYPE_ERROR, "JSON value is not a string as expected")
                })
                .and_then(decode_tx)
        })
        .collect::<RpcResult<_>>()?;
    let results = chain.test_accept_many(txs.clone(), &opts);
    Ok(Json::Arr(
        txs.iter()
            .zip(results)
            .map(|(tx, r)| {
                let mut o = obj! { "txid" => tx.compute_txid().to_string(), "wtxid" => tx.compute_wtxid().to_string() };
                match r {
                    Ok(a) => {
                        o.push("allowed", true);
                        o.push("vsize", a.vsize);
                        o.push("fees", obj! {
                            "base" => a.fee,
                            "effective-feerate" => Json::Amount(fee_rate(a.fee, a.vsize) as i64),
                            "effective-includes" => vec![a.wtxid.to_string()],
                        });
                    }
                    Err(rej) => {
                        o.push("allowed", false);
                        let reason = match rej.class {
                            RejectClass::MissingInputs => "missing-inputs".to_string(),
                            _ => rej.reason.clone(),
                        };
                        o.push("reject-reason", reason);
                        o.push("reject-details", rej.message());
                    }
                }
                o
            })
            .collect(),
    ))
}

/// Core's `entryToJSON`, the reply of `getmempoolentry` and the values of
/// `getrawmempool true`. Field set: `bitcoin-cli help getmempoolentry` of
/// Core 28-30 (no deprecated top-level fee fields since 28) plus Core
/// master's cluster-mempool `chunkweight` and `fees.chunk` (after 30.0;
/// extra fields that 28-30 clients ignore). Order as Core master prints it.
/// `chunk` is the transaction's chunk.
pub fn mempool_entry(chain: &Chain, txid: &bitcoin::Txid, chunk: &Chunk) -> Json {
    let m = chain.mempool();
    let Some(e) = m.get(txid) else {
        return Json::Null;
    };
    let anc = m.ancestors(txid);
    let desc = m.descendants(txid);
    let sum = |set: &std::collections::HashSet<bitcoin::Txid>,
               f: &dyn Fn(&crate::mempool::pool::MempoolEntry) -> u64|
     -> u64 { set.iter().filter_map(|t| m.get(t)).map(f).sum() };
    let fee_of = |x: &crate::mempool::pool::MempoolEntry| x.fee.to_sat();
    let size_of = |x: &crate::mempool::pool::MempoolEntry| x.vsize;
    obj! {
        "vsize" => e.vsize,
        "weight" => e.weight,
        "time" => e.time,
        "height" => e.height,
        "descendantcount" => desc.len() + 1,
        "descendantsize" => e.vsize + sum(&desc, &size_of),
        "ancestorcount" => anc.len() + 1,
        "ancestorsize" => e.vsize + sum(&anc, &size_of),
        "wtxid" => e.wtxid.to_string(),
        "chunkweight" => chunk.weight,
        "fees" => obj! {
            "base" => e.fee,
            "modified" => e.fee,
            "ancestor" => Json::Amount((e.fee.to_sat() + sum(&anc, &fee_of)) as i64),
            "descendant" => Json::Amount((e.fee.to_sat() + sum(&desc, &fee_of)) as i64),
            "chunk" => chunk.fee,
        },
        "depends" => m.parents(txid).iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "spentby" => m.children(txid).iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "bip125-replaceable" => m.signals_rbf(txid),
        "unbroadcast" => false,
    }
}

/// help getmempoolinfo: Core 28-29 fields plus Core 30's
/// `permitbaremultisig` and `maxdatacarriersize`, reporting devchain's own
/// policy (bare multisig is non-standard here; OP_RETURN scripts up to the
/// pre-30 83 bytes). Core master's `limitclustercount`/`limitclustersize`
/// are not reported: devchain enforces no cluster limits.
pub(crate) fn mempool_info(chain: &Chain) -> Json {
    let entries = chain.mempool().entries();
    let bytes: u64 = entries.iter().map(|e| e.vsize).sum();
    let fee: Amount = entries.iter().map(|e| e.fee).sum();
    obj! {
        "loaded" => true,
        "size" => entries.len(),
        "bytes" => bytes,
        "usage" => entries.iter().map(|e| e.weight).sum::<u64>(),
        "total_fee" => fee,
        "maxmempool" => 300_000_000u64,
        "mempoolminfee" => Json::Amount(MIN_RELAY_FEE_SAT_PER_KVB as i64),
        "minrelaytxfee" => Json::Amount(MIN_RELAY_FEE_SAT_PER_KVB as i64),
        "incrementalrelayfee" => Json::Amount(INCREMENTAL_RELAY_FEE_SAT_PER_KVB as i64),
        "unbroadcastcount" => 0,
        "fullrbf" => true,
        "permitbaremultisig" => false,
        "maxdatacarriersize" => MAX_OP_RETURN_RELAY,
    }
}
