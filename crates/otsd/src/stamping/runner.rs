//! Runs the [`Stamper`] against a node ([`ChainSource`] + [`Wallet`]):
//! polls the chain (detecting reorgs by re-checking the hashes of recent
//! blocks), feeds the state machine, carries out its actions, builds the
//! completed proofs into the [`Store`], and persists the state after every
//! change — before any broadcast. A failed pass pauses stamping (logged
//! once per pause, with a message that says whether the node or the
//! calendar's own files are at fault) and never stops the calendar from
//! accepting digests.

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::{BlockHash, Txid};
use ots_bitcoin::{ProofError, RpcError};
use ots_stamper::stamper::{Action, BroadcastResult, Config, Stamper};

use super::node::{ChainSource, Wallet};
use super::persist::{self, PersistError};
use super::view::{Pause, Shown, View};
use crate::journal::JournalReader;
use crate::status::PendingIndex;
use crate::store::{Store, StoreError};
use crate::upstream::{NoHold, StampHold};

/// Recent blocks remembered for reorg detection (a day of blocks), as
/// deep as the stamper watches completed transactions.
pub const KNOWN_BLOCKS: usize = ots_stamper::stamper::REORG_WATCH_BLOCKS as usize;

/// How the runner runs.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The state machine's settings.
    pub stamper: Config,
    /// Where the state is persisted.
    pub state_path: PathBuf,
    /// How often the chain is polled and the stamper ticked.
    pub poll: Duration,
    /// `estimatesmartfee` target, in blocks.
    pub conf_target: u32,
}

/// Why a step did not finish.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The node (unreachable, warming up, refusing us, answering nonsense)
    /// or its wallet.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The state file.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// Reading the journal failed.
    #[error("stamper: reading the journal: {0}")]
    Journal(#[source] std::io::Error),
    /// The journal has no record at a position the state covers.
    #[error("stamper: the journal has no record {0}")]
    MissingRecord(u64),
    /// A round or a bump over no commitment (a state that cannot be).
    #[error("stamper: no commitments at the positions to stamp")]
    NothingToStamp,
    /// The proof store refused or failed to store a completed batch.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The node does not have the block that mined a transaction.
    #[error("block {0} is gone from the node")]
    MissingBlock(BlockHash),
    /// The proof from a transaction to its block cannot be built.
    #[error("building the proof of transaction {txid}: {source}")]
    Proof {
        /// The transaction.
        txid: Txid,
        /// Why.
        source: ProofError,
    },
    /// The journal's records at a mined transaction's positions no longer
    /// lead to its tip: the journal was damaged after the round (a record
    /// unchecked at start-up, `--journal-verify-last`).
    #[error("the journal's records of timestamp transaction {txid} no longer lead to its tip: the journal was damaged after they were stamped")]
    JournalChanged {
        /// The transaction.
        txid: Txid,
    },
    /// The wallet gave a change address that does not parse.
    #[error("the wallet gave an unusable change address {address:?}: {source}")]
    BadChangeAddress {
        /// The address as the wallet gave it.
        address: String,
        /// Why it is refused.
        source: bitcoin::address::ParseError,
    },
}

impl StepError {
    /// Whose fault the failure is.
    pub fn pause(&self) -> Pause {
        match self {
            StepError::Rpc(_) => Pause::Node,
            _ => Pause::Calendar,
        }
    }
}

/// What a pass changed, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Stamping paused (or the pause changed whose fault it is).
    Paused(Pause),
    /// Stamping resumed after a pause of this kind.
    Resumed(Pause),
}

