//! Node (non-wallet) RPC methods: blockchain, raw transactions, mempool,
//! mining, reorg control and network info. Reply shapes follow
//! `bitcoin-cli help <method>` of Bitcoin Core 28-30, checked against a
//! Core master (v30.99) node by `tests/bitcoind_compare.rs`; fields a later
//! version added are served too, so 28-30 clients and newer ones both
//! parse the replies. Each handler names the help text and version it
//! mirrors.

use std::str::FromStr;

use bitcoin::consensus::encode::{deserialize, serialize_hex};
use bitcoin::{
    absolute, transaction, Address, Amount, Block, Network, OutPoint, ScriptBuf, Sequence,
    Transaction, TxIn, TxOut, Witness,
};
use serde_json::Value;

use crate::block::MAX_BLOCK_WEIGHT;
use crate::chain::{Chain, MAX_CONF_TARGET};
use crate::chainstate::Coin;
use crate::cluster::{sigop_adjusted_weight, Chunk};
use crate::error::{Error, RejectClass};
use crate::json::Json;
use crate::mempool::{
    fee_rate, AcceptOptions, INCREMENTAL_RELAY_FEE_SAT_PER_KVB, MAX_OP_RETURN_RELAY,
    MIN_RELAY_FEE_SAT_PER_KVB,
};
use crate::obj;
use crate::rpcparams::{code, decode_tx, tx_reject_error, Params, RpcError, RpcResult};
use crate::txjson;

/// `sendrawtransaction`/`testmempoolaccept` default `maxfeerate`: 0.10 BTC/kvB.
pub const DEFAULT_MAX_RAW_TX_FEE_RATE_SAT_PER_KVB: u64 = 10_000_000;
/// Tip age beyond which Core reports initial block download (`-maxtipage`).
pub const MAX_TIP_AGE_SECS: u64 = 24 * 60 * 60;
/// Core version devchain reports in `getnetworkinfo`.
pub const REPORTED_VERSION: i64 = 280_000;
/// Protocol version reported in `getnetworkinfo`.
pub const PROTOCOL_VERSION: i64 = 70_016;
/// Largest package `testmempoolaccept` takes (`MAX_PACKAGE_COUNT`).
pub const MAX_PACKAGE_COUNT: usize = 25;

