//! Wallet transactions as Core's wallet reports them: the per-output
//! `details` entries and everything `gettransaction` / `listtransactions`
//! show about one transaction (amount, fee, confirmations, conflicts,
//! replaceability), read from the chain, the mempool and the wallet.

use bitcoin::{Amount, BlockHash, SignedAmount, Transaction, Txid, Wtxid};

use crate::chain::block::COINBASE_MATURITY;
use crate::chain::node::Chain;

/// One `details` entry of `gettransaction` / one `listtransactions` row.
#[derive(Debug, Clone)]
pub struct Detail {
    /// Address paid, if the script has one.
    pub address: Option<String>,
    /// `send`, `receive`, `generate`, `immature` or `orphan`.
    pub category: &'static str,
    /// Signed amount in satoshis.
    pub amount: SignedAmount,
    /// Label of an owned address.
    pub label: Option<String>,
    /// Output index.
    pub vout: u32,
    /// Fee (negative) on `send` entries.
    pub fee: Option<SignedAmount>,
    /// Parent descriptors of the output script, on received entries
    /// (Core's `PushParentDescriptors`).
    pub parent_descs: Option<Vec<String>>,
}

/// Everything `gettransaction` reports about a wallet transaction.
#[derive(Debug, Clone)]
pub struct WalletTxView {
    /// The transaction.
    pub tx: Transaction,
    /// Its txid.
    pub txid: Txid,
    /// Its wtxid.
    pub wtxid: Wtxid,
    /// Depth; 0 if unconfirmed.
    pub confirmations: i64,
    /// Block hash, height, position and time if confirmed.
    pub block: Option<(BlockHash, u32, usize, u32)>,
    /// In the mempool.
    pub in_mempool: bool,
    /// Net effect on the wallet excluding fee.
    pub amount: SignedAmount,
    /// Fee (negative) if the wallet paid it.
    pub fee: Option<SignedAmount>,
    /// Coinbase.
    pub generated: bool,
    /// Unconfirmed and trusted (own change or fully own inputs).
    pub trusted: bool,
    /// Time first seen.
    pub time_received: u64,
    /// Core's `bip125-replaceable`: yes / no / unknown.
    pub replaceable: &'static str,
    /// Other wallet transactions spending the same inputs.
    pub conflicts: Vec<Txid>,
    /// Per-output entries.
    pub details: Vec<Detail>,
}

impl Chain {
    /// `gettransaction` data for a wallet transaction.
    pub fn wallet_tx(&self, wallet: &str, txid: &Txid) -> Option<WalletTxView> {
        let w = self.wallets.get(wallet)?;
        let rec = w.tx(txid)?;
        let (tx, block) = match self.state.find_tx(txid) {
            Some((e, pos)) => (
                e.block.txdata[pos].clone(),
                Some((e.hash, e.height, pos, e.block.header.time)),
            ),
            None => (
                self.lookup_tx(txid).or_else(|| self.find_any_tx(txid))?,
                None,
            ),
        };
        let in_mempool = self.mempool.get(txid).is_some();
        let confirmations = block.map_or(0, |(h, ..)| self.state.confirmations(&h));
        let debit: Amount = tx
            .input
            .iter()
            .filter_map(|i| self.owned_prevout(w, &i.previous_output))
            .map(|o| o.value)
            .sum();
        let credit: Amount = tx
            .output
            .iter()
            .filter(|o| w.is_mine(&o.script_pubkey))
            .map(|o| o.value)
            .sum();
        let from_me = debit > Amount::ZERO;
        let out_total: Amount = tx.output.iter().map(|o| o.value).sum();
        let fee = from_me.then(|| {
            -(debit.to_signed().unwrap_or_default() - out_total.to_signed().unwrap_or_default())
        });
        let net = credit.to_signed().unwrap_or_default() - debit.to_signed().unwrap_or_default();
        let amount = net - fee.unwrap_or(SignedAmount::ZERO);
        let generated = tx.is_coinbase();
        // Core's `CachedTxGetAmounts` + `ListTransactions`: every sent
        // output (change excluded) first, then every received one.
        let mut details = Vec::new();
        let mut received = Vec::new();
        for (vout, o) in tx.output.iter().enumerate() {
            let key = w.key(&o.script_pubkey);
            let address =
                crate::script::descriptor::address_of(&o.script_pubkey).map(|a| a.to_string());
            let label = key.map(|k| k.label.clone());
            if from_me {
                if key.is_some_and(|k| k.change) {
                    continue;
                }
                details.push(Detail {
                    address: address.clone(),
                    category: "send",
                    amount: -o.value.to_signed().unwrap_or_default(),
                    label: label.clone(),
                    vout: vout as u32,
                    fee,
                    parent_descs: None,
                });
            }
            if let Some(k) = key {
                let category = if !generated {
                    "receive"
                } else if confirmations <= 0 {
                    "orphan"
                } else if confirmations <= i64::from(COINBASE_MATURITY) {
                    "immature"
                } else {
                    "generate"
                };
                received.push(Detail {
                    address,
                    category,
                    amount: o.value.to_signed().unwrap_or_default(),
                    label,
                    vout: vout as u32,
                    fee: None,
                    parent_descs: Some(vec![w.parent_descriptor(k.kind, k.change)]),
                });
            }
        }
        details.extend(received);
        let mut conflicts: Vec<Txid> = w
            .txids()
            .into_iter()
            .filter(|t| t != txid)
            .filter_map(|t| {
                self.lookup_tx(&t)
                    .or_else(|| self.find_any_tx(&t))
                    .map(|x| (t, x))
            })
            .filter(|(_, other)| {
                other.input.iter().any(|i| {
                    tx.input
                        .iter()
                        .any(|j| j.previous_output == i.previous_output)
                        && !generated
                })
            })
            .map(|(t, _)| t)
            .collect();
        conflicts.sort();
        let replaceable = if block.is_some() {
            "no"
        } else if in_mempool {
            if self.mempool.signals_rbf(txid) {
                "yes"
            } else {
                "no"
            }
        } else {
            "unknown"
        };
        Some(WalletTxView {
            txid: *txid,
            wtxid: tx.compute_wtxid(),
            tx,
            confirmations,
            block,
            in_mempool,
            amount,
            fee,
            generated,
            trusted: block.is_some() || (in_mempool && from_me),
            time_received: rec.time_received,
            replaceable,
            conflicts,
            details,
        })
    }

    /// Finds a transaction anywhere in the block tree (stale branches too).
    pub fn find_any_tx(&self, txid: &Txid) -> Option<Transaction> {
        self.state
            .entries()
            .flat_map(|e| e.block.txdata.iter())
            .find(|t| t.compute_txid() == *txid)
            .cloned()
    }
}