/// The runner, over a node `N`.
pub struct Runner<N> {
    pub(super) stamper: Stamper,
    pub(super) config: RunnerConfig,
    pub(super) node: N,
    pub(super) journal: JournalReader,
    pub(super) store: Arc<Store>,
    pub(super) pending: Arc<PendingIndex>,
    pub(super) view: Arc<RwLock<View>>,
    pub(super) known: Vec<(u64, BlockHash)>,
    redo_start: bool,
    paused: Option<Pause>,
    saved: Vec<u8>,
    /// The warnings shown.
    pub(super) warned: Shown,
    /// What is left to upstream calendars (issue 12).
    hold: Arc<dyn StampHold>,
}

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl<N: ChainSource + Wallet> Runner<N> {
    /// A runner resuming from the state at `config.state_path`, stamping
    /// the commitments of `journal`, storing completed proofs in `store`
    /// (and taking them out of `pending`). Returns the view it keeps up to
    /// date for the HTTP layer.
    pub fn new(
        config: RunnerConfig,
        node: N,
        journal: JournalReader,
        store: Arc<Store>,
        pending: Arc<PendingIndex>,
    ) -> Result<(Runner<N>, Arc<RwLock<View>>), PersistError> {
        let state = persist::load(&config.state_path)?;
        let view = Arc::new(RwLock::new(View {
            min_confirmations: config.stamper.min_confirmations,
            conf_target: config.conf_target,
            history: state.history.clone(),
            ..View::default()
        }));
        let runner = Runner {
            stamper: Stamper::new(config.stamper.clone(), state),
            config,
            node,
            journal,
            store,
            pending,
            view: view.clone(),
            known: Vec::new(),
            redo_start: true,
            paused: None,
            saved: Vec::new(),
            warned: Shown::default(),
            hold: Arc::new(NoHold),
        };
        Ok((runner, view))
    }

    /// The same runner, leaving to upstream calendars what `hold` says.
    pub fn with_hold(mut self, hold: Arc<dyn StampHold>) -> Self {
        self.hold = hold;
        self
    }

    /// Runs until `shutdown` completes.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            self.pass().await;
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(self.config.poll) => {}
            }
        }
    }

    /// One step, its failure handled: pauses (logged once per pause, and
    /// shown on the info page) or resumes. Returns what changed.
    pub async fn pass(&mut self) -> Option<Transition> {
        match self.step().await {
            Ok(()) => {
                let was = self.paused.take()?;
                match was {
                    Pause::Node => {
                        tracing::info!("Bitcoin node reachable again; stamping resumes")
                    }
                    Pause::Calendar => tracing::info!("stamping resumes"),
                }
                self.set_view(|v| v.paused = None);
                Some(Transition::Resumed(was))
            }
            Err(e) => {
                let pause = e.pause();
                let changed = self.paused != Some(pause);
                if changed {
                    match pause {
                        Pause::Node => tracing::warn!(
                            "stamper paused: {e}; digests are still accepted, retrying"
                        ),
                        Pause::Calendar => tracing::error!(
                            "stamping halted by an error that is not the node's: {e}; digests are still accepted, retrying"
                        ),
                    }
                }
                self.paused = Some(pause);
                self.redo_start = true;
                let text = e.to_string();
                self.set_view(|v| v.paused = Some((pause, text)));
                changed.then_some(Transition::Paused(pause))
            }
        }
    }

    /// One pass: resume interrupted work, follow the chain, tick.
    pub async fn step(&mut self) -> Result<(), StepError> {
        if self.redo_start {
            let actions = self.stamper.on_start();
            self.redo_start = false;
            self.execute(actions).await?;
        }
        self.sync_chain().await?;
        let journal_len = self.hold.stampable_len(self.journal.durable_len());
        let actions = self.stamper.on_tick(now(), journal_len);
        self.execute(actions).await?;
        self.refresh_view();
        Ok(())
    }

    async fn sync_chain(&mut self) -> Result<(), StepError> {
        let best = self.node.best_block_hash().await?;
        if self.known.last().map(|k| k.1) == Some(best) {
            return Ok(());
        }
        if self.known.is_empty() {
            // After a restart: a transaction whose block is no longer at
            // its height was reorged out while we were away.
            self.check_state_blocks().await?;
        }
        // Walk back to the last block still in the best chain.
        let mut lowest_gone = None;
        while let Some(&(height, hash)) = self.known.last() {
            if self.node.block_hash(height).await? == Some(hash) {
                break;
            }
            self.known.pop();
            lowest_gone = Some(height);
        }
        if let Some(lowest) = lowest_gone {
            let fork = match self.known.last() {
                Some(&(height, _)) => height,
                None => lowest.saturating_sub(1),
            };
            tracing::warn!(fork_height = fork, "chain reorganisation");
            let actions = self.stamper.on_reorg(now(), fork);
            self.execute(actions).await?;
            if self.known.is_empty() {
                // Deeper than the blocks remembered: check the blocks the
                // state names below it one by one.
                self.check_state_blocks().await?;
            }
        }
        let tip = self.node.block_count().await?;
        let from = match self.known.last() {
            Some(&(height, _)) => height + 1,
            None if self.stamper.state().best_height > 0 => self.stamper.state().best_height + 1,
            None => tip,
        };
        for height in from..=tip {
            let Some(hash) = self.node.block_hash(height).await? else {
                break;
            };
            let Some(block) = self.node.block(&hash).await? else {
                break;
            };
            let txids: Vec<Txid> = block.txdata.iter().map(|tx| tx.compute_txid()).collect();
            let actions = self.stamper.on_block(now(), height, hash, &txids);
            self.known.push((height, hash));
            if self.known.len() > KNOWN_BLOCKS {
                self.known.remove(0);
            }
            self.execute(actions).await?;
        }
        if self.known.is_empty() {
            // Nothing new since the state was saved: start following the
            // chain from its tip.
            if let Some(hash) = self.node.block_hash(tip).await? {
                self.known.push((tip, hash));
            }
        }
        if let Ok(balances) = self.node.balances().await {
            self.set_view(|v| v.balance = Some(balances.trusted));
        }
        Ok(())
    }

    /// Checks the block of every mined and recently completed
    /// transaction of the state against the best chain; one no longer at
    /// its height was reorged out.
    async fn check_state_blocks(&mut self) -> Result<(), StepError> {
        let state = self.stamper.state();
        let named: Vec<_> = state
            .mined
            .iter()
            .map(|m| (m.height, m.block))
            .chain(state.completed.iter().map(|c| (c.height, c.block)))
            .collect();
        for (height, block) in named {
            if self.node.block_hash(height).await? != Some(block) {
                tracing::warn!(height, "a timestamp transaction's block left the chain");
                let actions = self.stamper.on_reorg(now(), height.saturating_sub(1));
                self.execute(actions).await?;
            }
        }
        Ok(())
    }

    fn persist(&mut self) -> Result<(), StepError> {
        let bytes = persist::to_bytes(self.stamper.state());
        if bytes != self.saved {
            persist::save(&self.config.state_path, self.stamper.state())?;
            self.saved = bytes;
        }
        Ok(())
    }

    async fn execute(&mut self, actions: Vec<Action>) -> Result<(), StepError> {
        let mut queue: VecDeque<Action> = actions.into();
        self.persist()?;
        while let Some(action) = queue.pop_front() {
            let more = self.perform(action).await?;
            self.persist()?;
            queue.extend(more);
        }
        Ok(())
    }

    async fn fund(&mut self, covered: Vec<std::ops::Range<u64>>) -> Result<Vec<Action>, StepError> {
        match self.gather_funding(&covered).await {
            Ok(offer) => Ok(self.stamper.on_funding(now(), covered, offer)),
            Err(e) => {
                self.stamper.on_funding_failed();
                Err(e)
            }
        }
    }

    async fn perform(&mut self, action: Action) -> Result<Vec<Action>, StepError> {
        match action {
            // Commitments an upstream completed are not stamped again
            // (the cursor moves past them with the next round), nor those
            // still left to the upstreams.
            Action::Fund(covered) => {
                let mut covered = self.hold.stampable(covered);
                if covered.is_empty() {
                    // All of it was completed upstream: the round takes the
                    // next ones (the cursor moves past all of them).
                    let len = self.hold.stampable_len(self.journal.durable_len());
                    let rest = self.hold.stampable(self.stamper.pending(len));
                    covered = ots_stamper::ranges::take(&rest, self.config.stamper.max_pending);
                }
                if covered.is_empty() {
                    self.stamper.on_funding_failed();
                    return Ok(Vec::new());
                }
                self.fund(covered).await
            }
            Action::Bump(covered) => {
                let tip = self.tip_of(&covered)?;
                let height = self.node.block_count().await?;
                // Fresh at each block: the replacement follows the market.
                let feerate = self.fee_estimate().await?;
                Ok(self.stamper.on_bump(tip, covered, height, feerate))
            }
            Action::Sign(tx) => match self.node.sign_raw_transaction_with_wallet(&tx).await {
                Ok(signed) => Ok(self.stamper.on_signed(signed)),
                Err(e) => {
                    // A replacement is made again after the next look at
                    // the chain (which may show what it replaces mined).
                    self.stamper.on_sign_failed();
                    Err(e.into())
                }
            },
            Action::Broadcast(tx) => {
                // The signed transaction is in the persisted state already
                // (execute persists after every action). A new version, or
                // the latest one again after a restart or an outage.
                let txid = tx.compute_txid();
                let fresh = self
                    .stamper
                    .state()
                    .round
                    .as_ref()
                    .and_then(|r| r.attempt.as_ref())
                    .is_some_and(|a| a.tx.compute_txid() == txid);
                let result = match self.node.send_raw_transaction(&tx).await {
                    Ok(_) => BroadcastResult::Accepted,
                    // Warm-up or a lost connection says nothing about the
                    // transaction: pause, and broadcast again on resuming.
                    Err(e) if e.is_transient() => return Err(e.into()),
                    Err(RpcError::Rpc { code, message }) => {
                        BroadcastResult::Refused { code, message }
                    }
                    Err(e) => return Err(e.into()),
                };
                if result == BroadcastResult::Accepted && fresh {
                    tracing::info!(%txid, "timestamp transaction sent");
                    // Whatever stood in the way (an empty wallet, a refusal,
                    // the fee cap of an earlier round) no longer does.
                    self.warned.clear();
                    self.set_view(|v| v.warnings.clear());
                } else if result == BroadcastResult::Accepted {
                    tracing::debug!(%txid, "timestamp transaction sent again");
                }
                Ok(self.stamper.on_broadcast(now(), result))
            }
            Action::Complete(mined) => {
                let txid = mined.version.txid;
                match self.complete(&mined).await {
                    Ok((count, block_time, batch)) => {
                        tracing::info!(%txid, height = mined.height, commitments = count, "timestamps complete");
                        self.stamper.on_completed(now(), txid, block_time, batch);
                        Ok(Vec::new())
                    }
                    Err(e @ StepError::JournalChanged { .. }) => {
                        // Never storable: set it aside and go on; its
                        // commitments are stamped again in a later round.
                        let reason = e.to_string();
                        tracing::error!(%txid, height = mined.height, "{reason}: the batch is set aside and its commitments will be stamped again");
                        self.stamper.on_complete_rejected(now(), txid, reason);
                        Ok(Vec::new())
                    }
                    Err(e) => {
                        self.stamper.on_complete_failed(txid);
                        Err(e)
                    }
                }
            }
            Action::Withdraw(reorged) => {
                let count = self.withdraw(&reorged)?;
                tracing::warn!(
                    txid = %reorged.txid,
                    height = reorged.height,
                    block = %reorged.block,
                    commitments = count,
                    "a reorganisation deeper than --btc-min-confirmations took a completed timestamp transaction's block out of the best chain: its proofs are withdrawn and its commitments will be stamped again"
                );
                self.stamper.on_withdrawn(reorged.txid);
                Ok(Vec::new())
            }
            Action::Warn(warning) => {
                // Said once per kind, and shown on the info page with its
                // latest figures, until a new transaction goes out.
                if let Some(text) = self.warned.raise(&warning) {
                    tracing::warn!("{text}");
                }
                let texts = self.warned.texts();
                self.set_view(|v| v.warnings = texts);
                Ok(Vec::new())
            }
        }
    }
}

