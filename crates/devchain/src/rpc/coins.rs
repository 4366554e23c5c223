//! Wallet RPC replies about addresses, coins and signing: `getaddressinfo`,
//! `listunspent` and `signrawtransactionwithwallet`. Reply shapes follow
//! `bitcoin-cli help <method>` of Bitcoin Core 28-30 descriptor wallets;
//! each handler names the help text and version it mirrors.

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::{OutPoint, ScriptBuf, TxOut};
use serde_json::Value;

use crate::chain::node::Chain;
use crate::json::Json;
use crate::obj;
use crate::rpc::params::{
    amount_from_value, code, decode_tx, int_value, parse_address, parse_hash, type_name, wallet_of,
    Params, RpcError, RpcResult,
};
use crate::wallet::hd::AddressType;

/// Default `listunspent` maxconf.
pub const LISTUNSPENT_MAX_CONF: i64 = 9_999_999;

/// help getaddressinfo (Core 28-30 descriptor wallet field set).
pub(crate) fn address_info(chain: &Chain, w: &str, s: &str) -> RpcResult<Json> {
    let addr = parse_address(s)
        .ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Invalid address"))?;
    let spk = addr.script_pubkey();
    let wallet = wallet_of(chain, w)?;
    let key = wallet.key(&spk);
    let mut o = obj! {
        "address" => addr.to_string(),
        "scriptPubKey" => hex::encode(spk.as_bytes()),
        "ismine" => key.is_some(),
        "solvable" => key.is_some(),
    };
    if let Some(k) = key {
        o.push("desc", wallet.descriptor(k));
        o.push("parent_desc", wallet.parent_descriptor(k.kind, k.change));
    }
    o.push("iswatchonly", false);
    o.push("isscript", spk.is_p2sh() || spk.is_p2wsh());
    o.push("iswitness", spk.witness_version().is_some());
    if let Some(v) = spk.witness_version() {
        o.push("witness_version", v.to_num());
        o.push("witness_program", hex::encode(&spk.as_bytes()[2..]));
    }
    if let Some(k) = key {
        match k.kind {
            AddressType::Bech32 => o.push("pubkey", k.pubkey.to_string()),
            AddressType::Bech32m => {}
        }
        o.push("ischange", k.change);
        o.push("timestamp", wallet.birthtime());
        o.push("hdkeypath", wallet.hd_key_path(k));
        o.push("hdseedid", "0000000000000000000000000000000000000000");
        o.push("hdmasterfingerprint", wallet.fingerprint().to_string());
        o.push(
            "labels",
            if k.label.is_empty() && k.change {
                Vec::<String>::new()
            } else {
                vec![k.label.clone()]
            },
        );
    } else {
        o.push("ischange", false);
        o.push("labels", Vec::<String>::new());
    }
    Ok(o)
}

/// help listunspent (Core 28-30): `parent_descs` since 24, `ancestorcount`
/// on unconfirmed coins.
pub(crate) fn list_unspent(chain: &Chain, w: &str, p: &Params) -> RpcResult<Json> {
    let minconf = p.int(0)?.unwrap_or(1);
    let maxconf = p.int(1)?.unwrap_or(LISTUNSPENT_MAX_CONF);
    let mut filter = Vec::new();
    for a in p.array(2)?.cloned().unwrap_or_default() {
        let s = a.as_str().unwrap_or_default().to_string();
        let addr = parse_address(&s).ok_or_else(|| {
            RpcError::new(
                code::INVALID_ADDRESS_OR_KEY,
                format!("Invalid Bitcoin address: {s}"),
            )
        })?;
        filter.push(addr.script_pubkey());
    }
    let include_unsafe = p.bool(3)?.unwrap_or(true);
    let wallet = wallet_of(chain, w)?;
    let mut out = Vec::new();
    for c in chain.wallet_coins(w) {
        let conf = i64::from(c.confirmations);
        if c.is_immature() || conf < minconf || conf > maxconf || (!c.safe && !include_unsafe) {
            continue;
        }
        if !filter.is_empty() && !filter.contains(&c.output.script_pubkey) {
            continue;
        }
        let Some(k) = wallet.key(&c.output.script_pubkey) else {
            continue;
        };
        let mut o = obj! {
            "txid" => c.outpoint.txid.to_string(),
            "vout" => c.outpoint.vout,
            "address" => k.address.to_string(),
        };
        if !k.change {
            o.push("label", k.label.clone());
        }
        o.push(
            "scriptPubKey",
            hex::encode(c.output.script_pubkey.as_bytes()),
        );
        o.push("amount", c.output.value);
        o.push("confirmations", c.confirmations);
        if c.confirmations == 0 {
            let m = chain.mempool();
            o.push("ancestorcount", m.ancestors(&c.outpoint.txid).len() + 1);
        }
        o.push("spendable", true);
        o.push("solvable", true);
        o.push("desc", wallet.descriptor(k));
        o.push(
            "parent_descs",
            vec![wallet.parent_descriptor(k.kind, k.change)],
        );
        o.push("safe", c.safe);
        out.push(o);
    }
    Ok(Json::Arr(out))
}

