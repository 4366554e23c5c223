//! Clusters and chunks of the mempool, as Bitcoin Core's cluster mempool
//! (Core master after 30.0) reports them in `getmempoolentry`'s
//! `chunkweight` and `fees.chunk`.
//!
//! A cluster is a transaction together with every in-mempool transaction
//! connected to it by spending (ancestors, descendants, their relatives).
//! Core linearizes each cluster (an order that respects dependencies and
//! puts the best fee rate first) and cuts the linearization into chunks:
//! consecutive groups whose fee rates strictly decrease. A transaction
//! without in-mempool relatives is a cluster and a chunk of its own.
//!
//! Fee rates are fee per sigops-adjusted weight, as in Core's `TxGraph`.
//! Clusters up to [`EXACT_LINEARIZATION_MAX`] transactions are linearized
//! optimally (each step takes the highest-fee-rate dependency-closed subset
//! of what is left, as Core's optimal linearization does); larger ones
//! fall back to ancestor-set order, the starting point Core improves on.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use bitcoin::{Amount, Txid};

use crate::mempool::pool::Mempool;

/// Core's `DEFAULT_BYTES_PER_SIGOP` (`-bytespersigop`).
pub const DEFAULT_BYTES_PER_SIGOP: u64 = 20;
/// Largest cluster linearized by exhaustive search of closed subsets.
pub const EXACT_LINEARIZATION_MAX: usize = 10;

/// Core's `GetSigOpsAdjustedWeight`: weight, or sigop cost times
/// [`DEFAULT_BYTES_PER_SIGOP`] if that is larger.
pub fn sigop_adjusted_weight(weight: u64, sigop_cost: u64) -> u64 {
    weight.max(sigop_cost.saturating_mul(DEFAULT_BYTES_PER_SIGOP))
}

/// Core's `GetVirtualTransactionSize`: sigops-adjusted weight / 4, rounded up.
pub fn sigop_adjusted_vsize(weight: u64, sigop_cost: u64) -> u64 {
    sigop_adjusted_weight(weight, sigop_cost).div_ceil(4)
}

/// One chunk of a cluster's linearization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Its transactions, in linearization order.
    pub txids: Vec<Txid>,
    /// Sum of their (modified) fees.
    pub fee: Amount,
    /// Sum of their sigops-adjusted weights.
    pub weight: u64,
}

/// A cluster member: fee, adjusted weight and in-cluster parents (indices).
struct Member {
    txid: Txid,
    fee: u64,
    weight: u64,
    parents: Vec<usize>,
}

/// Compares fee rates `a.0 / a.1` and `b.0 / b.1` exactly.
fn cmp_rate(a: (u64, u64), b: (u64, u64)) -> Ordering {
    (u128::from(a.0) * u128::from(b.1)).cmp(&(u128::from(b.0) * u128::from(a.1)))
}

/// Prefers the higher fee rate, then the smaller set (finer chunks).
fn better(candidate: (u64, u64), best: Option<(u64, u64)>) -> bool {
    match best {
        None => true,
        Some(b) => match cmp_rate(candidate, b) {
            Ordering::Greater => true,
            Ordering::Equal => candidate.1 < b.1,
            Ordering::Less => false,
        },
    }
}

impl Mempool {
    /// The cluster of `txid`: it and every transaction connected to it,
    /// parents before children (empty if `txid` is not in the mempool).
    pub fn cluster(&self, txid: &Txid) -> Vec<Txid> {
        if self.get(txid).is_none() {
            return vec![];
        }
        let mut seen: HashSet<Txid> = HashSet::from([*txid]);
        let mut stack = vec![*txid];
        while let Some(t) = stack.pop() {
            for n in self.parents(&t).into_iter().chain(self.children(&t)) {
                if seen.insert(n) {
                    stack.push(n);
                }
            }
        }
        let mut v: Vec<(usize, u64, Txid)> = seen
            .into_iter()
            .filter_map(|t| Some((self.ancestors(&t).len(), self.get(&t)?.seq, t)))
            .collect();
        // A parent always has fewer in-mempool ancestors than its child.
        v.sort();
        v.into_iter().map(|(_, _, t)| t).collect()
    }

    /// The chunks of the cluster of `txid`, best first.
    pub fn cluster_chunks(&self, txid: &Txid) -> Vec<Chunk> {
        let ids = self.cluster(txid);
        let index: HashMap<Txid, usize> = ids.iter().enumerate().map(|(i, t)| (*t, i)).collect();
        let members: Vec<Member> = ids
            .iter()
            .filter_map(|t| {
                let e = self.get(t)?;
                Some(Member {
                    txid: *t,
                    fee: e.fee.to_sat(),
                    weight: sigop_adjusted_weight(e.weight, e.sigop_cost),
                    parents: self
                        .parents(t)
                        .iter()
                        .filter_map(|p| index.get(p).copied())
                        .collect(),
                })
            })
            .collect();
        chunk(&members, &linearize(&members))
    }

