//! The mempool: its entries and their in-mempool relatives, the relay
//! policy constants and fee-rate arithmetic, a block template ordered by
//! ancestor fee rate. Admission (Core's policy checks and replace-by-fee)
//! and following chain updates are in [`crate::mempool::admission`].

use std::collections::{HashMap, HashSet};

use bitcoin::{Amount, OutPoint, Transaction, TxOut, Txid, Wtxid};

use crate::json::format_amount;

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
/// Saturates rather than overflowing on an absurd rate or size.
pub fn fee_for(rate_sat_per_kvb: u64, vsize: u64) -> u64 {
    let fee = rate_sat_per_kvb.saturating_mul(vsize) / 1000;
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
    pub(crate) entries: HashMap<Txid, MempoolEntry>,
    pub(crate) spends: HashMap<OutPoint, Txid>,
    pub(crate) next_seq: u64,
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

    pub(crate) fn remove(&mut self, txid: &Txid) -> Option<MempoolEntry> {
        let e = self.entries.remove(txid)?;
        for i in &e.tx.input {
            if self.spends.get(&i.previous_output) == Some(txid) {
                self.spends.remove(&i.previous_output);
            }
        }
        Some(e)
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
}
