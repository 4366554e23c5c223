//! How a round's transaction is made and remade: funding the first
//! version from the wallet's largest confirmed output, each replacement
//! paying the higher of the BIP125 minimum (the old fee plus the
//! incremental relay fee for its size) and the node's fresh estimate
//! ([`crate::fee`]), the `--btc-max-fee` cap, and giving up a round that
//! never got a transaction out.

use std::ops::Range;

use bitcoin::Amount;

use crate::action::{Action, FundingOffer, Warning};
use crate::fee::{self, FeeChoice, FeeRule};
use crate::ranges;
use crate::stamper::{Stamper, UNFUNDED_RETRY_SECS};
use crate::state::{Attempt, Funding, Round};
use crate::tx::{draft, fee_for, Draft, DraftError, InputKind, DUST_LIMIT};

impl Stamper {
    /// The runtime gathered what a round over `covered` needs.
    pub fn on_funding(
        &mut self,
        now: u64,
        covered: Vec<Range<u64>>,
        offer: FundingOffer,
    ) -> Vec<Action> {
        let FundingOffer {
            utxos,
            feerate,
            change,
            height,
            tip,
        } = offer;
        self.funding_requested = false;
        if self.state.round.is_some() {
            return Vec::new();
        }
        self.state.best_height = self.state.best_height.max(height);
        // Reference behaviour: the largest confirmed output above dust.
        let best = utxos
            .iter()
            .filter(|u| u.confirmations >= 1 && u.value > DUST_LIMIT)
            .max_by_key(|u| u.value);
        let rate = feerate.unwrap_or(0).max(self.config.relay_feerate);
        let Some(utxo) = best else {
            self.state.next_round_at = now + UNFUNDED_RETRY_SECS;
            self.unfunded = true;
            return vec![Action::Warn(Warning::WalletTooSmall {
                needed: fee_for(rate, crate::tx::vsize(InputKind::P2wpkh, Some(&change))),
            })];
        };
        let funding = Funding {
            outpoint: utxo.outpoint,
            value: utxo.value,
            kind: InputKind::of(&utxo.script),
            change,
        };
        let vsize = crate::tx::vsize(funding.kind, Some(&funding.change));
        // The relay fee rate or the estimate, whichever is higher. A high
        // estimate is capped rather than refused: a capped fee still gets
        // the round started, and bumps follow block by block.
        let minimum = fee_for(self.config.relay_feerate, vsize);
        let at_estimate = feerate.map(|r| fee_for(r, vsize));
        let (fee, rule) = fee::choose(minimum, at_estimate, self.config.max_fee)
            .unwrap_or((self.config.max_fee, FeeRule::Cap));
        let choice = FeeChoice {
            rule,
            estimate: feerate,
        };
        match self.make_attempt(funding, tip, covered, fee, height, choice) {
            Ok(attempt) => {
                let tx = attempt.tx.clone();
                self.state.round = Some(Round {
                    versions: Vec::new(),
                    attempt: Some(attempt),
                });
                self.cap_warned = false;
                vec![Action::Sign(tx)]
            }
            Err(DraftError::InputTooSmall { fee, .. })
            | Err(DraftError::OverMaxFee { fee, .. }) => {
                self.state.next_round_at = now + UNFUNDED_RETRY_SECS;
                self.unfunded = true;
                vec![Action::Warn(Warning::WalletTooSmall { needed: fee })]
            }
        }
    }

    pub(crate) fn make_attempt(
        &self,
        funding: Funding,
        tip: [u8; 32],
        covered: Vec<Range<u64>>,
        fee: Amount,
        height: u64,
        choice: FeeChoice,
    ) -> Result<Attempt, DraftError> {
        let input = (funding.outpoint, funding.value, funding.kind);
        let lock = u32::try_from(height).unwrap_or(0);
        let Draft { tx, fee, vsize } =
            draft(input, &funding.change, &tip, fee, lock, self.config.max_fee)?;
        Ok(Attempt {
            tx,
            signed: false,
            tip,
            ranges: covered,
            fee,
            vsize,
            funding,
            fee_choice: Some(choice),
        })
    }

    pub(crate) fn cap_reached(&mut self, now: u64, fee: Amount) -> Vec<Action> {
        self.abandon_empty_round(now);
        if self.cap_warned {
            return Vec::new();
        }
        self.cap_warned = true;
        vec![Action::Warn(Warning::FeeCapReached {
            fee,
            max: self.config.max_fee,
        })]
    }

    /// A round whose every attempt failed spends nothing: drop it and try
    /// again later.
    pub(crate) fn abandon_empty_round(&mut self, now: u64) {
        if self
            .state
            .round
            .as_ref()
            .is_some_and(|r| r.versions.is_empty() && r.attempt.is_none())
        {
            self.state.round = None;
            self.state.next_round_at = now + UNFUNDED_RETRY_SECS;
        }
    }

    /// The runtime computed the tip for a [`Action::Bump`] and asked the
    /// node for its fee estimate (`feerate`, sat/kvB; `None` when it has
    /// none). The replacement pays the higher of the BIP125 minimum and the
    /// estimate, at most `--btc-max-fee` (see [`fee`]).
    pub fn on_bump(
        &mut self,
        tip: [u8; 32],
        covered: Vec<Range<u64>>,
        height: u64,
        feerate: Option<u64>,
    ) -> Vec<Action> {
        let Some(round) = self.state.round.as_ref() else {
            return Vec::new();
        };
        let Some(latest) = round.versions.last() else {
            return Vec::new();
        };
        if round.attempt.is_some() {
            return Vec::new();
        }
        // BIP125: the replacement pays at least the old fee plus the
        // incremental relay fee for its own size.
        let vsize = crate::tx::vsize(latest.funding.kind, Some(&latest.funding.change));
        let minimum = latest.fee + fee_for(self.config.relay_feerate, vsize);
        let at_estimate = feerate.map(|r| fee_for(r, vsize));
        let funding = latest.funding.clone();
        let made = fee::choose(minimum, at_estimate, self.config.max_fee)
            .map_err(|over| over.minimum)
            .and_then(|(fee, rule)| {
                let choice = FeeChoice {
                    rule,
                    estimate: feerate,
                };
                self.make_attempt(funding, tip, covered, fee, height, choice)
                    .map_err(|_| fee)
            });
        match made {
            Ok(attempt) => {
                let tx = attempt.tx.clone();
                if let Some(round) = self.state.round.as_mut() {
                    round.attempt = Some(attempt);
                }
                vec![Action::Sign(tx)]
            }
            Err(_) if self.cap_warned => Vec::new(),
            Err(fee) => {
                self.cap_warned = true;
                vec![Action::Warn(Warning::FeeCapReached {
                    fee,
                    max: self.config.max_fee,
                })]
            }
        }
    }

    /// The replacement's coverage: the latest version's commitments and
    /// everything pending now; `None` when no replacement is possible.
    pub(crate) fn bump_cover(&self, journal_len: u64) -> Option<Vec<Range<u64>>> {
        let round = self.state.round.as_ref()?;
        if round.attempt.is_some() {
            return None;
        }
        let mut covered = round.versions.last()?.ranges.clone();
        let pending = self.pending(journal_len);
        let room = self
            .config
            .max_pending
            .saturating_sub(ranges::count(&covered));
        covered.extend(ranges::take(&pending, room));
        Some(covered)
    }
}
