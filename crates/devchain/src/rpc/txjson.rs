//! Core's JSON renderings of scripts, transactions, headers and blocks
//! (`ScriptToUniv`, `TxToUniv`, `blockheaderToJSON`, `blockToJSON`), with
//! key order and field types as in Bitcoin Core 28-29.

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::{Amount, Script, Transaction};

use crate::chain::chainstate::{BlockEntry, ChainState, Coin};
use crate::json::Json;
use crate::obj;
use crate::script::descriptor;

/// `scriptPubKey` object: asm, desc, hex, address (if any), type.
pub fn script_pubkey(script: &Script) -> Json {
    let mut o = obj! {
        "asm" => descriptor::asm(script),
        "desc" => descriptor::infer(script),
        "hex" => hex::encode(script.as_bytes()),
    };
    if let Some(a) = descriptor::address_of(script) {
        o.push("address", a.to_string());
    }
    o.push("type", descriptor::script_type(script));
    o
}

/// `TxToUniv`: `prevouts` (spent coins in input order) enables `fee` and,
/// with `show_prevout`, the `prevout` objects of verbosity 3.
pub fn tx(
    tx: &Transaction,
    prevouts: Option<&[Coin]>,
    show_prevout: bool,
    include_hex: bool,
) -> Json {
    let mut vin = Vec::new();
    for (i, input) in tx.input.iter().enumerate() {
        let mut o = if tx.is_coinbase() {
            obj! { "coinbase" => hex::encode(input.script_sig.as_bytes()) }
        } else {
            obj! {
                "txid" => input.previous_output.txid.to_string(),
                "vout" => input.previous_output.vout,
                "scriptSig" => obj! {
                    "asm" => descriptor::asm(&input.script_sig),
                    "hex" => hex::encode(input.script_sig.as_bytes()),
                },
            }
        };
        if !input.witness.is_empty() {
            o.push(
                "txinwitness",
                input.witness.iter().map(hex::encode).collect::<Vec<_>>(),
            );
        }
        if let (true, Some(coin)) = (show_prevout, prevouts.and_then(|p| p.get(i))) {
            o.push(
                "prevout",
                obj! {
                    "generated" => coin.is_coinbase,
                    "height" => coin.height,
                    "value" => coin.output.value,
                    "scriptPubKey" => script_pubkey(&coin.output.script_pubkey),
                },
            );
        }
        o.push("sequence", input.sequence.to_consensus_u32());
        vin.push(o);
    }
    let vout: Vec<Json> = tx
        .output
        .iter()
        .enumerate()
        .map(|(n, o)| obj! { "value" => o.value, "n" => n, "scriptPubKey" => script_pubkey(&o.script_pubkey) })
        .collect();
    let mut o = obj! {
        "txid" => tx.compute_txid().to_string(),
        "hash" => tx.compute_wtxid().to_string(),
        "version" => tx.version.0,
        "size" => tx.total_size(),
        "vsize" => tx.vsize(),
        "weight" => tx.weight().to_wu(),
        "locktime" => tx.lock_time.to_consensus_u32(),
        "vin" => Json::Arr(vin),
        "vout" => Json::Arr(vout),
    };
    if let (false, Some(p)) = (tx.is_coinbase(), prevouts) {
        let value_in: Amount = p.iter().map(|c| c.output.value).sum();
        let value_out: Amount = tx.output.iter().map(|o| o.value).sum();
        if let Some(fee) = value_in.checked_sub(value_out) {
            o.push("fee", fee);
        }
    }
    if include_hex {
        o.push("hex", serialize_hex(tx));
    }
    o
}

fn hex32(bytes: [u8; 32]) -> String {
    hex::encode(bytes)
}

/// `blockheaderToJSON` (with Core 29's `target`).
pub fn header(state: &ChainState, e: &BlockEntry) -> Json {
    let h = &e.block.header;
    let mut o = obj! {
        "hash" => e.hash.to_string(),
        "confirmations" => state.confirmations(&e.hash),
        "height" => e.height,
        "version" => h.version.to_consensus(),
        "versionHex" => format!("{:08x}", h.version.to_consensus()),
        "merkleroot" => h.merkle_root.to_string(),
        "time" => h.time,
        "mediantime" => e.median_time,
        "nonce" => h.nonce,
        "bits" => format!("{:08x}", h.bits.to_consensus()),
        "target" => hex32(h.target().to_be_bytes()),
        "difficulty" => h.difficulty_float(),
        "chainwork" => hex32(e.chainwork.to_be_bytes()),
        "nTx" => e.block.txdata.len(),
    };
    if e.height > 0 {
        o.push("previousblockhash", h.prev_blockhash.to_string());
    }
    if let Some(next) = state.next_active(&e.hash) {
        o.push("nextblockhash", next.to_string());
    }
    o
}

/// `blockToJSON` for verbosity 1 (txids), 2 (decoded transactions with
/// fee) or 3 (also prevouts).
pub fn block(state: &ChainState, e: &BlockEntry, verbosity: i64) -> Json {
    let mut o = header(state, e);
    let b = &e.block;
    o.push(
        "strippedsize",
        b.txdata.iter().map(|t| t.base_size()).sum::<usize>() + 80 + varint_len(b.txdata.len()),
    );
    o.push("size", b.total_size());
    o.push("weight", b.weight().to_wu());
    let undo: Option<Vec<Coin>> = state
        .block_undo(&e.hash)
        .map(|u| u.iter().map(|(_, c)| c.clone()).collect());
    let txs: Vec<Json> = if verbosity <= 1 {
        b.txdata
            .iter()
            .map(|t| Json::from(t.compute_txid().to_string()))
            .collect()
    } else {
        let mut pos = 0usize;
        b.txdata
            .iter()
            .map(|t| {
                let prevouts = if t.is_coinbase() {
                    None
                } else {
                    let slice = undo.as_ref().and_then(|u| u.get(pos..pos + t.input.len()));
                    pos += t.input.len();
                    slice
                };
                tx(t, prevouts, verbosity >= 3, true)
            })
            .collect()
    };
    o.push("tx", Json::Arr(txs));
    o
}

fn varint_len(n: usize) -> usize {
    match n {
        0..=0xfc => 1,
        0xfd..=0xffff => 3,
        _ => 5,
    }
}