/// Parses a regtest address as Core's `DecodeDestination` would accept it.
pub fn parse_address(s: &str) -> Option<Address> {
    Address::from_str(s)
        .ok()?
        .require_network(Network::Regtest)
        .ok()
}

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
                Ok(Json::Obj(entries.iter().map(|e| (e.txid.to_string(), mempool_entry(chain, &e.txid, chunks.get(&e.txid)))).collect()))
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
            if chain.mempool().get(&txid).is_none() {
                return Err(RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Transaction not in mempool"));
            }
            Ok(mempool_entry(chain, &txid, None))
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

/// `getrawtransaction` (devchain keeps a full transaction index, like `-txindex`).
fn raw_transaction(chain: &Chain, p: &Params) -> RpcResult<Json> {
    let txid = p.txid(0, "parameter 1")?;
    let verbosity = p.verbosity(1, 0)?;
    let genesis = chain
        .state()
        .entry(&chain.state().active_hashes()[0])
        .map(|e| e.block.txdata[0].compute_txid());
    if Some(txid) == genesis {
        return Err(RpcError::new(
            code::INVALID_ADDRESS_OR_KEY,
            "The genesis block coinbase is not considered an ordinary transaction and cannot be retrieved",
        ));
    }
    let in_block = if let Some(bh) = p.get(2) {
        let bh = crate::rpcparams::parse_hash(bh, "parameter 3")?;
        let e = chain
            .state()
            .entry(&bh)
            .ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Block hash not found"))?;
        let pos = e.block.txdata.iter().position(|t| t.compute_txid() == txid).ok_or_else(|| {
            RpcError::new(code::INVALID_ADDRESS_OR_KEY, "No such transaction found in the provided block. Use gettransaction for wallet transactions.")
        })?;
        Some((e, pos))
    } else {
        chain.state().find_tx(&txid)
    };
    let not_found = || {
        RpcError::new(code::INVALID_ADDRESS_OR_KEY, "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.")
    };
    let (tx, block) = match in_block {
        Some((e, pos)) => (e.block.txdata[pos].clone(), Some((e, pos))),
        None => (
            chain
                .mempool()
                .get(&txid)
                .map(|m| m.tx.clone())
                .ok_or_else(not_found)?,
            None,
        ),
    };
    if verbosity <= 0 {
        return Ok(Json::from(serialize_hex(&tx)));
    }
    let prevouts: Option<Vec<Coin>> = if verbosity >= 2 {
        match block {
            Some((e, pos)) if !tx.is_coinbase() => chain.state().block_undo(&e.hash).map(|u| {
                let skip: usize = e.block.txdata[1..pos].iter().map(|t| t.input.len()).sum();
                u[skip..skip + tx.input.len()]
                    .iter()
                    .map(|(_, c)| c.clone())
                    .collect()
            }),
            _ => None,
        }
    } else {
        None
    };
    let mut o = txjson::tx(&tx, prevouts.as_deref(), verbosity >= 2, true);
    if let Some((e, _)) = block {
        o.push("blockhash", e.hash.to_string());
        let conf = chain.state().confirmations(&e.hash);
        if conf > 0 {
            o.push("confirmations", conf);
            o.push("time", e.block.header.time);
            o.push("blocktime", e.block.header.time);
        } else {
            o.push("confirmations", 0);
        }
    }
    Ok(o)
}

/// help createrawtransaction (Core 28-29 arguments; the `version`
/// argument of Core 30 is not taken): the unsigned transaction as hex.
fn create_raw(p: &Params) -> RpcResult<Json> {
    let inputs = p.array(0)?.cloned().unwrap_or_default();
    let locktime = p.int(2)?.unwrap_or(0);
    let lock = u32::try_from(locktime).map_err(|_| {
        RpcError::new(
            code::INVALID_PARAMETER,
            "Invalid parameter, locktime out of range",
        )
    })?;
    let rbf = p.bool(3)?.unwrap_or(false);
    let mut tx_in = Vec::new();
    for i in &inputs {
        let txid = crate::rpcparams::parse_hash(i.get("txid").unwrap_or(&Value::Null), "txid")?;
        let vout = i.get("vout").and_then(Value::as_u64).ok_or_else(|| {
            RpcError::new(
                code::INVALID_PARAMETER,
                "Invalid parameter, missing vout key",
            )
        })?;
        let default_seq = if rbf {
            0xffff_fffd
        } else if lock != 0 {
            0xffff_fffe
        } else {
            0xffff_ffff
        };
        let seq = i
            .get("sequence")
            .and_then(Value::as_u64)
            .unwrap_or(default_seq);
        tx_in.push(TxIn {
            previous_output: OutPoint {
                txid,
                vout: vout as u32,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence(seq as u32),
            witness: Witness::new(),
        });
    }
    let pairs: Vec<(String, Value)> = match p.get(1) {
        Some(Value::Object(o)) => o.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_object)
            .flat_map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect(),
        _ => {
            return Err(RpcError::new(
                code::INVALID_PARAMETER,
                "Invalid parameter, output argument must be non-null",
            ))
        }
    };
    let mut outputs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (k, v) in pairs {
        if k == "data" {
            let data = v
                .as_str()
                .and_then(|s| hex::decode(s).ok())
                .ok_or_else(|| {
                    RpcError::new(code::INVALID_PARAMETER, "Data must be hexadecimal string")
                })?;
            let push = bitcoin::script::PushBytesBuf::try_from(data)
                .map_err(|_| RpcError::new(code::INVALID_PARAMETER, "Data too large"))?;
            outputs.push(TxOut {
                value: Amount::ZERO,
                script_pubkey: ScriptBuf::new_op_return(push),
            });
            continue;
        }
        let addr = parse_address(&k).ok_or_else(|| {
            RpcError::new(
                code::INVALID_ADDRESS_OR_KEY,
                format!("Invalid Bitcoin address: {k}"),
            )
        })?;
        if !seen.insert(k.clone()) {
            return Err(RpcError::new(
                code::INVALID_PARAMETER,
                format!("Invalid parameter, duplicated address: {k}"),
            ));
        }
        outputs.push(TxOut {
            value: crate::rpcparams::amount_from_value(&v)?,
            script_pubkey: addr.script_pubkey(),
        });
    }
    let tx = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::from_consensus(lock),
        input: tx_in,
        output: outputs,
    };
    Ok(Json::from(serialize_hex(&tx)))
}

