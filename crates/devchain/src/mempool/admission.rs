//! Mempool admission under the relay policy the stamper depends on:
//! Core's `AcceptToMemoryPool` checks (consensus, standardness, coinbase
//! maturity, finality, minimum relay fee, script verification, `maxfeerate`
//! and `maxburnamount`) and full replace-by-fee (Core 28+ default, BIP125
//! rules 2-6 without the signalling requirement), and re-admission after
//! the chain changes.

use std::collections::HashSet;

use bitcoin::{Amount, Transaction, Txid};

use crate::chain::block::{check_transaction, COINBASE_MATURITY};
use crate::chain::chainstate::{ChainChange, ChainState};
use crate::error::{RejectClass, TxReject};
use crate::json::format_money;
use crate::mempool::cluster::sigop_adjusted_vsize;
use crate::mempool::pool::{
    fee_for, fee_rate, fee_rate_string, AcceptOptions, Accepted, Mempool, MempoolEntry,
    INCREMENTAL_RELAY_FEE_SAT_PER_KVB, MAX_OP_RETURN_RELAY, MAX_REPLACEMENT_CANDIDATES,
    MAX_STANDARD_TX_VERSION, MAX_STANDARD_TX_WEIGHT, MIN_RELAY_FEE_SAT_PER_KVB,
    MIN_STANDARD_TX_NONWITNESS_SIZE,
};
use crate::script::verify;

fn reject(reason: &str, detail: impl Into<String>) -> TxReject {
    TxReject::new(RejectClass::Rejected, reason, detail)
}

impl Mempool {
    /// Follows a chain update: drops confirmed and conflicting transactions,
    /// re-adds those of disconnected blocks, and revalidates the rest (inputs,
    /// maturity, finality) in arrival order.
    pub fn update_for_chain_change(&mut self, chain: &ChainState, change: &ChainChange) {
        if change.connected.is_empty() && change.disconnected.is_empty() {
            return;
        }
        let old = std::mem::take(&mut self.entries);
        self.spends.clear();
        let mut old: Vec<MempoolEntry> = old.into_values().collect();
        old.sort_by_key(|e| e.seq);
        let opts = AcceptOptions {
            verify_scripts: false,
            allow_replacement: false,
            ..AcceptOptions::default()
        };
        let now = old.iter().map(|e| e.time).max().unwrap_or(0);
        for block in change.disconnected.iter().rev() {
            for tx in block.txdata.iter().skip(1) {
                if chain.find_tx(&tx.compute_txid()).is_none() {
                    let _ = self.accept(chain, tx.clone(), now, &opts);
                }
            }
        }
        for e in old {
            if chain.find_tx(&e.txid).is_some() {
                continue;
            }
            let _ = self.accept(chain, e.tx, e.time, &opts);
        }
    }

