//! The stamper: which commitments go into which transaction, when to start
//! a round, when and how much to bump, when a proof is final, and what a
//! reorg undoes. It performs no I/O: the runtime calls an `on_*` method for
//! each event (time, a new block, a reorg, an RPC result) and carries out
//! the [`Action`]s returned, then persists [`State`] (atomically) before
//! acting on anything irreversible.
//!
//! Invariants:
//! * every version of the current round spends the same wallet output, so
//!   at most one of them can ever confirm: no double spend, whatever the
//!   node reorders;
//! * a signed transaction is recorded in the state (to be persisted) before
//!   it is broadcast, so a crash in between cannot lose track of it;
//! * a mined transaction stays in the state until the runtime reports its
//!   proofs stored, which it is asked to do only after
//!   `min_confirmations`; a reorg before that returns it to the round (or
//!   its commitments to pending);
//! * a completed transaction is remembered for [`REORG_WATCH_BLOCKS`]: a
//!   reorg deeper than `min_confirmations` that takes its block away has
//!   its proofs withdrawn and its commitments stamped again, and nothing is
//!   forgotten until the runtime reports the withdrawal done.

use std::ops::Range;

use bitcoin::{Amount, BlockHash, Transaction, Txid};

pub use crate::action::{Action, BroadcastResult, FundingOffer, Status, Utxo, Warning};
use crate::history::CompletedTx;
use crate::ranges;
pub use crate::state::{
    Attempt, Completed, Funding, Mined, Reorged, Round, State, TxVersion, MAX_REORGED,
    REORG_WATCH_BLOCKS, STATE_FORMAT,
};

/// Fee raise after a "fee too low" rejection: +25 %.
pub const REJECTION_BUMP_PERCENT: u64 = 25;
/// Delay before trying again when the wallet cannot fund a round.
pub const UNFUNDED_RETRY_SECS: u64 = 60;

/// Operator settings (the `--btc-*` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Confirmations before a proof is final (at least 2).
    pub min_confirmations: u64,
    /// Minimum seconds between rounds. The actual interval is drawn
    /// between this and twice this (as the reference does), from the hash
    /// of the block that confirmed the previous round: unpredictable to
    /// outsiders, reproducible in tests.
    pub min_tx_interval_secs: u64,
    /// Minimum relay (and incremental relay) fee rate, sat/kvB.
    pub relay_feerate: u64,
    /// Largest fee a transaction may pay.
    pub max_fee: Amount,
    /// Most commitments in one round.
    pub max_pending: u64,
}

/// The status of journal position `position`, given the mined
/// transactions not yet final, the best height and the confirmations a
/// proof needs. One rule for the state machine and for a runtime's copy of
/// those figures (what its HTTP layer reads between steps).
pub fn status_in(
    mined: &[Mined],
    best_height: u64,
    min_confirmations: u64,
    position: u64,
) -> Status {
    for m in mined {
        if ranges::contains(&m.version.ranges, position) {
            let confirmations = best_height.saturating_sub(m.height) + 1;
            return Status::Mined {
                txid: m.version.txid,
                waiting_for: min_confirmations.saturating_sub(confirmations),
            };
        }
    }
    Status::Pending
}

/// The state machine.
#[derive(Debug)]
pub struct Stamper {
    pub(crate) config: Config,
    pub(crate) state: State,
    /// A `Fund` was asked for and not answered (not persisted: after a
    /// restart we simply ask again).
    pub(crate) funding_requested: bool,
    /// Transactions whose completion was requested and not reported.
    pub(crate) completing: Vec<Txid>,
    /// Whether the fee cap warning was given for the current round.
    pub(crate) cap_warned: bool,
    /// The last round could not be funded: try again at the next block
    /// (which may confirm a deposit) rather than only after the delay.
    pub(crate) unfunded: bool,
    /// A block came and the round's transaction is still unconfirmed: the
    /// next tick bumps it.
    pub(crate) bump_due: bool,
}

