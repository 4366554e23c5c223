//! The mempool and the relay policy the stamper depends on: minimum relay
//! fee, standardness, coinbase maturity, full replace-by-fee (Core 28+
//! default, BIP125 rules 2-6 without the signalling requirement), and a
//! block template ordered by ancestor fee rate.

use std::collections::{HashMap, HashSet};

use bitcoin::{Amount, OutPoint, Transaction, TxOut, Txid, Wtxid};

use crate::block::{check_transaction, COINBASE_MATURITY};
use crate::chainstate::{ChainChange, ChainState};
use crate::cluster::sigop_adjusted_vsize;
use crate::error::{RejectClass, TxReject};
use crate::json::{format_amount, format_money};
use crate::verify;

/// Core's `DEFAULT_MIN_RELAY_TX_FEE` (Core 28/29), sat per 1000 vbytes.
pub const MIN_RELAY_FEE_SAT_PER_KVB: u64 = 1_000;
/// Core's `DEFAULT_INCREMENTAL_RELAY_FEE`, sat per 1000 vbytes.
pub const INCREMENTAL_RELAY_FEE_SAT_PER_KVB: u64 = 1_000;
/// Core's `MAX_STANDARD_TX_WEIGHT`.
pub const MAX_STANDARD_TX_WEIGHT: u64 = 400_000;
/// Core's `MIN_STANDARD_TX_NONWITNESS_SIZE`.
pub const MIN_STANDARD_TX_NONWITNESS_SIZE: usize = 65;
/// Core's `MAX_OP_RETURN_RELAY` before v30 (83 bytes of script).
pub const MAX_OP_RETURN_RELAY: usize = 83;
/// Core's `MAX_REPLACEMENT_CANDIDATES` (BIP125 rule 5).
pub const MAX_REPLACEMENT_CANDIDATES: usize = 100;
/// Highest transaction version Core 28 relays (TRUC is version 3).
pub const MAX_STANDARD_TX_VERSION: i32 = 3;
/// nSequence below which an input signals BIP125 replaceability.
pub const MAX_BIP125_RBF_SEQUENCE: u32 = 0xffff_fffd;

/// Core's `CFeeRate::GetFee`: fee for `vsize` at `rate` sat/kvB, at least 1 sat.
pub fn fee_for(rate_sat_per_kvb: u64, vsize: u64) -> u64 {
    let fee = rate_sat_per_kvb * vsize / 1000;
    if fee == 0 && vsize > 0 && rate_sat_per_kvb > 0 {
        1
    } else {
        fee
    }
}

/// Core's `CFeeRate(fee, vsize)` in sat/kvB.
pub fn fee_rate(fee: Amount, vsize: u64) -> u64 {
    (fee.to_sat() * 1000).checked_div(vsize).unwrap_or(0)
}

/// Core's `CFeeRate::ToString()`, e.g. `0.00001000 BTC/kvB`.
pub fn fee_rate_string(rate_sat_per_kvb: u64) -> String {
    format!("{} BTC/kvB", format_amount(rate_sat_per_kvb as i64))
}

/// A transaction waiting in the mempool.
#[derive(Debug, Clone)]
pub struct MempoolEntry {
    /// The transaction.
    pub tx: Transaction,
    /// Its txid.
    pub txid: Txid,
    /// Its wtxid.
    pub wtxid: Wtxid,
    /// Inputs minus outputs.
    pub fee: Amount,
    /// Virtual size: sigops-adjusted weight / 4, rounded up (Core's `GetTxSize`).
    pub vsize: u64,
    /// Weight units (BIP 141, not sigops-adjusted).
    pub weight: u64,
    /// Sigop cost (Core's `GetTransactionSigOpCost`).
    pub sigop_cost: u64,
    /// Unix time it entered the mempool.
    pub time: u64,
    /// Chain height when it entered.
    pub height: u32,
    /// Arrival order.
    pub seq: u64,
}

/// How strictly [`Mempool::accept`] checks a transaction.
#[derive(Debug, Clone)]
pub struct AcceptOptions {
    /// Verify input scripts (skipped when re-adding already-verified transactions).
    pub verify_scripts: bool,
    /// Allow replacing conflicting transactions (full RBF); when false a conflict rejects.
    pub allow_replacement: bool,
    /// Reject fee rates above this many sat/kvB (`maxfeerate`); `None` for no limit.
    pub max_fee_rate: Option<u64>,
    /// Reject unspendable outputs worth more than this (`maxburnamount`).
    pub max_burn: Amount,
    /// Check only; do not add (`testmempoolaccept`).
    pub test_only: bool,
}

impl Default for AcceptOptions {
    fn default() -> Self {
        AcceptOptions {
            verify_scripts: true,
            allow_replacement: true,
            max_fee_rate: None,
            max_burn: Amount::ZERO,
            test_only: false,
        }
    }
}

/// The outcome of an accepted transaction.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Its txid.
    pub txid: Txid,
    /// Its wtxid.
    pub wtxid: Wtxid,
    /// Its fee.
    pub fee: Amount,
    /// Its virtual size.
    pub vsize: u64,
    /// Transactions it evicted by replacement.
    pub replaced: Vec<Txid>,
}

/// The set of unconfirmed transactions.
#[derive(Debug, Clone, Default)]
pub struct Mempool {
    entries: HashMap<Txid, MempoolEntry>,
    spends: HashMap<OutPoint, Txid>,
    next_seq: u64,
}

