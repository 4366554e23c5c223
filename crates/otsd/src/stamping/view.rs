//! What the server shows of the stamper: the [`View`] the runner keeps up
//! to date after every step, the stamper's warnings as the text the
//! operator sees, and the [`StamperView`] that the HTTP layer reads (404
//! reasons, `/tip`, the info page) built from it.

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::{Amount, BlockHash, Txid};
use ots_stamper::fee::{FeeChoice, FeeRule};
use ots_stamper::history::History;
use ots_stamper::stamper::{status_in, Mined, Status, Warning};

use crate::info::MAX_LISTED_TXS;
use crate::status::{ChainInfo, MinedTx, StamperView, UnconfirmedTx, Waiting};

/// Whose fault a pause of stamping is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// The node or its wallet: an outage, warm-up, refused credentials, an
    /// answer we cannot read, or an RPC error.
    Node,
    /// Anything else: the state file, the journal, the store (a full or
    /// read-only disk, permissions), a block or address we cannot use.
    Calendar,
}

/// What the server shows of the stamper (info page, 404 reasons).
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Best block seen.
    pub best: Option<(u64, BlockHash)>,
    /// Mined transactions not yet final (a copy of the state's).
    pub mined: Vec<Mined>,
    /// Confirmations a proof needs.
    pub min_confirmations: u64,
    /// The tip of the latest unconfirmed transaction.
    pub tip: Option<[u8; 32]>,
    /// The latest unconfirmed transaction and how many versions it replaced.
    pub unconfirmed: Option<(Txid, usize)>,
    /// Confirmed wallet balance.
    pub balance: Option<Amount>,
    /// Conditions the operator should see.
    pub warnings: Vec<String>,
    /// While stamping is paused: whose fault, and the last error.
    pub paused: Option<(Pause, String)>,
    /// Completed transactions (a copy of the persisted history).
    pub history: History,
    /// Mined transactions whose proofs could not be stored (a copy of the
    /// persisted list).
    pub set_aside: Vec<ots_stamper::state::SetAside>,
    /// The latest unconfirmed version's fee and virtual size (metrics).
    pub unconfirmed_fee: Option<(Amount, u64)>,
    /// The open round's first version and the unix time this view first
    /// saw it: the unconfirmed transaction's age in the metrics.
    pub round_since: Option<(Txid, u64)>,
    /// The latest unconfirmed version's fee, estimated size and why it
    /// pays that fee.
    pub fee: Option<(Amount, u64, Option<FeeChoice>)>,
    /// `--btc-conf-target`, for the fee's reason.
    pub conf_target: u32,
    /// Completed transactions reorged out of the best chain, most recent
    /// last (a copy of the persisted list).
    pub reorged: Vec<ots_stamper::state::Reorged>,
    /// How many completed transactions reorgs have undone, ever (for
    /// metrics: `ChainInfo::reorged_completed_total`).
    pub reorged_total: u64,
}

/// How long a deep reorg stays on the info page's warnings.
pub const REORG_WARNING_SECS: u64 = ots_stamper::history::WEEK_SECS;

impl View {
    /// Where journal position `position` stands: the state machine's rule
    /// ([`status_in`]) on this copy of its figures.
    pub fn status(&self, position: u64) -> Status {
        let best = self.best.map_or(0, |b| b.0);
        status_in(&self.mined, best, self.min_confirmations, position)
    }

    /// Notes the open round for the metrics at unix time `now`: `first` is
    /// its first version's txid, `latest` its latest version's fee and
    /// virtual size. The age counts from when a first version is first
    /// noted (the state keeps no send time; after a restart, from then).
    pub fn note_round(&mut self, first: Option<Txid>, latest: Option<(Amount, u64)>, now: u64) {
        self.unconfirmed_fee = latest;
        self.round_since = match (first, self.round_since) {
            (None, _) => None,
            (Some(f), Some((seen, at))) if seen == f => Some((seen, at)),
            (Some(f), _) => Some((f, now)),
        };
    }
}

