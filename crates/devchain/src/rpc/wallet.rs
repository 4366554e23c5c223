//! Wallet RPC methods, served on `/` (when exactly one wallet is loaded)
//! and `/wallet/<name>`: wallet resolution, dispatch, and the wallet
//! lifecycle, address, balance, status and payment replies (addresses,
//! coins and signing are in [`crate::rpc::coins`], transactions in
//! [`crate::rpc::wallettx`]). Reply shapes follow `bitcoin-cli help <method>` of
//! Bitcoin Core 28-30 descriptor wallets, checked against a Core master
//! (v30.99) node by `tests/bitcoind_compare.rs`. Where versions differ the
//! reply is the union (fields later versions added, and fields Core 30
//! removed that 28-29 clients still read); each handler names its version.

use bitcoin::Amount;
use serde_json::Value;

use crate::chain::node::Chain;
use crate::error::Error;
use crate::json::Json;
use crate::obj;
use crate::rpc::coins::{address_info, list_unspent, sign_raw};
use crate::rpc::params::{
    code, parse_address, wallet_not_found, wallet_of, Params, RpcError, RpcResult,
};
use crate::rpc::wallettx::{list_transactions, transaction_json};
use crate::wallet::hd::AddressType;

/// Core's `walletversion` for descriptor wallets (`FEATURE_LATEST`).
pub const WALLET_VERSION: i64 = 169_900;
/// Keypool size Core reports for a fresh descriptor wallet (`-keypool`).
pub const KEYPOOL_SIZE: i64 = 1_000;

/// Methods that need a wallet.
pub const WALLET_METHODS: &[&str] = &[
    "getnewaddress",
    "getrawchangeaddress",
    "getaddressinfo",
    "getbalance",
    "getbalances",
    "listunspent",
    "gettransaction",
    "listtransactions",
    "signrawtransactionwithwallet",
    "getwalletinfo",
    "sendtoaddress",
    "unloadwallet",
    "setlabel",
];

/// Core's `GetWalletForJSONRPCRequest`.
fn resolve(chain: &Chain, uri_wallet: Option<&str>) -> RpcResult<String> {
    if let Some(name) = uri_wallet {
        return chain
            .wallet(name)
            .map(|w| w.name().to_string())
            .ok_or_else(wallet_not_found);
    }
    let names = chain.wallet_names();
    match names.len() {
        1 => Ok(names[0].clone()),
        0 => Err(RpcError::new(
            code::WALLET_NOT_FOUND,
            "No wallet is loaded. Load a wallet using loadwallet or create a new one with createwallet. (Note: A default wallet is no longer automatically created)",
        )),
        _ => Err(RpcError::new(
            code::WALLET_NOT_SPECIFIED,
            "Wallet file not specified (must request wallet RPC through /wallet/<filename> uri-path).",
        )),
    }
}

fn address_type(p: &Params, i: usize) -> RpcResult<AddressType> {
    match p.str(i)? {
        None => Ok(AddressType::Bech32),
        Some(s) => match AddressType::parse(s) {
            Some(Ok(t)) => Ok(t),
            Some(Err(())) => Err(RpcError::new(
                code::WALLET_KEYPOOL_RAN_OUT,
                "Error: This wallet has no available keys",
            )),
            None => Err(RpcError::new(
                code::INVALID_ADDRESS_OR_KEY,
                format!("Unknown address type '{s}'"),
            )),
        },
    }
}

/// Dispatches a wallet method; `None` if the name is not one of them.
pub fn dispatch(
    chain: &mut Chain,
    method: &str,
    params: &Value,
    uri_wallet: Option<&str>,
) -> Option<RpcResult<Json>> {
    let p = |names: &[&str], req: usize| Params::new(method, names, req, params);
    let lifecycle = match method {
        "createwallet" => Some(
            p(&["wallet_name", "disable_private_keys", "blank", "passphrase", "avoid_reuse", "descriptors", "load_on_startup", "external_signer"], 1)
                .and_then(|p| {
                    let name = p.req_str(0)?.to_string();
                    match chain.create_wallet(&name, None) {
                        Ok(()) => Ok(obj! { "name" => name }),
                        Err(Error::WalletExists(_)) => Err(RpcError::new(
                            code::WALLET_ERROR,
                            format!("Wallet file verification failed. Failed to create database path '{name}'. Database already exists."),
                        )),
                        Err(e) => Err(e.into()),
                    }
                }),
        ),
        "loadwallet" => Some(p(&["filename", "load_on_startup"], 1).and_then(|p| {
            let name = p.req_str(0)?.to_string();
            match chain.load_wallet(&name) {
                Ok(()) => Ok(obj! { "name" => name }),
                Err(Error::WalletNotFound(_)) => Err(RpcError::new(
                    code::WALLET_NOT_FOUND,
                    format!("Wallet file verification failed. Failed to load database path '{name}'. Path does not exist."),
                )),
                Err(e) => Err(e.into()),
            }
        })),
        "listwallets" => Some(p(&[], 0).map(|_| Json::from(chain.wallet_names()))),
        "listwalletdir" => Some(p(&[], 0).map(|_| {
            let mut names = chain.wallet_names();
            names.extend(chain.unloaded_wallet_names());
            names.sort();
            obj! { "wallets" => names.into_iter().map(|n| obj! { "name" => n }).collect::<Vec<_>>() }
        })),
        _ => None,
    };
    if lifecycle.is_some() {
        return lifecycle;
    }
    if !WALLET_METHODS.contains(&method) {
        return None;
    }
    let uri_or_param = if method == "unloadwallet" {
        match params {
            Value::Array(a) => a.first().and_then(Value::as_str).or(uri_wallet),
            Value::Object(o) => o.get("wallet_name").and_then(Value::as_str).or(uri_wallet),
            _ => uri_wallet,
        }
    } else {
        uri_wallet
    };
    let name = match resolve(chain, uri_or_param) {
        Ok(n) => n,
        Err(e) => return Some(Err(e)),
    };
    Some(call(chain, method, &name, &p))
}