impl Stamper {
    /// A stamper resuming from `state`.
    pub fn new(config: Config, state: State) -> Self {
        Stamper {
            config,
            state,
            funding_requested: false,
            completing: Vec::new(),
            cap_warned: false,
            unfunded: false,
            bump_due: false,
        }
    }

    /// The state to persist.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Positions pending (in no transaction), given the journal's length.
    pub fn pending(&self, journal_len: u64) -> Vec<Range<u64>> {
        let mut all = self.state.returned.clone();
        all.push(self.state.journal_end..journal_len.max(self.state.journal_end));
        ranges::normalize(all)
    }

    /// The status of journal position `position` (see [`status_in`]).
    pub fn status(&self, position: u64) -> Status {
        status_in(
            &self.state.mined,
            self.state.best_height,
            self.config.min_confirmations,
            position,
        )
    }

    /// What must be redone after a restart or a node outage: rebroadcast a
    /// signed attempt, or else the latest version (a node that crashed has
    /// lost its mempool; a broadcast is idempotent), and complete final
    /// transactions.
    pub fn on_start(&mut self) -> Vec<Action> {
        // Nothing is in flight when the runtime (re)starts a step: a
        // failed step dropped the actions queued behind its failure, so
        // completions asked for then are asked for again.
        self.completing.clear();
        let mut actions = Vec::new();
        if let Some(round) = self.state.round.as_ref() {
            match (&round.attempt, round.versions.last()) {
                (Some(attempt), _) if attempt.signed => {
                    actions.push(Action::Broadcast(attempt.tx.clone()));
                }
                (Some(attempt), _) => actions.push(Action::Sign(attempt.tx.clone())),
                (None, Some(latest)) => actions.push(Action::Broadcast(latest.tx.clone())),
                (None, None) => {}
            }
        }
        actions.extend(self.final_completions());
        // Withdrawals a crash interrupted (idempotent).
        for r in self.state.reorged.iter().filter(|r| !r.withdrawn) {
            actions.push(Action::Withdraw(Box::new(r.clone())));
        }
        actions
    }

    /// Time passes: start a round when it is time and something is pending.
    pub fn on_tick(&mut self, now: u64, journal_len: u64) -> Vec<Action> {
        if std::mem::take(&mut self.bump_due) {
            if let Some(covered) = self.bump_cover(journal_len) {
                return vec![Action::Bump(covered)];
            }
        }
        // No rule sets a wait longer than twice the interval (or the
        // unfunded retry): a later time comes from a clock that was ahead
        // when it was saved, and would stop stamping until then.
        let longest = now
            .saturating_add(self.config.min_tx_interval_secs.saturating_mul(2))
            .saturating_add(UNFUNDED_RETRY_SECS);
        self.state.next_round_at = self.state.next_round_at.min(longest);
        if self.state.round.is_some() || self.funding_requested || now < self.state.next_round_at {
            return Vec::new();
        }
        let pending = self.pending(journal_len);
        if pending.is_empty() {
            return Vec::new();
        }
        self.funding_requested = true;
        vec![Action::Fund(ranges::take(
            &pending,
            self.config.max_pending,
        ))]
    }

    /// The wallet signed the attempt.
    pub fn on_signed(&mut self, tx: Transaction) -> Vec<Action> {
        let Some(attempt) = self.state.round.as_mut().and_then(|r| r.attempt.as_mut()) else {
            return Vec::new();
        };
        if tx.input.first().map(|i| i.previous_output) != Some(attempt.funding.outpoint)
            || tx.output != attempt.tx.output
        {
            // Not what we asked to sign: refuse to broadcast it.
            return vec![Action::Warn(Warning::BroadcastRefused {
                code: 0,
                message: "the wallet returned a different transaction than the one to sign".into(),
            })];
        }
        attempt.tx = tx.clone();
        attempt.signed = true;
        vec![Action::Broadcast(tx)]
    }