fn describe(w: &Warning) -> String {
    match w {
        Warning::WalletTooSmall { needed } => format!(
            "the wallet has no confirmed output that can pay a timestamp transaction (needs about {needed}); digests are still accepted"
        ),
        Warning::FeeCapReached { fee, max } => {
            format!("fee bumping stopped: the next fee {fee} would exceed --btc-max-fee {max}")
        }
        Warning::BroadcastRefused { code, message } => {
            format!("the node refused a timestamp transaction ({code}): {message}")
        }
    }
}

/// The warnings shown: one per kind, with the latest figures of each (an
/// empty wallet's needed fee changes with every estimate).
#[derive(Debug, Default)]
pub(crate) struct Shown(Vec<(std::mem::Discriminant<Warning>, String)>);

impl Shown {
    /// Shows `w`; returns its text if its kind is new (to be logged).
    pub(crate) fn raise(&mut self, w: &Warning) -> Option<String> {
        let kind = std::mem::discriminant(w);
        let text = describe(w);
        match self.0.iter_mut().find(|(k, _)| *k == kind) {
            Some(shown) => {
                shown.1 = text;
                None
            }
            None => {
                self.0.push((kind, text.clone()));
                Some(text)
            }
        }
    }

    /// Forgets them all (a new transaction went out).
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// The texts, oldest kind first.
    pub(crate) fn texts(&self) -> Vec<String> {
        self.0.iter().map(|(_, t)| t.clone()).collect()
    }
}

/// What the HTTP layer sees of the running stamper.
pub struct Stamping {
    /// The runner's view.
    pub view: Arc<RwLock<View>>,
}

impl Stamping {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl StamperView for Stamping {
    fn waiting(&self, position: u64) -> Option<Waiting> {
        match self.read().status(position) {
            Status::Mined { txid, waiting_for } => Some(Waiting {
                txid: txid.to_string(),
                confirmations_needed: u32::try_from(waiting_for).unwrap_or(u32::MAX),
            }),
            Status::Pending => None,
        }
    }

    fn tip(&self) -> Option<Vec<u8>> {
        self.read().tip.map(|t| t.to_vec())
    }

    fn chain_info(&self) -> ChainInfo {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        chain_info_at(&self.read(), now)
    }

    fn unconfirmed(&self) -> Option<UnconfirmedTx> {
        let v = self.read();
        let (_, bumps) = v.unconfirmed?;
        let (fee, vsize) = v.unconfirmed_fee?;
        Some(UnconfirmedTx {
            fee_sats: fee.to_sat(),
            vsize,
            bumps: bumps as u64,
            since: v.round_since.map_or(0, |s| s.1),
        })
    }