    /// The chunk holding `txid`, if it is in the mempool.
    pub fn chunk_of(&self, txid: &Txid) -> Option<Chunk> {
        self.cluster_chunks(txid)
            .into_iter()
            .find(|c| c.txids.contains(txid))
    }

    /// The chunk of every mempool transaction, each cluster computed once.
    pub fn all_chunks(&self) -> HashMap<Txid, Chunk> {
        let mut out = HashMap::new();
        for e in self.entries() {
            if out.contains_key(&e.txid) {
                continue;
            }
            for c in self.cluster_chunks(&e.txid) {
                for t in &c.txids {
                    out.insert(*t, c.clone());
                }
            }
        }
        out
    }
}

/// Orders `m` (indices already topological) best fee rate first.
fn linearize(m: &[Member]) -> Vec<usize> {
    let mut left: Vec<bool> = vec![true; m.len()];
    let mut order = Vec::with_capacity(m.len());
    while order.len() < m.len() {
        let remaining: Vec<usize> = (0..m.len()).filter(|&i| left[i]).collect();
        let pick = if remaining.len() <= EXACT_LINEARIZATION_MAX {
            best_closed_subset(m, &remaining)
        } else {
            best_ancestor_set(m, &left, &remaining)
        };
        for &i in &pick {
            left[i] = false;
        }
        order.extend(pick);
    }
    order
}

/// The highest-fee-rate subset of `remaining` that includes every
/// remaining parent of its members, by exhaustive search.
fn best_closed_subset(m: &[Member], remaining: &[usize]) -> Vec<usize> {
    let pos: HashMap<usize, usize> = remaining.iter().enumerate().map(|(k, &i)| (i, k)).collect();
    let parent_mask: Vec<u32> = remaining
        .iter()
        .map(|&i| {
            m[i].parents
                .iter()
                .filter_map(|p| pos.get(p))
                .fold(0u32, |acc, &k| acc | (1 << k))
        })
        .collect();
    let mut best: Option<((u64, u64), u32)> = None;
    for mask in 1u32..(1u32 << remaining.len()) {
        let closed = (0..remaining.len())
            .filter(|k| mask & (1 << k) != 0)
            .all(|k| parent_mask[k] & !mask == 0);
        if !closed {
            continue;
        }
        let (fee, weight) = (0..remaining.len())
            .filter(|k| mask & (1 << k) != 0)
            .fold((0u64, 0u64), |(f, w), k| {
                (f + m[remaining[k]].fee, w + m[remaining[k]].weight)
            });
        if better((fee, weight), best.map(|b| b.0)) {
            best = Some(((fee, weight), mask));
        }
    }
    let mask = best.map_or(1, |b| b.1);
    (0..remaining.len())
        .filter(|k| mask & (1 << k) != 0)
        .map(|k| remaining[k])
        .collect()
}

/// The remaining member whose remaining ancestor set (with itself) has the
/// highest fee rate; returns that set in topological order.
fn best_ancestor_set(m: &[Member], left: &[bool], remaining: &[usize]) -> Vec<usize> {
    let mut best: Option<((u64, u64), Vec<usize>)> = None;
    for &i in remaining {
        let mut set: Vec<usize> = vec![i];
        let mut stack = vec![i];
        while let Some(x) = stack.pop() {
            for &p in &m[x].parents {
                if left[p] && !set.contains(&p) {
                    set.push(p);
                    stack.push(p);
                }
            }
        }
        set.sort_unstable();
        let rate = set
            .iter()
            .fold((0u64, 0u64), |(f, w), &k| (f + m[k].fee, w + m[k].weight));
        if better(rate, best.as_ref().map(|b| b.0)) {
            best = Some((rate, set));
        }
    }
    best.map(|b| b.1).unwrap_or_default()
}

/// Core's `ChunkLinearization`: each transaction starts a group, merged
/// into the previous one while its fee rate is strictly higher.
fn chunk(m: &[Member], order: &[usize]) -> Vec<Chunk> {
    let mut groups: Vec<(Vec<usize>, u64, u64)> = Vec::new();
    for &i in order {
        groups.push((vec![i], m[i].fee, m[i].weight));
        while groups.len() >= 2 {
            let n = groups.len();
            let (last, prev) = (&groups[n - 1], &groups[n - 2]);
            if cmp_rate((last.1, last.2), (prev.1, prev.2)) != Ordering::Greater {
                break;
            }
            if let Some((txs, fee, weight)) = groups.pop() {
                if let Some(prev) = groups.last_mut() {
                    prev.0.extend(txs);
                    prev.1 += fee;
                    prev.2 += weight;
                }
            }
        }
    }
    groups
        .into_iter()
        .map(|(txs, fee, weight)| Chunk {
            txids: txs.into_iter().map(|i| m[i].txid).collect(),
            fee: Amount::from_sat(fee),
            weight,
        })
        .collect()
}