    /// The node answered a broadcast of the attempt.
    pub fn on_broadcast(&mut self, now: u64, result: BroadcastResult) -> Vec<Action> {
        let height = self.state.best_height;
        let Some(round) = self.state.round.as_mut() else {
            return Vec::new();
        };
        let Some(attempt) = round.attempt.take() else {
            return Vec::new();
        };
        let accepted = match &result {
            BroadcastResult::Accepted => true,
            // Already mined: it will show up in a block.
            BroadcastResult::Refused { code: -27, .. } => true,
            _ => false,
        };
        if accepted {
            let covered = attempt.ranges.clone();
            let end = covered.iter().map(|r| r.end).max().unwrap_or(0);
            round.versions.push(TxVersion {
                txid: attempt.tx.compute_txid(),
                tx: attempt.tx,
                tip: attempt.tip,
                ranges: attempt.ranges,
                fee: attempt.fee,
                vsize: attempt.vsize,
                funding: attempt.funding,
                fee_choice: attempt.fee_choice,
            });
            self.state.returned = ranges::subtract(&self.state.returned, &covered);
            self.state.journal_end = self.state.journal_end.max(end);
            return Vec::new();
        }
        let BroadcastResult::Refused { code, message } = result else {
            return Vec::new();
        };
        let fee_problem = code == -26 && message.contains("fee");
        if fee_problem {
            let fee =
                attempt.fee + attempt.fee * REJECTION_BUMP_PERCENT / 100 + Amount::from_sat(1);
            let choice = crate::fee::FeeChoice {
                rule: crate::fee::FeeRule::AfterRejection,
                estimate: attempt.fee_choice.and_then(|c| c.estimate),
            };
            match self.make_attempt(
                attempt.funding,
                attempt.tip,
                attempt.ranges,
                fee,
                height,
                choice,
            ) {
                Ok(new_attempt) => {
                    let tx = new_attempt.tx.clone();
                    if let Some(round) = self.state.round.as_mut() {
                        round.attempt = Some(new_attempt);
                    }
                    return vec![Action::Sign(tx)];
                }
                Err(_) => return self.cap_reached(now, fee),
            }
        }
        self.abandon_empty_round(now);
        vec![Action::Warn(Warning::BroadcastRefused { code, message })]
    }

    /// A block joined the best chain at `height` (blocks arrive in order;
    /// after a reorg, [`Stamper::on_reorg`] comes first).
    pub fn on_block(
        &mut self,
        now: u64,
        height: u64,
        hash: BlockHash,
        txids: &[Txid],
    ) -> Vec<Action> {
        self.state.best_height = height;
        // Completed transactions too deep for a reorg we would see.
        self.state
            .completed
            .retain(|c| c.height.saturating_add(REORG_WATCH_BLOCKS) > height);
        let mut actions = Vec::new();
        let in_block = |txid: &Txid| txids.contains(txid);
        if std::mem::take(&mut self.unfunded) && self.state.round.is_none() {
            self.state.next_round_at = self.state.next_round_at.min(now);
        }

        // Our round's transaction mined?
        let mined_version = self
            .state
            .round
            .as_ref()
            .and_then(|r| r.versions.iter().find(|v| in_block(&v.txid)).cloned());
        if let Some(version) = mined_version {
            let latest = self
                .state
                .round
                .as_ref()
                .and_then(|r| r.versions.last())
                .map(|v| v.ranges.clone())
                .unwrap_or_default();
            let mut leftover = ranges::subtract(&latest, &version.ranges);
            // A version being signed may cover more still.
            if let Some(a) = self.state.round.as_ref().and_then(|r| r.attempt.as_ref()) {
                leftover.extend(ranges::subtract(&a.ranges, &version.ranges));
            }
            self.state.returned =
                ranges::normalize([self.state.returned.clone(), leftover].concat());
            self.state.round = None;
            self.state.next_round_at = now + self.round_interval(&hash);
            self.state.mined.push(Mined {
                version,
                block: hash,
                height,
            });
        }
        // A reorged-out transaction mined again?
        let (found, orphans): (Vec<_>, Vec<_>) = std::mem::take(&mut self.state.orphans)
            .into_iter()
            .partition(|v| in_block(&v.txid));
        self.state.orphans = orphans;
        for version in found {
            self.state.returned = ranges::subtract(&self.state.returned, &version.ranges);
            self.state.mined.push(Mined {
                version,
                block: hash,
                height,
            });
        }
        actions.extend(self.final_completions());

        // Still unconfirmed: replace it at the next tick, which comes once
        // the runtime has caught up with the chain (a calendar that was
        // many blocks behind bumps once, not once per block). Not for a
        // block at or below the latest version's lock time: the node was
        // at that height when the version was made (the lock time is the
        // node's height then), so the block was there before it and could
        // never hold it (a transaction locked at height h is final from
        // block h + 1 on). A runtime still catching up with blocks mined
        // while it funded the round sees such blocks after the broadcast.
        let came_after = |round: &Round| {
            round
                .versions
                .last()
                .is_none_or(|v| height > u64::from(v.tx.lock_time.to_consensus_u32()))
        };
        self.bump_due = match self.state.round.as_ref() {
            Some(round) => self.bump_due || came_after(round),
            None => false,
        };
        actions
    }

