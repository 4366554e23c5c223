//! Wallet transaction RPC replies: `gettransaction` and `listtransactions`
//! with Core's row order and fields. Reply shapes follow `bitcoin-cli help
//! <method>` of Bitcoin Core 28-30 (plus fields Core master added); each
//! function names the help text and version it mirrors.

use bitcoin::consensus::encode::serialize_hex;

use crate::chain::node::Chain;
use crate::json::Json;
use crate::obj;
use crate::rpc::params::{code, Params, RpcError, RpcResult};
use crate::wallet::tx::{Detail, WalletTxView};

/// Default `listtransactions` count.
pub const LISTTRANSACTIONS_DEFAULT_COUNT: i64 = 10;

/// One entry of Core's `ListTransactions` (help listtransactions and
/// gettransaction `details`, Core master; 28-29 put `abandoned` on sent
/// entries only, so received ones carry one extra field for them). With
/// `tx`, the transaction fields follow as in `listtransactions`.
fn detail_json(d: &Detail, tx: Option<&WalletTxView>) -> Json {
    let mut o = obj! {};
    if let Some(a) = &d.address {
        o.push("address", a.clone());
    }
    if let Some(p) = &d.parent_descs {
        o.push("parent_descs", p.clone());
    }
    o.push("category", d.category);
    o.push("amount", Json::Amount(d.amount.to_sat()));
    if let Some(l) = &d.label {
        o.push("label", l.clone());
    }
    o.push("vout", d.vout);
    // devchain has no `abandontransaction`, so nothing is ever abandoned.
    if d.category == "send" {
        o.push("fee", Json::Amount(d.fee.unwrap_or_default().to_sat()));
        if let Some(v) = tx {
            append_tx_fields(v, &mut o);
        }
        o.push("abandoned", false);
    } else {
        o.push("abandoned", false);
        if let Some(v) = tx {
            append_tx_fields(v, &mut o);
        }
    }
    o
}

/// Core's `listtransactions`: newest transactions first, each one's sent
/// then received entries; skip `skip`, take `count`, and return them
/// reversed (oldest first). A label filter keeps only received entries
/// with that label.
pub(crate) fn list_transactions(chain: &Chain, w: &str, p: &Params) -> RpcResult<Json> {
    let label = match p.str(0)? {
        None | Some("*") => None,
        Some("") => {
            return Err(RpcError::new(
                code::INVALID_PARAMETER,
                "Label argument must be a valid label name or \"*\".",
            ))
        }
        Some(l) => Some(l.to_string()),
    };
    let count = p.int(1)?.unwrap_or(LISTTRANSACTIONS_DEFAULT_COUNT);
    let skip = p.int(2)?.unwrap_or(0);
    if count < 0 {
        return Err(RpcError::new(code::INVALID_PARAMETER, "Negative count"));
    }
    if skip < 0 {
        return Err(RpcError::new(code::INVALID_PARAMETER, "Negative from"));
    }
    let txids = chain.wallet(w).map(|x| x.txids()).unwrap_or_default();
    // Newest first, as Core walks `wtxOrdered` backwards. Rows past
    // `skip + count` are never returned, so stop once that many are built.
    let wanted = (skip as usize).saturating_add(count as usize);
    let mut newest_first = Vec::new();
    'txs: for t in txids.iter().rev() {
        if newest_first.len() >= wanted {
            break;
        }
        let Some(v) = chain.wallet_tx(w, t) else {
            continue;
        };
        for d in &v.details {
            if let Some(l) = &label {
                if d.category == "send" || d.label.as_deref() != Some(l.as_str()) {
                    continue;
                }
            }
            if newest_first.len() >= wanted {
                break 'txs;
            }
            newest_first.push(detail_json(d, Some(&v)));
        }
    }
    let start = (skip as usize).min(newest_first.len());
    let end = start.saturating_add(count as usize).min(newest_first.len());
    let mut rows = newest_first[start..end].to_vec();
    rows.reverse();
    Ok(Json::Arr(rows))
}

/// Core's `WalletTxToJSON` fields shared by `gettransaction` and `listtransactions`.
fn append_tx_fields(v: &WalletTxView, o: &mut Json) {
    o.push("confirmations", v.confirmations);
    if v.generated {
        o.push("generated", true);
    }
    if v.confirmations == 0 {
        o.push("trusted", v.trusted);
    }
    if let Some((hash, height, index, time)) = v.block {
        o.push("blockhash", hash.to_string());
        o.push("blockheight", height);
        o.push("blockindex", index);
        o.push("blocktime", time);
    }
    o.push("txid", v.txid.to_string());
    o.push("wtxid", v.wtxid.to_string());
    o.push(
        "walletconflicts",
        v.conflicts
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>(),
    );
    o.push("mempoolconflicts", Json::Arr(vec![]));
    o.push(
        "time",
        v.block.map_or(v.time_received, |b| {
            v.time_received.min(u64::from(b.3)).max(1)
        }),
    );
    o.push("timereceived", v.time_received);
    o.push("bip125-replaceable", v.replaceable);
}

/// help gettransaction (Core 28-30 and master) up to `decoded`; the caller
/// appends `lastprocessedblock` (Core 26+).
pub(crate) fn transaction_json(v: &WalletTxView, verbose: bool) -> Json {
    let mut o = obj! { "amount" => Json::Amount(v.amount.to_sat()) };
    if let Some(f) = v.fee {
        o.push("fee", Json::Amount(f.to_sat()));
    }
    append_tx_fields(v, &mut o);
    o.push(
        "details",
        v.details
            .iter()
            .map(|d| detail_json(d, None))
            .collect::<Vec<_>>(),
    );
    o.push("hex", serialize_hex(&v.tx));
    if verbose {
        o.push("decoded", crate::rpc::txjson::tx(&v.tx, None, false, false));
    }
    o
}
