//! Raw-transaction RPC replies: `getrawtransaction` (devchain keeps a full
//! transaction index), `createrawtransaction` and `gettxout`. Reply shapes
//! follow `bitcoin-cli help <method>` of Bitcoin Core 28-30; each handler
//! names the help text and version it mirrors.

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::{
    absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
};
use serde_json::Value;

use crate::chain::chainstate::Coin;
use crate::chain::node::Chain;
use crate::json::Json;
use crate::obj;
use crate::rpc::params::{code, int_value, parse_address, Params, RpcError, RpcResult};
use crate::rpc::txjson;

/// `getrawtransaction` (devchain keeps a full transaction index, like `-txindex`).
pub(crate) fn raw_transaction(chain: &Chain, p: &Params) -> RpcResult<Json> {
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
        let bh = crate::rpc::params::parse_hash(bh, "parameter 3")?;
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
pub(crate) fn create_raw(p: &Params) -> RpcResult<Json> {
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
        let txid = crate::rpc::params::parse_hash(i.get("txid").unwrap_or(&Value::Null), "txid")?;
        // Core's AddInputs: `vout` is read as an `int`.
        let vout = match i.get("vout") {
            Some(v @ Value::Number(_)) => int_value::<i32>(v)?,
            _ => {
                return Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    "Invalid parameter, missing vout key",
                ))
            }
        };
        let vout = u32::try_from(vout).map_err(|_| {
            RpcError::new(
                code::INVALID_PARAMETER,
                "Invalid parameter, vout cannot be negative",
            )
        })?;
        let default_seq = if rbf {
            0xffff_fffd
        } else if lock != 0 {
            0xffff_fffe
        } else {
            0xffff_ffff
        };
        // A non-number `sequence` is ignored, as in Core.
        let seq = match i.get("sequence") {
            Some(v @ Value::Number(_)) => u32::try_from(int_value::<i64>(v)?).map_err(|_| {
                RpcError::new(
                    code::INVALID_PARAMETER,
                    "Invalid parameter, sequence number is out of range",
                )
            })?,
            _ => default_seq,
        };
        tx_in.push(TxIn {
            previous_output: OutPoint { txid, vout },
            script_sig: ScriptBuf::new(),
            sequence: Sequence(seq),
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
            value: crate::rpc::params::amount_from_value(&v)?,
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
pub(crate) fn txout(chain: &Chain, p: &Params) -> RpcResult<Json> {
    let txid = p.txid(0, "txid")?;
    // Core (master) reads `n` as a `uint32_t`: a negative or larger `n` is
    // "JSON integer out of range", not a clamped index.
    let vout = match p.get(1) {
        Some(v @ Value::Number(_)) => int_value::<u32>(v)?,
        // Not a number: `Params::int`'s type error.
        _ => {
            p.int(1)?;
            0
        }
    };
    let op = OutPoint { txid, vout };
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