/// help signrawtransactionwithwallet (Core 28-30): `hex`, `complete`, and
/// `errors` only when some input could not be signed.
pub(crate) fn sign_raw(chain: &Chain, w: &str, p: &Params) -> RpcResult<Json> {
    let tx = decode_tx(p.req_str(0)?)?;
    let mut extra: Vec<(OutPoint, TxOut)> = Vec::new();
    for prev in p.array(1)?.cloned().unwrap_or_default() {
        let txid = parse_hash(prev.get("txid").unwrap_or(&Value::Null), "txid")?;
        // Core's ParsePrevouts: `vout` must be a number, read as an `int`.
        let vout = match prev.get("vout") {
            None => return Err(RpcError::new(code::TYPE_ERROR, "Missing vout")),
            Some(v @ Value::Number(_)) => int_value::<i32>(v)?,
            Some(v) => {
                return Err(RpcError::new(
                    code::TYPE_ERROR,
                    format!(
                        "JSON value of type {} for field vout is not of expected type number",
                        type_name(v)
                    ),
                ))
            }
        };
        let vout = u32::try_from(vout)
            .map_err(|_| RpcError::new(code::DESERIALIZATION_ERROR, "vout cannot be negative"))?;
        let spk = prev
            .get("scriptPubKey")
            .and_then(Value::as_str)
            .and_then(|s| hex::decode(s).ok())
            .ok_or_else(|| {
                RpcError::new(
                    code::DESERIALIZATION_ERROR,
                    "scriptPubKey must be hexadecimal string",
                )
            })?;
        let amount = amount_from_value(prev.get("amount").unwrap_or(&Value::Null))
            .map_err(|_| RpcError::new(code::INVALID_PARAMETER, "Missing amount"))?;
        extra.push((
            OutPoint { txid, vout },
            TxOut {
                value: amount,
                script_pubkey: ScriptBuf::from(spk),
            },
        ));
    }
    let sighash = match p.str(2)? {
        None | Some("DEFAULT") => None,
        Some(s) => Some(match s {
            "ALL" => EcdsaSighashType::All,
            "NONE" => EcdsaSighashType::None,
            "SINGLE" => EcdsaSighashType::Single,
            "ALL|ANYONECANPAY" => EcdsaSighashType::AllPlusAnyoneCanPay,
            "NONE|ANYONECANPAY" => EcdsaSighashType::NonePlusAnyoneCanPay,
            "SINGLE|ANYONECANPAY" => EcdsaSighashType::SinglePlusAnyoneCanPay,
            other => {
                return Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    format!("'{other}' is not a valid sighash parameter."),
                ))
            }
        }),
    };
    let prevouts: Vec<Option<TxOut>> = tx
        .input
        .iter()
        .map(|i| {
            let op = i.previous_output;
            extra
                .iter()
                .find(|(o, _)| *o == op)
                .map(|(_, t)| t.clone())
                .or_else(|| chain.state().coin(&op).map(|c| c.output.clone()))
                .or_else(|| {
                    if chain.mempool().spender(&op).is_none() {
                        chain.mempool().output(&op).cloned()
                    } else {
                        None
                    }
                })
        })
        .collect();
    let wallet = wallet_of(chain, w)?;
    let (signed, errors) = wallet.sign(&tx, &prevouts, sighash);
    let mut o = obj! { "hex" => serialize_hex(&signed), "complete" => errors.is_empty() };
    if !errors.is_empty() {
        let errs: Vec<Json> = errors
            .iter()
            .map(|(i, e)| {
                let input = &signed.input[*i];
                obj! {
                    "txid" => input.previous_output.txid.to_string(),
                    "vout" => input.previous_output.vout,
                    "witness" => input.witness.iter().map(hex::encode).collect::<Vec<_>>(),
                    "scriptSig" => hex::encode(input.script_sig.as_bytes()),
                    "sequence" => input.sequence.to_consensus_u32(),
                    "error" => e.clone(),
                }
            })
            .collect();
        o.push("errors", Json::Arr(errs));
    }
    Ok(o)
}