/// help gettxout (Core 28-30, unchanged in master): an object or `null`.
fn txout(chain: &Chain, p: &Params) -> RpcResult<Json> {
    let txid = p.txid(0, "txid")?;
    let vout = p.int(1)?.unwrap_or(0);
    let op = OutPoint {
        txid,
        vout: vout.clamp(0, i64::from(u32::MAX)) as u32,
    };
    let include_mempool = p.bool(2)?.unwrap_or(true);
    let best = chain.state().tip().hash.to_string();
    if include_mempool {
        if chain.mempool().spender(&op).is_some() {
            return Ok(Json::Null);
        }
        if let Some(out) = chain.mempool().output(&op) {
            return Ok(
                obj! { "bestblock" => best, "confirmations" => 0, "value" => out.value, "scriptPubKey" => txjson::script_pubkey(&out.script_pubkey), "coinbase" => false },
            );
        }
    }
    Ok(match chain.state().coin(&op) {
        None => Json::Null,
        Some(c) => obj! {
            "bestblock" => best,
            "confirmations" => chain.state().height() - c.height + 1,
            "value" => c.output.value,
            "scriptPubKey" => txjson::script_pubkey(&c.output.script_pubkey),
            "coinbase" => c.is_coinbase,
        },
    })
}

fn max_fee_rate(p: &Params, i: usize) -> RpcResult<u64> {
    Ok(p.amount(i)?
        .map_or(DEFAULT_MAX_RAW_TX_FEE_RATE_SAT_PER_KVB, |a| a.to_sat()))
}

/// help sendrawtransaction (Core 28-30): the txid as a string.
fn send_raw(chain: &mut Chain, p: &Params) -> RpcResult<Json> {
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
fn test_accept(chain: &Chain, p: &Params) -> RpcResult<Json> {
    let raw = p.array(0)?.cloned().unwrap_or_default();
    if raw.is_empty() || raw.len() > MAX_PACKAGE_COUNT {
        return Err(RpcError::new(
            code::INVALID_PARAMETER,
            format!("Array must contain between 1 and {MAX_PACKAGE_COUNT} transactions."),
        ));
    }
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
    let opts = AcceptOptions {
        max_fee_rate: Some(max_fee_rate(p, 1)?),
        ..AcceptOptions::default()
    };
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
/// `chunk` is the transaction's chunk; `None` computes it.
pub fn mempool_entry(chain: &Chain, txid: &bitcoin::Txid, chunk: Option<&Chunk>) -> Json {
    let m = chain.mempool();
    let Some(e) = m.get(txid) else {
        return Json::Null;
    };
    let anc = m.ancestors(txid);
    let desc = m.descendants(txid);
    let sum = |set: &std::collections::HashSet<bitcoin::Txid>,
               f: &dyn Fn(&crate::mempool::MempoolEntry) -> u64|
     -> u64 { set.iter().filter_map(|t| m.get(t)).map(f).sum() };
    let fee_of = |x: &crate::mempool::MempoolEntry| x.fee.to_sat();
    let size_of = |x: &crate::mempool::MempoolEntry| x.vsize;
    let own;
    let chunk = match chunk {
        Some(c) => c,
        None => {
            own = m.chunk_of(txid).unwrap_or(Chunk {
                txids: vec![*txid],
                fee: e.fee,
                weight: sigop_adjusted_weight(e.weight, e.sigop_cost),
            });
            &own
        }
    };
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
fn mempool_info(chain: &Chain) -> Json {
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