fn reject(reason: &str, detail: impl Into<String>) -> TxReject {
    TxReject::new(RejectClass::Rejected, reason, detail)
}

impl Mempool {
    /// An empty mempool.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of transactions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no transactions.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// An entry by txid.
    pub fn get(&self, txid: &Txid) -> Option<&MempoolEntry> {
        self.entries.get(txid)
    }

    /// All entries in arrival order.
    pub fn entries(&self) -> Vec<&MempoolEntry> {
        let mut v: Vec<_> = self.entries.values().collect();
        v.sort_by_key(|e| e.seq);
        v
    }

    /// The mempool transaction spending `outpoint`, if any.
    pub fn spender(&self, outpoint: &OutPoint) -> Option<Txid> {
        self.spends.get(outpoint).copied()
    }

    /// An output created by a mempool transaction.
    pub fn output(&self, outpoint: &OutPoint) -> Option<&TxOut> {
        self.entries
            .get(&outpoint.txid)?
            .tx
            .output
            .get(outpoint.vout as usize)
    }

    /// In-mempool parents of `txid`.
    pub fn parents(&self, txid: &Txid) -> Vec<Txid> {
        let Some(e) = self.entries.get(txid) else {
            return vec![];
        };
        let mut v: Vec<Txid> =
            e.tx.input
                .iter()
                .map(|i| i.previous_output.txid)
                .filter(|p| self.entries.contains_key(p))
                .collect();
        v.sort();
        v.dedup();
        v
    }

    /// In-mempool children of `txid`.
    pub fn children(&self, txid: &Txid) -> Vec<Txid> {
        let Some(e) = self.entries.get(txid) else {
            return vec![];
        };
        let mut v: Vec<Txid> = (0..e.tx.output.len() as u32)
            .filter_map(|vout| self.spends.get(&OutPoint { txid: *txid, vout }).copied())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn closure(&self, txid: &Txid, step: impl Fn(&Txid) -> Vec<Txid>) -> HashSet<Txid> {
        let mut seen = HashSet::new();
        let mut stack = step(txid);
        while let Some(t) = stack.pop() {
            if seen.insert(t) {
                stack.extend(step(&t));
            }
        }
        seen
    }

    /// All in-mempool ancestors (excluding `txid` itself).
    pub fn ancestors(&self, txid: &Txid) -> HashSet<Txid> {
        self.closure(txid, |t| self.parents(t))
    }

    /// All in-mempool descendants (excluding `txid` itself).
    pub fn descendants(&self, txid: &Txid) -> HashSet<Txid> {
        self.closure(txid, |t| self.children(t))
    }

    /// Core's `IsRBFOptIn`: the transaction or an unconfirmed ancestor signals BIP125.
    pub fn signals_rbf(&self, txid: &Txid) -> bool {
        let signals = |t: &Txid| {
            self.entries.get(t).is_some_and(|e| {
                e.tx.input
                    .iter()
                    .any(|i| i.sequence.to_consensus_u32() <= MAX_BIP125_RBF_SEQUENCE)
            })
        };
        signals(txid) || self.ancestors(txid).iter().any(signals)
    }

    /// Removes `txid` and everything spending it; returns the removed entries.
    pub fn remove_with_descendants(&mut self, txid: &Txid) -> Vec<MempoolEntry> {
        let mut all: Vec<Txid> = self.descendants(txid).into_iter().collect();
        all.push(*txid);
        all.into_iter().filter_map(|t| self.remove(&t)).collect()
    }

    fn remove(&mut self, txid: &Txid) -> Option<MempoolEntry> {
        let e = self.entries.remove(txid)?;
        for i in &e.tx.input {
            if self.spends.get(&i.previous_output) == Some(txid) {
                self.spends.remove(&i.previous_output);
            }
        }
        Some(e)
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

    /// Transactions for the next block, highest ancestor-package fee rate
    /// first, parents before children, within `max_weight`.
    pub fn block_template(&self, max_weight: u64) -> Vec<Transaction> {
        let mut scored: Vec<(u64, u64, usize, &MempoolEntry)> = self
            .entries
            .values()
            .map(|e| {
                let anc = self.ancestors(&e.txid);
                let fee: u64 = e.fee.to_sat()
                    + anc
                        .iter()
                        .map(|a| self.entries[a].fee.to_sat())
                        .sum::<u64>();
                let size: u64 = e.vsize + anc.iter().map(|a| self.entries[a].vsize).sum::<u64>();
                (fee * 1000 / size.max(1), e.seq, anc.len(), e)
            })
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut included: HashSet<Txid> = HashSet::new();
        let mut out = Vec::new();
        let mut weight = 0u64;
        for (_, _, _, e) in scored {
            if included.contains(&e.txid) {
                continue;
            }
            let mut package: Vec<&MempoolEntry> = self
                .ancestors(&e.txid)
                .iter()
                .filter(|a| !included.contains(*a))
                .map(|a| &self.entries[a])
                .collect();
            package.push(e);
            // A parent always has fewer in-mempool ancestors than its child.
            package.sort_by_key(|p| (self.ancestors(&p.txid).len(), p.seq));
            let w: u64 = package.iter().map(|p| p.weight).sum();
            if weight + w > max_weight {
                continue;
            }
            weight += w;
            for p in package {
                included.insert(p.txid);
                out.push(p.tx.clone());
            }
        }
        out
    }

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
