//! Node (non-wallet) RPC methods: dispatch of every node method, and the
//! blockchain, mining, reorg-control and network replies (raw transactions
//! are in [`crate::rpc::rawtx`], the mempool in [`crate::rpc::mempool`]).
//! Reply shapes follow
//! `bitcoin-cli help <method>` of Bitcoin Core 28-30, checked against a
//! Core master (v30.99) node by `tests/bitcoind_compare.rs`; fields a later
//! version added are served too, so 28-30 clients and newer ones both
//! parse the replies. Each handler names the help text and version it
//! mirrors.

use bitcoin::consensus::encode::{deserialize, serialize_hex};
use bitcoin::Block;
use serde_json::Value;

use crate::chain::block::MAX_BLOCK_WEIGHT;
use crate::chain::node::{Chain, FeeEstimateSetting, MAX_CONF_TARGET};
use crate::error::Error;
use crate::json::Json;
use crate::mempool::pool::{INCREMENTAL_RELAY_FEE_SAT_PER_KVB, MIN_RELAY_FEE_SAT_PER_KVB};
use crate::obj;
use crate::rpc::mempool::{mempool_entry, mempool_info, send_raw, test_accept};
use crate::rpc::params::{
    amount_from_value, code, decode_tx, parse_address, Params, RpcError, RpcResult,
};
use crate::rpc::rawtx::{create_raw, raw_transaction, txout};
use crate::rpc::txjson;

/// Tip age beyond which Core reports initial block download (`-maxtipage`).
pub const MAX_TIP_AGE_SECS: u64 = 24 * 60 * 60;
/// Core version devchain reports in `getnetworkinfo`.
pub const REPORTED_VERSION: i64 = 280_000;
/// Protocol version reported in `getnetworkinfo`.
pub const PROTOCOL_VERSION: i64 = 70_016;

fn not_found_block() -> RpcError {
    RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Block not found")
}

