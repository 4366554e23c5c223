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
//!   its commitments to pending).

use std::ops::Range;

use bitcoin::{Amount, BlockHash, OutPoint, ScriptBuf, Transaction, Txid};
use serde::{Deserialize, Serialize};

use crate::history::{CompletedTx, History};
use crate::ranges;
use crate::tx::{draft, fee_for, Draft, DraftError, InputKind, DUST_LIMIT};

/// Version of the persisted [`State`] format.
pub const STATE_FORMAT: u32 = 1;
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

/// Where a transaction's money comes from and where change goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Funding {
    /// The wallet output spent.
    pub outpoint: OutPoint,
    /// Its value.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub value: Amount,
    /// Its script type (for size estimates).
    pub kind: InputKind,
    /// The change script.
    pub change: ScriptBuf,
}

/// One version of a round's transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxVersion {
    /// The signed transaction.
    pub tx: Transaction,
    /// Its txid.
    pub txid: Txid,
    /// The Merkle tip it commits to.
    pub tip: [u8; 32],
    /// The journal positions whose commitments the tip covers, in tree order.
    pub ranges: Vec<Range<u64>>,
    /// Its fee.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub fee: Amount,
    /// Estimated virtual size.
    pub vsize: u64,
    /// The money.
    pub funding: Funding,
}

/// A transaction being signed or broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The transaction (signed once `signed` is true).
    pub tx: Transaction,
    /// Whether `tx` carries signatures.
    pub signed: bool,
    /// The tip.
    pub tip: [u8; 32],
    /// Journal positions covered.
    pub ranges: Vec<Range<u64>>,
    /// Fee.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub fee: Amount,
    /// Estimated virtual size.
    pub vsize: u64,
    /// The money.
    pub funding: Funding,
}

/// A mined transaction waiting for its confirmations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mined {
    /// The version that was mined.
    pub version: TxVersion,
    /// Its block.
    pub block: BlockHash,
    /// The block's height.
    pub height: u64,
}

/// The current round: versions broadcast so far, and the one in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Round {
    /// Broadcast versions, oldest first.
    pub versions: Vec<TxVersion>,
    /// A version being signed or broadcast.
    pub attempt: Option<Attempt>,
}

/// Everything the stamper must remember across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// [`STATE_FORMAT`].
    pub format: u32,
    /// Journal positions below this have been handed to a round (or are in
    /// `returned`).
    pub journal_end: u64,
    /// Positions below `journal_end` that are pending again (left out of a
    /// mined version, or reorged out).
    pub returned: Vec<Range<u64>>,
    /// The round in progress.
    pub round: Option<Round>,
    /// Mined transactions not yet final.
    pub mined: Vec<Mined>,
    /// Reorged-out transactions that could still be mined.
    pub orphans: Vec<TxVersion>,
    /// Unix time before which no round starts.
    pub next_round_at: u64,
    /// Best height seen.
    pub best_height: u64,
    /// Completed transactions, for the info page (a state written before
    /// it existed loads with an unknown history).
    #[serde(default = "crate::history::unknown")]
    pub history: History,
}

impl Default for State {
    fn default() -> Self {
        State {
            format: STATE_FORMAT,
            journal_end: 0,
            returned: Vec::new(),
            round: None,
            mined: Vec::new(),
            orphans: Vec::new(),
            next_round_at: 0,
            best_height: 0,
            history: History::default(),
        }
    }
}

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a round over these positions: compute the Merkle tip of their
    /// commitments, gather wallet outputs, a fee estimate, a change script
    /// and the height, then call [`Stamper::on_funding`].
    Fund(Vec<Range<u64>>),
    /// Replace the round's transaction with one over these positions:
    /// compute their tip and call [`Stamper::on_bump`].
    Bump(Vec<Range<u64>>),
    /// Sign with the wallet, then call [`Stamper::on_signed`].
    Sign(Transaction),
    /// Persist the state, broadcast, then call [`Stamper::on_broadcast`].
    Broadcast(Transaction),
    /// Build the proofs of this transaction's commitments, store them (one
    /// batch), then call [`Stamper::on_completed`].
    Complete(Box<Mined>),
    /// Tell the operator.
    Warn(Warning),
}

/// Conditions the operator should know about (log once; show on the info
/// page while they last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// No confirmed wallet output can pay for a round.
    WalletTooSmall {
        /// The fee the round needs.
        needed: Amount,
    },
    /// The fee cap stops further bumping.
    FeeCapReached {
        /// The fee the next version would pay.
        fee: Amount,
        /// The cap.
        max: Amount,
    },
    /// The node refused a transaction for a reason other than its fee.
    BroadcastRefused {
        /// Core's code.
        code: i64,
        /// Core's message.
        message: String,
    },
}

/// A wallet output offered for funding (from `listunspent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utxo {
    /// Where.
    pub outpoint: OutPoint,
    /// How much.
    pub value: Amount,
    /// Its script.
    pub script: ScriptBuf,
    /// Confirmations.
    pub confirmations: u64,
}

/// What the node said to a broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BroadcastResult {
    /// Accepted (or already known).
    Accepted,
    /// Refused with Core's code and message.
    Refused {
        /// Code (-26 for policy, -25 for missing inputs, -27 already mined).
        code: i64,
        /// Message.
        message: String,
    },
}