    fn node_reachable(&self) -> Option<bool> {
        let v = self.read();
        match (&v.paused, v.best) {
            (Some((Pause::Node, _)), _) => Some(false),
            (_, Some(_)) => Some(true),
            _ => None,
        }
    }
}

/// sat/kvB as sat/vB, for people.
fn per_vbyte(sat_per_kvb: u64) -> String {
    format!("{:.1} sat/vB", sat_per_kvb as f64 / 1000.0)
}

/// Why a version pays its fee, in words; `first` for a round's first
/// version (whose minimum is the relay fee rate, not BIP125's).
pub fn fee_reason(choice: &FeeChoice, first: bool, conf_target: u32) -> String {
    let minimum = if first {
        "the minimum relay fee rate"
    } else {
        "the BIP125 minimum for a replacement (the previous fee plus the incremental relay fee)"
    };
    let estimate = choice.estimate.map(per_vbyte);
    match (choice.rule, estimate) {
        (FeeRule::Estimate, Some(e)) => format!(
            "the node's fee estimate for confirmation within {conf_target} blocks ({e}), above {minimum}"
        ),
        (FeeRule::Minimum, Some(e)) => {
            format!("{minimum}; the node's estimate ({e}) is lower")
        }
        (FeeRule::Cap, Some(e)) => {
            format!("capped by --btc-max-fee; the node's estimate is {e}")
        }
        (FeeRule::AfterRejection, _) => {
            "the node refused the previous fee as too low: a quarter more".to_owned()
        }
        (FeeRule::NoEstimate, _) | (_, None) => {
            format!("{minimum}: the node has no fee estimate (too little data)")
        }
    }
}

/// The info page's chain figures from the runner's view at unix time `now`.
pub fn chain_info_at(v: &View, now: u64) -> ChainInfo {
    let best_height = v.best.map(|b| b.0);
    let week = v.history.last_week(now);
    let first = v.unconfirmed.is_none_or(|(_, prior)| prior == 0);
    ChainInfo {
        reorged_completed_total: Some(v.reorged_total),
        fee_rate: v
            .fee
            .map(|(fee, vsize, _)| fee.to_sat() as f64 / vsize.max(1) as f64),
        fee_rule: v
            .fee
            .and_then(|(_, _, c)| c)
            .map(|c| c.rule.label().to_owned()),
        fee_reason: v
            .fee
            .and_then(|(_, _, c)| c)
            .map(|c| fee_reason(&c, first, v.conf_target)),
        txs_waiting_for_confirmation: Some(v.mined.len() as u64),
        most_recent_tx: v.unconfirmed.map(|(txid, _)| txid.to_string()),
        prior_versions: v.unconfirmed.map(|(_, n)| n as u64),
        best_block: v.best.map(|b| b.1.to_string()),
        block_height: best_height,
        balance_sats: v.balance.map(|b| b.to_sat()),
        hours_between_transactions: week.and_then(|w| w.hours_between),
        fees_in_last_week_sats: week.map(|w| w.fees.to_sat()),
        transactions: v
            .history
            .entries
            .iter()
            .take(MAX_LISTED_TXS)
            .map(|done| MinedTx {
                txid: done.txid.to_string(),
                fee_sats: done.fee.to_sat(),
                fee_rate: done.fee.to_sat() as f64 / done.vsize.max(1) as f64,
                confirmations: best_height.map_or(0, |b| {
                    u32::try_from(b.saturating_sub(done.height) + 1).unwrap_or(u32::MAX)
                }),
                block_time: done.block_time,
            })
            .collect(),
        warnings: v
            .paused
            .iter()
            .map(|(pause, e)| match pause {
                Pause::Node => {
                    format!("the Bitcoin node is unreachable, stamping is paused: {e}")
                }
                Pause::Calendar => format!("stamping is paused: {e}"),
            })
            .chain(v.warnings.iter().cloned())
            .chain(
                v.reorged
                    .iter()
                    .rev()
                    .filter(|r| r.at.saturating_add(REORG_WARNING_SECS) > now)
                    .map(|r| {
                        format!(
                            "a reorganisation deeper than {} confirmations took block {} (height {}) of completed timestamp transaction {} out of the best chain: its proofs were withdrawn and its {} commitments put back to be stamped again",
                            v.min_confirmations,
                            r.block,
                            r.height,
                            r.txid,
                            ots_stamper::ranges::count(&r.ranges)
                        )
                    }),
            )
            .chain(v.set_aside.iter().rev().map(|s| {
                format!(
                    "timestamp transaction {} (block {}): its proofs could not be stored ({}); its {} commitments were put back to be stamped again",
                    s.txid,
                    s.height,
                    s.reason,
                    ots_stamper::ranges::count(&s.ranges)
                )
            }))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use bitcoin::{Amount, BlockHash, Txid};
    use ots_stamper::history::{CompletedTx, WEEK_SECS};

    const NOW: u64 = 1_700_000_000;

    fn done(n: u8, fee: u64, vsize: u64, height: u64, block_time: u64) -> CompletedTx {
        CompletedTx {
            txid: Txid::from_byte_array([n; 32]),
            fee: Amount::from_sat(fee),
            vsize,
            height,
            block_time,
        }
    }

    #[test]
    fn chain_figures_come_from_the_history_and_the_best_block() {
        let view = View {
            best: Some((800_010, BlockHash::from_byte_array([9; 32]))),
            balance: Some(Amount::from_sat(5_000_000)),
            history: History {
                since: 0,
                entries: vec![
                    done(3, 3_000, 150, 800_010, NOW - 3_600),
                    done(2, 1_500, 300, 800_000, NOW - 4 * 3_600),
                    done(1, 9_999, 150, 798_000, NOW - WEEK_SECS - 1),
                ],
            },
            ..View::default()
        };
        let c = chain_info_at(&view, NOW);
        assert_eq!(c.block_height, Some(800_010));
        assert_eq!(c.balance_sats, Some(5_000_000));
        // The 8-day-old transaction is listed but not in the week.
        assert_eq!(c.fees_in_last_week_sats, Some(4_500));
        assert_eq!(c.hours_between_transactions, Some(3.0));
        let listed: Vec<_> = c
            .transactions
            .iter()
            .map(|t| (t.fee_sats, t.fee_rate, t.confirmations))
            .collect();
        assert_eq!(
            listed,
            vec![
                (3_000, 20.0, 1),
                (1_500, 5.0, 11),
                (9_999, 9_999.0 / 150.0, 2_011)
            ]
        );
        assert_eq!(
            c.transactions[0].txid,
            Txid::from_byte_array([3; 32]).to_string()
        );
        assert_eq!(c.transactions[0].block_time, NOW - 3_600);
    }

    #[test]
    fn weekly_figures_are_unknown_while_the_history_is_short() {
        let view = View {
            history: History {
                since: NOW - 3_600,
                entries: vec![done(1, 700, 150, 10, NOW - 1_800)],
            },
            ..View::default()
        };
        let c = chain_info_at(&view, NOW);
        assert_eq!(c.fees_in_last_week_sats, None);
        assert_eq!(c.hours_between_transactions, None);
        assert_eq!(c.transactions.len(), 1);
        assert_eq!(c.transactions[0].confirmations, 0, "no best block known");
    }

    #[test]
    fn each_fee_rule_is_explained_with_the_estimate() {
        let reason = |rule, estimate, first| fee_reason(&FeeChoice { rule, estimate }, first, 6);
        assert_eq!(
            reason(FeeRule::Estimate, Some(20_000), false),
            "the node's fee estimate for confirmation within 6 blocks (20.0 sat/vB), above the BIP125 minimum for a replacement (the previous fee plus the incremental relay fee)"
        );
        assert_eq!(
            reason(FeeRule::Minimum, Some(1_500), true),
            "the minimum relay fee rate; the node's estimate (1.5 sat/vB) is lower"
        );
        assert!(reason(FeeRule::Cap, Some(90_000), false).starts_with("capped by --btc-max-fee"));
        assert!(
            reason(FeeRule::NoEstimate, None, false).ends_with("no fee estimate (too little data)")
        );
        assert!(reason(FeeRule::AfterRejection, None, true).contains("refused"));
    }

    #[test]
    fn a_deep_reorg_is_counted_and_warned_of_for_a_week() {
        let view = View {
            min_confirmations: 6,
            reorged_total: 3,
            reorged: vec![ots_stamper::state::Reorged {
                txid: Txid::from_byte_array([4; 32]),
                block: BlockHash::from_byte_array([5; 32]),
                height: 800_000,
                ranges: vec![0..10, 20..25],
                batch: 7,
                at: NOW,
                withdrawn: true,
            }],
            ..View::default()
        };
        let c = chain_info_at(&view, NOW + 60);
        assert_eq!(c.reorged_completed_total, Some(3));
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("deeper than 6 confirmations"));
        assert!(c.warnings[0].contains("its 15 commitments"));
        let later = chain_info_at(&view, NOW + REORG_WARNING_SECS);
        assert!(later.warnings.is_empty());
        assert_eq!(later.reorged_completed_total, Some(3), "counted for good");
    }

    #[test]
    fn one_warning_per_kind_with_its_latest_figures() {
        let mut shown = Shown::default();
        let wallet = |sat| Warning::WalletTooSmall {
            needed: Amount::from_sat(sat),
        };
        assert!(shown.raise(&wallet(1_000)).is_some(), "new: logged");
        assert_eq!(shown.raise(&wallet(1_200)), None, "same kind: not again");
        let cap = Warning::FeeCapReached {
            fee: Amount::from_sat(5),
            max: Amount::from_sat(4),
        };
        assert_eq!(shown.raise(&cap), Some(describe(&cap)));
        assert_eq!(
            shown.texts(),
            vec![describe(&wallet(1_200)), describe(&cap)]
        );
        shown.clear();
        assert!(shown.texts().is_empty());
        assert!(
            shown.raise(&wallet(1_200)).is_some(),
            "new again after a send"
        );
    }
}