/// Dispatches a node method; `None` if the name is not one of them.
pub fn dispatch(chain: &mut Chain, method: &str, params: &Value) -> Option<RpcResult<Json>> {
    let p = |names: &[&str], req: usize| Params::new(method, names, req, params);
    Some(match method {
        "getblockchaininfo" => p(&[], 0).map(|_| blockchain_info(chain)),
        "getblockcount" => p(&[], 0).map(|_| Json::from(chain.state().height())),
        "getbestblockhash" => p(&[], 0).map(|_| Json::from(chain.state().tip().hash.to_string())),
        "getblockhash" => p(&["height"], 1).and_then(|p| {
            let h = p.int(0)?.unwrap_or(-1);
            u32::try_from(h)
                .ok()
                .and_then(|h| chain.state().hash_at(h))
                .map(|h| Json::from(h.to_string()))
                .ok_or_else(|| RpcError::new(code::INVALID_PARAMETER, "Block height out of range"))
        }),
        "getblockheader" => p(&["blockhash", "verbose"], 1).and_then(|p| {
            let hash = p.block_hash(0, "hash")?;
            let e = chain.state().entry(&hash).ok_or_else(not_found_block)?;
            if p.bool(1)?.unwrap_or(true) {
                Ok(txjson::header(chain.state(), e))
            } else {
                Ok(Json::from(serialize_hex(&e.block.header)))
            }
        }),
        "getblock" => p(&["blockhash", "verbosity"], 1).and_then(|p| {
            let hash = p.block_hash(0, "blockhash")?;
            let verbosity = p.verbosity(1, 1)?;
            let e = chain.state().entry(&hash).ok_or_else(not_found_block)?;
            Ok(if verbosity <= 0 {
                Json::from(serialize_hex(e.block.as_ref()))
            } else {
                txjson::block(chain.state(), e, verbosity)
            })
        }),
        "getchaintips" => p(&[], 0).map(|_| chain_tips(chain)),
        "getrawtransaction" => p(&["txid", "verbose", "blockhash"], 1).and_then(|p| raw_transaction(chain, &p)),
        "decoderawtransaction" => p(&["hexstring", "iswitness"], 1)
            .and_then(|p| Ok(txjson::tx(&decode_tx(p.req_str(0)?)?, None, false, false))),
        "createrawtransaction" => {
            p(&["inputs", "outputs", "locktime", "replaceable"], 2).and_then(|p| create_raw(&p))
        }
        "gettxout" => p(&["txid", "n", "include_mempool"], 2).and_then(|p| txout(chain, &p)),
        "sendrawtransaction" => p(&["hexstring", "maxfeerate", "maxburnamount"], 1).and_then(|p| send_raw(chain, &p)),
        "testmempoolaccept" => p(&["rawtxs", "maxfeerate"], 1).and_then(|p| test_accept(chain, &p)),
        "getrawmempool" => p(&["verbose", "mempool_sequence"], 0).and_then(|p| {
            let verbose = p.bool(0)?.unwrap_or(false);
            let entries = chain.mempool().entries();
            if verbose {
                let chunks = chain.mempool().all_chunks();
                // Every mempool transaction has a chunk.
                Ok(Json::Obj(entries.iter().filter_map(|e| Some((e.txid.to_string(), mempool_entry(chain, &e.txid, chunks.get(&e.txid)?)))).collect()))
            } else {
                let ids = Json::Arr(entries.iter().map(|e| Json::from(e.txid.to_string())).collect());
                if p.bool(1)?.unwrap_or(false) {
                    Ok(obj! { "txids" => ids, "mempool_sequence" => entries.len() })
                } else {
                    Ok(ids)
                }
            }
        }),
        "getmempoolentry" => p(&["txid"], 1).and_then(|p| {
            let txid = p.txid(0, "parameter 1")?;
            // Only a mempool transaction has a chunk.
            let chunk = chain.mempool().chunk_of(&txid).ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Transaction not in mempool"))?;
            Ok(mempool_entry(chain, &txid, &chunk))
        }),
        "getmempoolinfo" => p(&[], 0).map(|_| mempool_info(chain)),
        "estimatesmartfee" => p(&["conf_target", "estimate_mode"], 1).and_then(|p| {
            let target = p.int(0)?.unwrap_or(0);
            if !(1..=i64::from(MAX_CONF_TARGET)).contains(&target) {
                return Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    format!("Invalid conf_target, must be between 1 and {MAX_CONF_TARGET}"),
                ));
            }
            if let Some(mode) = p.str(1)? {
                if !["unset", "economical", "conservative"].contains(&mode.to_ascii_lowercase().as_str()) {
                    return Err(RpcError::new(
                        code::INVALID_PARAMETER,
                        "Invalid estimate_mode parameter, must be one of: \"unset\", \"economical\", \"conservative\"",
                    ));
                }
            }
            // Core never answers for a 1-block target; it uses 2.
            let target = (target as u32).max(2);
            Ok(match chain.estimate_fee(target) {
                Some(rate) => obj! { "feerate" => Json::Amount(rate as i64), "blocks" => target },
                None => obj! { "errors" => vec!["Insufficient data or no feerate found"], "blocks" => 0 },
            })
        }),
        // Not Core's: a test's market. `feerate` in BTC/kvB fixes the
        // estimate for every target, "insufficient" makes it Core's "no
        // data" answer, null returns to the samples.
        "devchain_setfeeestimate" => p(&["feerate"], 0).and_then(|p| {
            let setting = match p.get(0) {
                None | Some(Value::Null) => FeeEstimateSetting::Samples,
                Some(Value::String(s)) if s == "insufficient" => FeeEstimateSetting::Insufficient,
                Some(v) => FeeEstimateSetting::Fixed(amount_from_value(v)?.to_sat()),
            };
            chain.set_fee_estimate(setting);
            Ok(Json::Null)
        }),
        "generatetoaddress" => p(&["nblocks", "address", "maxtries"], 2).and_then(|p| {
            let n = p.int(0)?.unwrap_or(0).max(0) as u32;
            let addr = parse_address(p.req_str(1)?)
                .ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Error: Invalid address"))?;
            let hashes = chain.generate(n, &addr.script_pubkey())?;
            Ok(Json::Arr(hashes.iter().map(|h| Json::from(h.to_string())).collect()))
        }),
        "generateblock" => p(&["output", "transactions", "submit"], 2).and_then(|p| generate_block(chain, &p)),
        "submitblock" => p(&["hexdata", "dummy"], 1).and_then(|p| {
            let bytes = hex::decode(p.req_str(0)?).ok();
            let block: Block = bytes
                .and_then(|b| deserialize(&b).ok())
                .ok_or_else(|| RpcError::new(code::DESERIALIZATION_ERROR, "Block decode failed"))?;
            Ok(match chain.submit_block(block) {
                Ok(_) => Json::Null,
                Err(Error::DuplicateBlock(_)) => Json::from("duplicate"),
                Err(Error::BlockInvalid(r)) => Json::from(r),
                Err(e) => return Err(e.into()),
            })
        }),
        "invalidateblock" => p(&["blockhash"], 1).and_then(|p| {
            let h = p.block_hash(0, "blockhash")?;
            chain.invalidate(&h).map(|_| Json::Null).map_err(|e| match e {
                Error::BlockInvalid(m) => RpcError::new(code::MISC_ERROR, m),
                e => e.into(),
            })
        }),
        "reconsiderblock" => p(&["blockhash"], 1).and_then(|p| {
            let h = p.block_hash(0, "blockhash")?;
            chain.reconsider(&h).map(|_| Json::Null).map_err(Into::into)
        }),
        "setmocktime" => p(&["timestamp"], 1).and_then(|p| {
            let t = p.int(0)?.unwrap_or(0);
            if t < 0 {
                return Err(RpcError::new(code::INVALID_PARAMETER, "Mocktime cannot be negative: ".to_string() + &t.to_string()));
            }
            chain.set_mock_time(t as u64);
            Ok(Json::Null)
        }),
        "getnetworkinfo" => p(&[], 0).map(|_| network_info()),
        _ => return None,
    })
}