/// Where a journal position stands, for `GET /timestamp`'s 404 reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Not in a mined transaction yet.
    Pending,
    /// Mined, waiting for more confirmations.
    Mined {
        /// The transaction.
        txid: Txid,
        /// Confirmations still needed.
        waiting_for: u64,
    },
}

/// The state machine.
#[derive(Debug)]
pub struct Stamper {
    config: Config,
    state: State,
    /// A `Fund` was asked for and not answered (not persisted: after a
    /// restart we simply ask again).
    funding_requested: bool,
    /// Transactions whose completion was requested and not reported.
    completing: Vec<Txid>,
    /// Whether the fee cap warning was given for the current round.
    cap_warned: bool,
    /// The last round could not be funded: try again at the next block
    /// (which may confirm a deposit) rather than only after the delay.
    unfunded: bool,
    /// A block came and the round's transaction is still unconfirmed: the
    /// next tick bumps it.
    bump_due: bool,
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

    /// The status of journal position `position`.
    pub fn status(&self, position: u64) -> Status {
        for m in &self.state.mined {
            if ranges::contains(&m.version.ranges, position) {
                let confirmations = self.state.best_height.saturating_sub(m.height) + 1;
                return Status::Mined {
                    txid: m.version.txid,
                    waiting_for: self.config.min_confirmations.saturating_sub(confirmations),
                };
            }
        }
        Status::Pending
    }

    /// What must be redone after a restart or a node outage: rebroadcast a
    /// signed attempt, or else the latest version (a node that crashed has
    /// lost its mempool; a broadcast is idempotent), and complete final
    /// transactions.
    pub fn on_start(&mut self) -> Vec<Action> {
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
        actions
    }

    /// Time passes: start a round when it is time and something is pending.
    pub fn on_tick(&mut self, now: u64, journal_len: u64) -> Vec<Action> {
        if std::mem::take(&mut self.bump_due) {
            if let Some(covered) = self.bump_cover(journal_len) {
                return vec![Action::Bump(covered)];
            }
        }
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

    /// The runtime gathered what a round needs.
    #[allow(clippy::too_many_arguments)]
    pub fn on_funding(
        &mut self,
        now: u64,
        utxos: &[Utxo],
        feerate: Option<u64>,
        change: ScriptBuf,
        height: u64,
        tip: [u8; 32],
        covered: Vec<Range<u64>>,
    ) -> Vec<Action> {
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
        // A high estimate is capped rather than refused: a capped fee still
        // gets the round started, and bumps follow block by block.
        let fee = fee_for(rate, vsize).min(self.config.max_fee);
        match self.make_attempt(funding, tip, covered, fee, height) {
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

    fn make_attempt(
        &self,
        funding: Funding,
        tip: [u8; 32],
        covered: Vec<Range<u64>>,
        fee: Amount,
        height: u64,
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
        })
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
            match self.make_attempt(attempt.funding, attempt.tip, attempt.ranges, fee, height) {
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

    fn cap_reached(&mut self, now: u64, fee: Amount) -> Vec<Action> {
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
    fn abandon_empty_round(&mut self, now: u64) {
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

    /// The runtime computed the tip for a [`Action::Bump`].
    pub fn on_bump(&mut self, tip: [u8; 32], covered: Vec<Range<u64>>, height: u64) -> Vec<Action> {
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
        let fee = latest.fee + fee_for(self.config.relay_feerate, vsize);
        let funding = latest.funding.clone();
        match self.make_attempt(funding, tip, covered, fee, height) {
            Ok(attempt) => {
                let tx = attempt.tx.clone();
                if let Some(round) = self.state.round.as_mut() {
                    round.attempt = Some(attempt);
                }
                vec![Action::Sign(tx)]
            }
            Err(_) if self.cap_warned => Vec::new(),
            Err(_) => {
                self.cap_warned = true;
                vec![Action::Warn(Warning::FeeCapReached {
                    fee,
                    max: self.config.max_fee,
                })]
            }
        }
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
        // many blocks behind bumps once, not once per block).
        self.bump_due = self.state.round.is_some();
        actions
    }

    /// The replacement's coverage: the latest version's commitments and
    /// everything pending now; `None` when no replacement is possible.
    fn bump_cover(&self, journal_len: u64) -> Option<Vec<Range<u64>>> {
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

    /// Blocks above `fork_height` left the best chain.
    pub fn on_reorg(&mut self, fork_height: u64) -> Vec<Action> {
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
        Vec::new()
    }

    /// Gathering a round's funding failed (the node is unreachable): ask
    /// again at the next tick.
    pub fn on_funding_failed(&mut self) {
        self.funding_requested = false;
    }

    /// Completing `txid` failed (block unavailable, store error): ask again
    /// at the next block or restart.
    pub fn on_complete_failed(&mut self, txid: Txid) {
        self.completing.retain(|t| *t != txid);
    }

    /// The proofs of `txid` are stored for good; `block_time` is the
    /// header time of the block that mined it.
    pub fn on_completed(&mut self, now: u64, txid: Txid, block_time: u64) {
        if let Some(m) = self.state.mined.iter().find(|m| m.version.txid == txid) {
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