    /// `min_tx_interval × random(1..2)`, the randomness from `block`.
    fn round_interval(&self, block: &BlockHash) -> u64 {
        use bitcoin::hashes::Hash;
        let min = self.config.min_tx_interval_secs;
        let mut first = [0u8; 8];
        first.copy_from_slice(&block.as_byte_array()[..8]);
        min + u64::from_le_bytes(first) % (min + 1)
    }

    fn final_completions(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        for m in &self.state.mined {
            let confirmations = self.state.best_height.saturating_sub(m.height) + 1;
            if confirmations >= self.config.min_confirmations
                && !self.completing.contains(&m.version.txid)
            {
                self.completing.push(m.version.txid);
                actions.push(Action::Complete(Box::new(m.clone())));
            }
        }
        actions
    }

    /// Blocks above `fork_height` left the best chain (seen at unix time
    /// `now`). Mined transactions in them are waiting again; completed
    /// ones (the reorg is deeper than `min_confirmations`) have proofs
    /// naming a block no longer in the best chain: each is withdrawn
    /// ([`Action::Withdraw`]), its commitments pending again, and the
    /// transaction itself watched in case it is mined again.
    pub fn on_reorg(&mut self, now: u64, fork_height: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.state.completed)
            .into_iter()
            .partition(|c| c.height > fork_height);
        self.state.completed = kept;
        for c in gone {
            let reorged = Reorged {
                txid: c.version.txid,
                block: c.block,
                height: c.height,
                ranges: c.version.ranges.clone(),
                batch: c.batch,
                at: now,
                withdrawn: false,
            };
            self.state.returned =
                ranges::normalize([self.state.returned.clone(), c.version.ranges.clone()].concat());
            if !self.state.orphans.iter().any(|o| o.txid == c.version.txid) {
                self.state.orphans.push(c.version);
            }
            self.state.reorged_total += 1;
            self.state.reorged.push(reorged.clone());
            actions.push(Action::Withdraw(Box::new(reorged)));
        }
        // Bounded, forgetting the oldest withdrawn ones first (one not
        // withdrawn yet is kept until it is).
        while self.state.reorged.len() > MAX_REORGED {
            match self.state.reorged.iter().position(|r| r.withdrawn) {
                Some(at) => {
                    self.state.reorged.remove(at);
                }
                None => break,
            }
        }
        self.state.best_height = self.state.best_height.min(fork_height);
        let (undone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.state.mined)
            .into_iter()
            .partition(|m| m.height > fork_height);
        self.state.mined = kept;
        for m in undone {
            self.completing.retain(|t| *t != m.version.txid);
            if self.state.round.is_none() {
                // Still valid and spending the same output: make it the
                // round again, to be bumped on the next block.
                self.state.round = Some(Round {
                    versions: vec![m.version],
                    attempt: None,
                });
            } else {
                // Its commitments go back to pending; if it is mined after
                // all, on_block finds it among the orphans.
                self.state.returned = ranges::normalize(
                    [self.state.returned.clone(), m.version.ranges.clone()].concat(),
                );
                self.state.orphans.push(m.version);
            }
        }
        actions
    }

    /// The runtime withdrew the proofs of reorged-out `txid`.
    pub fn on_withdrawn(&mut self, txid: Txid) {
        for r in self.state.reorged.iter_mut().filter(|r| r.txid == txid) {
            r.withdrawn = true;
        }
    }

    /// Gathering a round's funding failed (the node is unreachable): ask
    /// again at the next tick.
    pub fn on_funding_failed(&mut self) {
        self.funding_requested = false;
    }

    /// The wallet did not sign the attempt (the node is down, or the
    /// output it spends is spent in the chain: a block confirmed the
    /// version it replaces while it was being made). A replacement, never
    /// sent, is dropped, and made afresh at the next tick, once the runtime
    /// has looked at the chain again (which may show the round mined):
    /// retrying it unchanged before that could fail forever. A round's
    /// first attempt is kept, to be signed again (it spends an output the
    /// wallet offered, and nothing else is in flight).
    pub fn on_sign_failed(&mut self) {
        let Some(round) = self.state.round.as_mut() else {
            return;
        };
        if !round.versions.is_empty() && round.attempt.as_ref().is_some_and(|a| !a.signed) {
            round.attempt = None;
            self.bump_due = true;
        }
    }

    /// Completing `txid` failed (block unavailable, store error): ask again
    /// at the next block or restart.
    pub fn on_complete_failed(&mut self, txid: Txid) {
        self.completing.retain(|t| *t != txid);
    }

    /// The proofs of mined `txid` cannot be stored, and never will be: the
    /// journal's records at its positions no longer lead to its tip (the
    /// journal was damaged after the round). It is set aside, with
    /// `reason`, and its positions are pending again, so that its other
    /// commitments get proofs in a later round and stamping goes on.
    pub fn on_complete_rejected(&mut self, now: u64, txid: Txid, reason: String) {
        self.completing.retain(|t| *t != txid);
        let Some(at) = self.state.mined.iter().position(|m| m.version.txid == txid) else {
            return;
        };
        let m = self.state.mined.remove(at);
        self.state.returned =
            ranges::normalize([self.state.returned.clone(), m.version.ranges.clone()].concat());
        self.state.set_aside.push(crate::state::SetAside {
            txid,
            height: m.height,
            ranges: m.version.ranges,
            reason,
            at: now,
        });
        let excess = self
            .state
            .set_aside
            .len()
            .saturating_sub(crate::state::MAX_SET_ASIDE);
        self.state.set_aside.drain(..excess);
    }

    /// The proofs of `txid` are stored, as the store's batch `batch`;
    /// `block_time` is the header time of the block that mined it. Kept
    /// in view for [`REORG_WATCH_BLOCKS`] in case a reorg undoes it.
    pub fn on_completed(&mut self, now: u64, txid: Txid, block_time: u64, batch: u64) {
        if let Some(m) = self.state.mined.iter().find(|m| m.version.txid == txid) {
            self.state.completed.retain(|c| c.version.txid != txid);
            self.state.completed.push(Completed {
                version: m.version.clone(),
                block: m.block,
                height: m.height,
                batch,
            });
            let done = CompletedTx {
                txid,
                fee: m.version.fee,
                vsize: m.version.vsize,
                height: m.height,
                block_time,
            };
            self.state.history.record(done, now);
        }
        self.state.mined.retain(|m| m.version.txid != txid);
        self.completing.retain(|t| *t != txid);
    }
}