    /// Validates `tx` against the chain and mempool under Core's policy and,
    /// unless `opts.test_only`, adds it (evicting replaced transactions).
    pub fn accept(
        &mut self,
        chain: &ChainState,
        tx: Transaction,
        now: u64,
        opts: &AcceptOptions,
    ) -> Result<Accepted, TxReject> {
        check_transaction(&tx).map_err(|r| reject(r, ""))?;
        if tx.is_coinbase() {
            return Err(reject("coinbase", ""));
        }
        check_standard(&tx)?;
        let txid = tx.compute_txid();
        let wtxid = tx.compute_wtxid();
        if let Some(existing) = self.entries.get(&txid) {
            let reason = if existing.wtxid == wtxid {
                "txn-already-in-mempool"
            } else {
                "txn-same-nonwitness-data-in-mempool"
            };
            return Err(TxReject::new(RejectClass::AlreadyInMempool, reason, ""));
        }
        let next_height = chain.height() + 1;
        let mut conflicts: Vec<Txid> = Vec::new();
        let mut prevouts = Vec::with_capacity(tx.input.len());
        let mut unconfirmed_inputs = Vec::new();
        for (idx, input) in tx.input.iter().enumerate() {
            if let Some(c) = self.spends.get(&input.previous_output) {
                if !conflicts.contains(c) {
                    conflicts.push(*c);
                }
            }
            if let Some(coin) = chain.coin(&input.previous_output) {
                if coin.is_coinbase && next_height - coin.height < COINBASE_MATURITY {
                    return Err(reject(
                        "bad-txns-premature-spend-of-coinbase",
                        format!(
                            "tried to spend coinbase at depth {}",
                            next_height - coin.height
                        ),
                    ));
                }
                prevouts.push(coin.output.clone());
            } else if let Some(out) = self.output(&input.previous_output) {
                unconfirmed_inputs.push((idx, input.previous_output.txid));
                prevouts.push(out.clone());
            } else if chain.has_outputs_of(&tx) {
                return Err(TxReject::new(
                    RejectClass::AlreadyInChain,
                    "txn-already-known",
                    "",
                ));
            } else {
                return Err(TxReject::new(
                    RejectClass::MissingInputs,
                    "bad-txns-inputs-missingorspent",
                    "",
                ));
            }
        }
        let value_in: Amount = prevouts.iter().map(|p| p.value).sum();
        let value_out: Amount = tx.output.iter().map(|o| o.value).sum();
        if value_out > value_in {
            return Err(reject(
                "bad-txns-in-belowout",
                format!(
                    "value in ({}) < value out ({})",
                    format_money(value_in.to_sat() as i64),
                    format_money(value_out.to_sat() as i64)
                ),
            ));
        }
        if tx.is_lock_time_enabled() {
            let h = bitcoin::absolute::Height::from_consensus(next_height)
                .unwrap_or(bitcoin::absolute::Height::ZERO);
            let t = bitcoin::absolute::Time::from_consensus(chain.median_time_past())
                .unwrap_or(bitcoin::absolute::Time::MIN);
            if !tx.lock_time.is_satisfied_by(h, t) {
                return Err(reject("non-final", ""));
            }
        }
        let fee = value_in - value_out;
        let weight = tx.weight().to_wu();
        let sigop_cost = tx.total_sigop_cost(|op| {
            tx.input
                .iter()
                .position(|i| i.previous_output == *op)
                .and_then(|k| prevouts.get(k).cloned())
        }) as u64;
        let vsize = sigop_adjusted_vsize(weight, sigop_cost);
        let min_fee = fee_for(MIN_RELAY_FEE_SAT_PER_KVB, vsize);
        if fee.to_sat() < min_fee {
            return Err(reject(
                "min relay fee not met",
                format!("{} < {}", fee.to_sat(), min_fee),
            ));
        }
        let evict =
            self.check_replacement(&txid, fee, vsize, &conflicts, &unconfirmed_inputs, opts)?;
        if opts.verify_scripts {
            verify::verify_tx(&tx, &prevouts).map_err(|(_, f)| reject(&f.reject_reason(), ""))?;
        }
        if let Some(max) = opts.max_fee_rate {
            if max > 0 && fee.to_sat() > fee_for(max, vsize) {
                return Err(TxReject::new(
                    RejectClass::MaxFeeExceeded,
                    "max-fee-exceeded",
                    "",
                ));
            }
        }
        for out in &tx.output {
            if out.script_pubkey.is_op_return() && out.value > opts.max_burn {
                return Err(TxReject::new(
                    RejectClass::MaxBurnExceeded,
                    "max-burn-exceeded",
                    "",
                ));
            }
        }
        let accepted = Accepted {
            txid,
            wtxid,
            fee,
            vsize,
            replaced: evict.iter().copied().collect(),
        };
        if opts.test_only {
            return Ok(accepted);
        }
        for t in &evict {
            self.remove(t);
        }
        for i in &tx.input {
            self.spends.insert(i.previous_output, txid);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let entry = MempoolEntry {
            tx,
            txid,
            wtxid,
            fee,
            vsize,
            weight,
            sigop_cost,
            time: now,
            height: chain.height(),
            seq,
        };
        self.entries.insert(txid, entry);
        Ok(accepted)
    }

    /// Core's `ReplacementChecks` under full RBF: returns the transactions to
    /// evict or the rejection.
    fn check_replacement(
        &self,
        txid: &Txid,
        fee: Amount,
        vsize: u64,
        conflicts: &[Txid],
        unconfirmed_inputs: &[(usize, Txid)],
        opts: &AcceptOptions,
    ) -> Result<HashSet<Txid>, TxReject> {
        if conflicts.is_empty() {
            return Ok(HashSet::new());
        }
        if !opts.allow_replacement {
            return Err(reject("txn-mempool-conflict", ""));
        }
        let mut evict: HashSet<Txid> = HashSet::new();
        for c in conflicts {
            evict.insert(*c);
            evict.extend(self.descendants(c));
        }
        if evict.len() > MAX_REPLACEMENT_CANDIDATES {
            return Err(reject(
                "too many potential replacements",
                format!(
                    "rejecting replacement {txid}; too many potential replacements ({} > {})",
                    evict.len(),
                    MAX_REPLACEMENT_CANDIDATES
                ),
            ));
        }
        for (_, parent) in unconfirmed_inputs {
            if evict.contains(parent) {
                return Err(reject(
                    "bad-txns-spends-conflicting-tx",
                    format!("{txid} spends conflicting transaction {parent}"),
                ));
            }
        }
        let new_rate = fee_rate(fee, vsize);
        for c in conflicts {
            let e = &self.entries[c];
            let old_rate = fee_rate(e.fee, e.vsize);
            if new_rate <= old_rate {
                return Err(reject(
                    "insufficient fee",
                    format!(
                        "rejecting replacement {txid}; new feerate {} <= old feerate {}",
                        fee_rate_string(new_rate),
                        fee_rate_string(old_rate)
                    ),
                ));
            }
        }
        // Rule 2: no new unconfirmed inputs beyond those the conflicts spent.
        let conflict_parents: HashSet<Txid> = conflicts
            .iter()
            .flat_map(|c| {
                self.entries[c]
                    .tx
                    .input
                    .iter()
                    .map(|i| i.previous_output.txid)
            })
            .collect();
        for (idx, parent) in unconfirmed_inputs {
            if !conflict_parents.contains(parent) {
                return Err(reject(
                    "replacement-adds-unconfirmed",
                    format!("replacement {txid} adds unconfirmed input, idx {idx}"),
                ));
            }
        }
        let old_fees: Amount = evict.iter().map(|t| self.entries[t].fee).sum();
        if fee < old_fees {
            return Err(reject(
                "insufficient fee",
                format!(
                    "rejecting replacement {txid}, less fees than conflicting txs; {} < {}",
                    format_money(fee.to_sat() as i64),
                    format_money(old_fees.to_sat() as i64)
                ),
            ));
        }
        let additional = fee - old_fees;
        let required = Amount::from_sat(fee_for(INCREMENTAL_RELAY_FEE_SAT_PER_KVB, vsize));
        if additional < required {
            return Err(reject(
                "insufficient fee",
                format!(
                    "rejecting replacement {txid}, not enough additional fees to relay; {} < {}",
                    format_money(additional.to_sat() as i64),
                    format_money(required.to_sat() as i64)
                ),
            ));
        }
        Ok(evict)
    }
}

/// Core's `IsStandardTx` subset relevant here.
fn check_standard(tx: &Transaction) -> Result<(), TxReject> {
    if tx.version.0 < 1 || tx.version.0 > MAX_STANDARD_TX_VERSION {
        return Err(reject("version", ""));
    }
    if tx.weight().to_wu() > MAX_STANDARD_TX_WEIGHT {
        return Err(reject("tx-size", ""));
    }
    if tx.base_size() < MIN_STANDARD_TX_NONWITNESS_SIZE {
        return Err(reject("tx-size-small", ""));
    }
    let mut op_returns = 0;
    for out in &tx.output {
        let s = &out.script_pubkey;
        if s.is_op_return() {
            if s.len() > MAX_OP_RETURN_RELAY {
                return Err(reject("scriptpubkey", ""));
            }
            op_returns += 1;
            continue;
        }
        let standard = s.is_p2pkh()
            || s.is_p2sh()
            || s.is_p2wpkh()
            || s.is_p2wsh()
            || s.is_p2tr()
            || s.witness_version().is_some();
        if !standard {
            return Err(reject("scriptpubkey", ""));
        }
        if out.value < s.minimal_non_dust() {
            return Err(reject("dust", ""));
        }
    }
    if op_returns > 1 {
        return Err(reject("multi-op-return", ""));
    }
    Ok(())
}
