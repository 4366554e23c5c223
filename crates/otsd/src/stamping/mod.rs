//! The stamper inside the calendar: the runtime that ticks `ots-stamper`'s
//! pure state machine. [`start`] builds it from the server's settings and
//! runs it on a thread of its own; [`runner`] is the loop (chain polling,
//! reorg detection, actions, persistence, pauses), reading the journal
//! through [`JournalReader`] and filling the [`Store`]; [`gather`] reads
//! commitments, computes tips and stores completed batches; [`node`] is the
//! narrow face of the node it needs ([`node::ChainSource`],
//! [`node::Wallet`]), implemented for `ots_bitcoin::RpcClient`; [`persist`]
//! keeps the state file; [`view`] is what the HTTP layer reads (404
//! reasons, `/tip`, the info page).

use std::path::Path;
use std::sync::Arc;

use ots_bitcoin::{RpcClient, RpcError};
use tokio::sync::{oneshot, watch};

use crate::config::Bitcoin;
use crate::journal::JournalReader;
use crate::status::{PendingIndex, StamperView};
use crate::store::Store;
use crate::upstream::StampHold;

/// The stamper's state file in the calendar directory.
pub const STAMPER_STATE_FILE: &str = "stamper.json";

pub mod gather;
pub mod node;
pub mod persist;
pub mod runner;
pub mod view;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use gather::{merkle_tip, read_commitments, store_batch};
pub use persist::PersistError;
pub use runner::{Runner, RunnerConfig, StepError, Transition};
pub use view::{chain_info_at, Pause, Stamping, View};

/// The name of the stamper's thread.
pub const THREAD_NAME: &str = "otsd-stamper";

/// Why the stamper could not start.
#[derive(Debug, thiserror::Error)]
pub enum StampingError {
    /// The node's configuration is unusable (a bad URL).
    #[error("stamper: {0}")]
    Node(#[from] RpcError),
    /// The state file cannot be read.
    #[error(transparent)]
    State(#[from] PersistError),
    /// Its runtime could not be built.
    #[error("stamper: starting its runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Its thread could not be spawned.
    #[error("stamper: starting its thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// A running stamper.
pub struct Started {
    /// What the HTTP layer reads of it.
    pub view: Arc<dyn StamperView>,
    /// Completes when the stamper's thread has stopped (after `stop`).
    pub done: oneshot::Receiver<()>,
}

/// Starts stamping the calendar in `dir` on the node of `btc`: the state
/// is loaded from (and saved to) `dir`'s [`STAMPER_STATE_FILE`], completed
/// batches go to `store` and leave `pending`; `hold` says which
/// commitments are left to upstream calendars. Runs until `stop` turns
/// true.
pub fn start(
    btc: &Bitcoin,
    dir: &Path,
    journal: &JournalReader,
    store: &Arc<Store>,
    pending: &Arc<PendingIndex>,
    mut stop: watch::Receiver<bool>,
    hold: Arc<dyn StampHold>,
) -> Result<Started, StampingError> {
    let rpc = RpcClient::new(btc.rpc.clone())?;
    // Without credentials: the log must not carry the password.
    let rpc_url = rpc.url().to_owned();
    let (runner, view) = Runner::new(
        RunnerConfig {
            stamper: btc.stamper.clone(),
            state_path: dir.join(STAMPER_STATE_FILE),
            poll: btc.poll,
            conf_target: btc.conf_target,
        },
        rpc,
        journal.clone(),
        store.clone(),
        pending.clone(),
    )?;
    let runner = runner.with_hold(hold);
    // On a thread of its own: completing a batch (reading the journal, the
    // tree, the store's fsync) takes seconds for a million commitments and
    // must not hold up the aggregator or the HTTP threads.
    let (done_tx, done) = oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StampingError::Runtime)?;
    std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || {
            runtime.block_on(runner.run(async move {
                let _ = stop.wait_for(|s| *s).await;
            }));
            let _ = done_tx.send(());
        })
        .map_err(StampingError::Thread)?;
    tracing::info!(node = %rpc_url, "stamper started");
    let view: Arc<dyn StamperView> = Arc::new(Stamping { view });
    Ok(Started { view, done })
}