fn call(
    chain: &mut Chain,
    method: &str,
    w: &str,
    p: &dyn Fn(&[&str], usize) -> RpcResult<Params>,
) -> RpcResult<Json> {
    match method {
        "getnewaddress" => {
            let p = p(&["label", "address_type"], 0)?;
            let label = p.str(0)?.unwrap_or("").to_string();
            let kind = address_type(&p, 1)?;
            Ok(Json::from(
                chain.new_address(w, kind, false, &label)?.to_string(),
            ))
        }
        "getrawchangeaddress" => {
            let p = p(&["address_type"], 0)?;
            let kind = address_type(&p, 0)?;
            Ok(Json::from(
                chain.new_address(w, kind, true, "")?.to_string(),
            ))
        }
        "setlabel" => {
            let p = p(&["address", "label"], 2)?;
            let addr = parse_address(p.req_str(0)?).ok_or_else(|| {
                RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Invalid Bitcoin address")
            })?;
            let label = p.req_str(1)?.to_string();
            let wallet = chain.wallet_mut(w).ok_or_else(wallet_not_found)?;
            wallet.set_label(&addr.script_pubkey(), &label);
            Ok(Json::Null)
        }
        "getaddressinfo" => {
            let p = p(&["address"], 1)?;
            address_info(chain, w, p.req_str(0)?)
        }
        // help getbalance (Core 28-30): a bare amount.
        "getbalance" => {
            let p = p(&["dummy", "minconf", "include_watchonly", "avoid_reuse"], 0)?;
            if let Some(d) = p.get(0) {
                if d.as_str() != Some("*") {
                    return Err(RpcError::new(
                        -32,
                        "dummy first argument must be excluded or set to \"*\".",
                    ));
                }
            }
            let minconf = p.int(1)?.unwrap_or(0);
            let coins = chain.wallet_coins(w);
            let total: Amount = coins
                .iter()
                .filter(|c| !c.is_immature() && c.safe && i64::from(c.confirmations) >= minconf)
                .map(|c| c.output.value)
                .sum();
            Ok(Json::from(total))
        }
        "getbalances" => {
            p(&[], 0)?;
            let b = chain.balances(w);
            // help getbalances (Core 26+: `lastprocessedblock`; no watchonly since 30).
            Ok(obj! {
                "mine" => obj! { "trusted" => b.trusted, "untrusted_pending" => b.untrusted_pending, "immature" => b.immature },
                "lastprocessedblock" => last_processed_block(chain),
            })
        }
        "listunspent" => {
            let p = p(
                &[
                    "minconf",
                    "maxconf",
                    "addresses",
                    "include_unsafe",
                    "query_options",
                ],
                0,
            )?;
            list_unspent(chain, w, &p)
        }
        // help gettransaction: see `transaction_json`.
        "gettransaction" => {
            let p = p(&["txid", "include_watchonly", "verbose"], 1)?;
            let txid = p.txid(0, "txid")?;
            let v = chain.wallet_tx(w, &txid).ok_or_else(|| {
                RpcError::new(
                    code::INVALID_ADDRESS_OR_KEY,
                    "Invalid or non-wallet transaction id",
                )
            })?;
            let mut o = transaction_json(&v, p.bool(2)?.unwrap_or(false));
            o.push("lastprocessedblock", last_processed_block(chain));
            Ok(o)
        }
        // help listtransactions (Core 28-30 and master): rows as
        // `detail_json` with the transaction fields; see `list_transactions`.
        "listtransactions" => {
            let p = p(&["label", "count", "skip", "include_watchonly"], 0)?;
            list_transactions(chain, w, &p)
        }
        "signrawtransactionwithwallet" => {
            let p = p(&["hexstring", "prevtxs", "sighashtype"], 1)?;
            sign_raw(chain, w, &p)
        }
        "getwalletinfo" => {
            p(&[], 0)?;
            let wallet = wallet_of(chain, w)?;
            let b = chain.balances(w);
            // help getwalletinfo: Core 28-29 fields (30 dropped `balance`,
            // `unconfirmed_balance` and `immature_balance`; kept here for
            // 28-29 clients) plus `flags` from Core master (after 30.0).
            let flags = WalletFlags {
                avoid_reuse: false,
                blank: false,
                disable_private_keys: false,
                descriptors: true,
                external_signer: false,
            };
            Ok(obj! {
                "walletname" => wallet.name(),
                "walletversion" => WALLET_VERSION,
                "format" => "sqlite",
                "balance" => b.trusted,
                "unconfirmed_balance" => b.untrusted_pending,
                "immature_balance" => b.immature,
                "txcount" => wallet.txids().len(),
                "keypoolsize" => KEYPOOL_SIZE,
                "keypoolsize_hd_internal" => KEYPOOL_SIZE,
                "paytxfee" => Json::Amount(0),
                "private_keys_enabled" => !flags.disable_private_keys,
                "avoid_reuse" => flags.avoid_reuse,
                "scanning" => false,
                "descriptors" => flags.descriptors,
                "external_signer" => flags.external_signer,
                "blank" => flags.blank,
                "birthtime" => wallet.birthtime(),
                "flags" => flags.names(),
                "lastprocessedblock" => last_processed_block(chain),
            })
        }
        "sendtoaddress" => {
            let p = p(
                &[
                    "address",
                    "amount",
                    "comment",
                    "comment_to",
                    "subtractfeefromamount",
                    "replaceable",
                    "conf_target",
                    "estimate_mode",
                    "avoid_reuse",
                    "fee_rate",
                    "verbose",
                ],
                2,
            )?;
            let addr = parse_address(p.req_str(0)?)
                .ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Invalid address"))?;
            let amount = p.amount(1)?.unwrap_or(Amount::ZERO);
            if amount == Amount::ZERO {
                return Err(RpcError::new(code::TYPE_ERROR, "Invalid amount for send"));
            }
            // `fee_rate` is in sat/vB; the wallet works in sat/kvB.
            let fee_rate = match p.get(9) {
                Some(v) => Some(
                    (v.as_f64()
                        .ok_or_else(|| RpcError::new(code::TYPE_ERROR, "Invalid fee_rate"))?
                        * 1000.0) as u64,
                ),
                None => None,
            };
            let txid = chain
                .send_to(w, addr.script_pubkey(), amount, fee_rate)
                .map_err(|e| match e {
                    Error::InsufficientFunds => {
                        RpcError::new(code::WALLET_INSUFFICIENT_FUNDS, "Insufficient funds")
                    }
                    Error::TxRejected(r) => RpcError::new(code::WALLET_ERROR, r.message()),
                    e => e.into(),
                })?;
            Ok(Json::from(txid.to_string()))
        }
        "unloadwallet" => {
            p(&["wallet_name", "load_on_startup"], 0)?;
            chain.unload_wallet(w)?;
            Ok(obj! {})
        }
        _ => Err(RpcError::new(code::METHOD_NOT_FOUND, "Method not found")),
    }
}

