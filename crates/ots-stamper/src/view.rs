//! What the server shows of the stamper: the [`View`] the runner keeps
//! up to date after every step, and the stamper's warnings as the text the
//! operator sees.

use std::ops::Range;

use bitcoin::{Amount, BlockHash, Txid};

use crate::history::History;
use crate::ranges;
use crate::runner::Runner;
use crate::stamper::{Status, Warning};

/// What the server shows of the stamper (info page, 404 reasons).
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Best block seen.
    pub best: Option<(u64, BlockHash)>,
    /// Mined transactions not yet final: positions, txid, height.
    pub mined: Vec<(Vec<Range<u64>>, Txid, u64)>,
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
    /// The node's last error, while it is unreachable.
    pub node_error: Option<String>,
    /// Completed transactions (a copy of the persisted history).
    pub history: History,
}

impl View {
    /// Where journal position `position` stands.
    pub fn status(&self, position: u64) -> Status {
        let best = self.best.map_or(0, |b| b.0);
        for (covered, txid, height) in &self.mined {
            if ranges::contains(covered, position) {
                let confirmations = best.saturating_sub(*height) + 1;
                return Status::Mined {
                    txid: *txid,
                    waiting_for: self.min_confirmations.saturating_sub(confirmations),
                };
            }
        }
        Status::Pending
    }
}

impl Runner {
    pub(crate) fn refresh_view(&self) {
        let state = self.stamper.state();
        let mined = state
            .mined
            .iter()
            .map(|m| (m.version.ranges.clone(), m.version.txid, m.height))
            .collect();
        let latest = state
            .round
            .as_ref()
            .and_then(|r| r.versions.last().map(|v| (v, r.versions.len())));
        let best = self.known.last().copied();
        let history = state.history.clone();
        self.set_view(|v| {
            v.history = history;
            v.mined = mined;
            v.tip = latest.map(|(l, _)| l.tip);
            v.unconfirmed = latest.map(|(l, n)| (l.txid, n - 1));
            v.best = best;
        });
    }

    pub(crate) fn set_view(&self, f: impl FnOnce(&mut View)) {
        let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
        f(&mut view);
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

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::Amount;

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