/// `getblockchaininfo` (Core 29 field set; `warnings` is an array since 28).
fn blockchain_info(chain: &Chain) -> Json {
    let s = chain.state();
    let tip = s.tip();
    let h = &tip.block.header;
    let size: usize = s
        .active_hashes()
        .iter()
        .filter_map(|x| s.entry(x))
        .map(|e| e.block.total_size())
        .sum();
    obj! {
        "chain" => "regtest",
        "blocks" => tip.height,
        "headers" => tip.height,
        "bestblockhash" => tip.hash.to_string(),
        "bits" => format!("{:08x}", h.bits.to_consensus()),
        "target" => hex::encode(h.target().to_be_bytes()),
        "difficulty" => h.difficulty_float(),
        "time" => h.time,
        "mediantime" => tip.median_time,
        "verificationprogress" => 1.0,
        "initialblockdownload" => u64::from(h.time) + MAX_TIP_AGE_SECS < chain.now(),
        "chainwork" => hex::encode(tip.chainwork.to_be_bytes()),
        "size_on_disk" => size,
        "pruned" => false,
        "warnings" => Json::Arr(vec![]),
    }
}

/// help getchaintips (Core 28-30, unchanged in master).
fn chain_tips(chain: &Chain) -> Json {
    let s = chain.state();
    let mut tips = s.tips();
    tips.sort_by_key(|e| std::cmp::Reverse(e.height));
    Json::Arr(
        tips.into_iter()
            .map(|e| {
                let mut fork = e;
                while !s.is_active(&fork.hash) {
                    match s.entry(&fork.block.header.prev_blockhash) {
                        Some(p) => fork = p,
                        None => break,
                    }
                }
                let status = if s.is_active(&e.hash) {
                    "active"
                } else if e.failed {
                    "invalid"
                } else {
                    "valid-fork"
                };
                obj! { "height" => e.height, "hash" => e.hash.to_string(), "branchlen" => e.height - fork.height, "status" => status }
            })
            .collect(),
    )
}