/// `lastprocessedblock` of `getbalances`, `gettransaction` and
/// `getwalletinfo` (Core 26+): the block the wallet has synced to.
fn last_processed_block(chain: &Chain) -> Json {
    let tip = chain.state().tip();
    obj! { "hash" => tip.hash.to_string(), "height" => tip.height }
}

/// Core's wallet flags (`WALLET_FLAG_*`) as `getwalletinfo` lists them.
struct WalletFlags {
    avoid_reuse: bool,
    blank: bool,
    disable_private_keys: bool,
    descriptors: bool,
    external_signer: bool,
}

impl WalletFlags {
    /// Names in Core's bit order (`WALLET_FLAG_TO_STRING`). A descriptor
    /// wallet with keys caches its last hardened xpubs at creation, hence
    /// `last_hardened_xpub_cached`.
    fn names(&self) -> Vec<&'static str> {
        let xpub_cached = self.descriptors && !self.disable_private_keys && !self.blank;
        [
            (self.avoid_reuse, "avoid_reuse"),
            (xpub_cached, "last_hardened_xpub_cached"),
            (self.disable_private_keys, "disable_private_keys"),
            (self.blank, "blank"),
            (self.descriptors, "descriptor_wallet"),
            (self.external_signer, "external_signer"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect()
    }
}
