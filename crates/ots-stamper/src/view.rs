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

pub(crate) fn describe(w: &Warning) -> String {
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