/// help generateblock (Core 28-30): `{hash}`, plus `hex` when not submitted.
fn generate_block(chain: &mut Chain, p: &Params) -> RpcResult<Json> {
    let addr = parse_address(p.req_str(0)?).ok_or_else(|| {
        RpcError::new(
            code::INVALID_ADDRESS_OR_KEY,
            "Error: Invalid address or descriptor",
        )
    })?;
    let mut txs = Vec::new();
    for v in p.array(1)?.cloned().unwrap_or_default() {
        let s = v.as_str().ok_or_else(|| {
            RpcError::new(code::TYPE_ERROR, "JSON value is not a string as expected")
        })?;
        if let Ok(txid) = s.parse::<bitcoin::Txid>() {
            let e = chain.mempool().get(&txid).ok_or_else(|| {
                RpcError::new(
                    code::INVALID_ADDRESS_OR_KEY,
                    format!("Transaction {txid} not in mempool."),
                )
            })?;
            txs.push(e.tx.clone());
        } else {
            txs.push(decode_tx(s).map_err(|_| RpcError::new(code::DESERIALIZATION_ERROR, format!("Transaction decode failed for {s}. Make sure the tx has at least one input.")))?);
        }
    }
    let weight: u64 = txs.iter().map(|t| t.weight().to_wu()).sum();
    if weight > MAX_BLOCK_WEIGHT {
        return Err(RpcError::new(
            code::VERIFY_ERROR,
            "TestBlockValidity failed: bad-blk-weight",
        ));
    }
    let block = chain
        .build_block(&addr.script_pubkey(), Some(txs))
        .map_err(|e| {
            RpcError::new(
                code::VERIFY_ERROR,
                format!(
                    "TestBlockValidity failed: {}",
                    match e {
                        Error::BlockInvalid(r) => r,
                        e => e.to_string(),
                    }
                ),
            )
        })?;
    let hash = block.block_hash().to_string();
    if p.bool(2)?.unwrap_or(true) {
        chain.submit_block(block).map_err(|e| {
            RpcError::new(code::VERIFY_ERROR, format!("TestBlockValidity failed: {e}"))
        })?;
        Ok(obj! { "hash" => hash })
    } else {
        Ok(obj! { "hash" => hash, "hex" => serialize_hex(&block) })
    }
}

/// help getnetworkinfo (Core 28-30 field set; devchain has no peers, so
/// `networks` and `localaddresses` are empty).
fn network_info() -> Json {
    obj! {
        "version" => REPORTED_VERSION,
        "subversion" => format!("/Satoshi:28.0.0/devchain:{}/", env!("CARGO_PKG_VERSION")),
        "protocolversion" => PROTOCOL_VERSION,
        "localservices" => "0000000000000c09",
        "localservicesnames" => vec!["NETWORK", "WITNESS", "NETWORK_LIMITED", "P2P_V2"],
        "localrelay" => true,
        "timeoffset" => 0,
        "networkactive" => true,
        "connections" => 0,
        "connections_in" => 0,
        "connections_out" => 0,
        "networks" => Json::Arr(vec![]),
        "relayfee" => Json::Amount(MIN_RELAY_FEE_SAT_PER_KVB as i64),
        "incrementalfee" => Json::Amount(INCREMENTAL_RELAY_FEE_SAT_PER_KVB as i64),
        "localaddresses" => Json::Arr(vec![]),
        "warnings" => Json::Arr(vec![]),
    }
}
