//! Runs the [`Stamper`] against a Bitcoin Core node: polls the chain
//! (detecting reorgs by re-checking the hashes of recent blocks), feeds the
//! state machine, carries out its actions over JSON-RPC, builds and stores
//! the completed proofs, and persists the state after every change —
//! before any broadcast. A node outage pauses stamping (logged once per
//! outage) and never stops the calendar from accepting digests.

use std::collections::VecDeque;
use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::{BlockHash, Txid};
use ots_bitcoin::{RpcClient, RpcError};
use ots_proof::Timestamp;

use crate::persist::{self, PersistError};
use crate::stamper::{Action, BroadcastResult, Config, Stamper};
use crate::view::Shown;
pub use crate::view::View;

/// Recent blocks remembered for reorg detection (a day of blocks).
pub const KNOWN_BLOCKS: usize = 144;

/// The journal, as the stamper reads it.
pub trait CommitmentSource: Send + Sync {
    /// How many commitments are durably in the journal.
    fn len(&self) -> u64;
    /// Whether the journal is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The commitments at `ranges`, in order, each with its position, as
    /// the bytes whose `sha256` is its leaf.
    fn read(&self, ranges: &[Range<u64>]) -> std::io::Result<Vec<(u64, Vec<u8>)>>;
}

/// Where completed proofs go.
pub trait ProofSink: Send + Sync {
    /// Stores the proofs of `commitments` (in leaf order): `tail` is the
    /// proof from the Merkle root of their `sha256` leaves to the block.
    /// Durable when it returns. Must refuse, storing nothing, when that
    /// Merkle root is not `tail`'s message (the journal changed under the
    /// stamper): no wrong proof is ever served.
    fn add_batch(&self, commitments: Vec<(u64, Vec<u8>)>, tail: Timestamp) -> Result<(), String>;
}

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
    /// The node.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The state file.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// The journal or the proof store.
    #[error("{0}")]
    Storage(String),
}

/// The runner.
pub struct Runner {
    pub(crate) stamper: Stamper,
    pub(crate) config: RunnerConfig,
    pub(crate) rpc: RpcClient,
    pub(crate) source: Arc<dyn CommitmentSource>,
    pub(crate) sink: Arc<dyn ProofSink>,
    pub(crate) view: Arc<RwLock<View>>,
    pub(crate) known: Vec<(u64, BlockHash)>,
    redo_start: bool,
    outage: bool,
    saved: Vec<u8>,
    /// The warnings shown.
    warned: Shown,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Runner {
    /// A runner resuming from the state at `config.state_path`.
    pub fn new(
        config: RunnerConfig,
        rpc: RpcClient,
        source: Arc<dyn CommitmentSource>,
        sink: Arc<dyn ProofSink>,
    ) -> Result<(Runner, Arc<RwLock<View>>), PersistError> {
        let state = persist::load(&config.state_path)?;
        let view = Arc::new(RwLock::new(View {
            min_confirmations: config.stamper.min_confirmations,
            history: state.history.clone(),
            ..View::default()
        }));
        let runner = Runner {
            stamper: Stamper::new(config.stamper.clone(), state),
            config,
            rpc,
            source,
            sink,
            view: view.clone(),
            known: Vec::new(),
            redo_start: true,
            outage: false,
            saved: Vec::new(),
            warned: Shown::default(),
        };
        Ok((runner, view))
    }

    /// Runs until `shutdown` completes.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.step().await {
                Ok(()) if self.outage => {
                    tracing::info!("Bitcoin node reachable again; stamping resumes");
                    self.outage = false;
                    self.set_view(|v| v.node_error = None);
                }
                Ok(()) => {}
                Err(e) => {
                    if !self.outage {
                        tracing::warn!("stamper paused: {e}; digests are still accepted, retrying");
                    }
                    self.outage = true;
                    self.redo_start = true;
                    self.set_view(|v| v.node_error = Some(e.to_string()));
                }
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(self.config.poll) => {}
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
        let actions = self.stamper.on_tick(now(), self.source.len());
        self.execute(actions).await?;
        self.refresh_view();
        Ok(())
    }

    async fn sync_chain(&mut self) -> Result<(), StepError> {
        let best = self.rpc.best_block_hash().await?;
        if self.known.last().map(|k| k.1) == Some(best) {
            return Ok(());
        }
        if self.known.is_empty() {
            // After a restart: a mined transaction whose block is no longer
            // at its height was reorged out while we were away.
            let mined: Vec<_> = self
                .stamper
                .state()
                .mined
                .iter()
                .map(|m| (m.height, m.block))
                .collect();
            for (height, block) in mined {
                if self.rpc.block_hash(height).await? != Some(block) {
                    let actions = self.stamper.on_reorg(height.saturating_sub(1));
                    self.execute(actions).await?;
                }
            }
        }
        // Walk back to the last block still in the best chain.
        let mut reorged = false;
        while let Some(&(height, hash)) = self.known.last() {
            if self.rpc.block_hash(height).await? == Some(hash) {
                break;
            }
            self.known.pop();
            reorged = true;
        }
        if reorged {
            let fork = self.known.last().map_or(0, |k| k.0);
            tracing::warn!(fork_height = fork, "chain reorganisation");
            let actions = self.stamper.on_reorg(fork);
            self.execute(actions).await?;
        }
        let tip = self.rpc.block_count().await?;
        let from = match self.known.last() {
            Some(&(height, _)) => height + 1,
            None if self.stamper.state().best_height > 0 => self.stamper.state().best_height + 1,
            None => tip,
        };
        for height in from..=tip {
            let Some(hash) = self.rpc.block_hash(height).await? else {
                break;
            };
            let Some(block) = self.rpc.block(&hash).await? else {
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
            if let Some(hash) = self.rpc.block_hash(tip).await? {
                self.known.push((tip, hash));
            }
        }
        if let Ok(balances) = self.rpc.balances().await {
            self.set_view(|v| v.balance = Some(balances.trusted));
        }
        Ok(())
    }

    fn persist(&mut self) -> Result<(), StepError> {
        let bytes = serde_json::to_vec(self.stamper.state()).unwrap_or_default();
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

    async fn perform(&mut self, action: Action) -> Result<Vec<Action>, StepError> {
        match action {
            Action::Fund(covered) => match self.gather_funding(&covered).await {
                Ok((utxos, rate, change, height, tip)) => {
                    Ok(self
                        .stamper
                        .on_funding(now(), &utxos, rate, change, height, tip, covered))
                }
                Err(e) => {
                    self.stamper.on_funding_failed();
                    Err(e)
                }
            },
            Action::Bump(covered) => {
                let tip = self.tip_of(&covered)?;
                let height = self.rpc.block_count().await?;
                Ok(self.stamper.on_bump(tip, covered, height))
            }
            Action::Sign(tx) => {
                let signed = self.rpc.sign_raw_transaction_with_wallet(&tx).await?;
                Ok(self.stamper.on_signed(signed))
            }
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
                let result = match self.rpc.send_raw_transaction(&tx).await {
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
                    Ok((count, block_time)) => {
                        tracing::info!(%txid, height = mined.height, commitments = count, "timestamps complete");
                        self.stamper.on_completed(now(), txid, block_time);
                        Ok(Vec::new())
                    }
                    Err(e) => {
                        self.stamper.on_complete_failed(txid);
                        Err(e)
                    }
                }
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