impl<N: ChainSource + Wallet> Runner<N> {
    fn refresh_view(&self) {
        let state = self.stamper.state();
        let mined = state.mined.clone();
        let latest = state
            .round
            .as_ref()
            .and_then(|r| r.versions.last().map(|v| (v, r.versions.len())));
        let best = self.known.last().copied();
        let history = state.history.clone();
        let set_aside = state.set_aside.clone();
        // For the metrics (issue 17): the unconfirmed transaction's age and fee.
        let first = state.round.as_ref().and_then(|r| r.versions.first());
        let (first, fee) = (first.map(|f| f.txid), latest.map(|(l, _)| (l.fee, l.vsize)));
        let reorged = state.reorged.clone();
        let reorged_total = state.reorged_total;
        self.set_view(|v| {
            v.note_round(first, fee, now());
            v.history = history;
            v.set_aside = set_aside;
            v.reorged = reorged;
            v.reorged_total = reorged_total;
            v.mined = mined;
            v.tip = latest.map(|(l, _)| l.tip);
            v.unconfirmed = latest.map(|(l, n)| (l.txid, n - 1));
            v.fee = latest.map(|(l, _)| (l.fee, l.vsize, l.fee_choice));
            v.best = best;
        });
    }

    fn set_view(&self, f: impl FnOnce(&mut View)) {
        let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
        f(&mut view);
    }
}
