//! The stamper's persisted state: the open round and its transaction
//! versions, mined transactions waiting for confirmations, reorged-out
//! ones, completed ones still shallow enough for a reorg to undo, and the
//! journal cursor. The runtime saves it atomically after
//! every change (as JSON, through these serde derives), so a restart
//! resumes exactly where it stopped.

use std::ops::Range;

use bitcoin::{Amount, BlockHash, OutPoint, ScriptBuf, Transaction, Txid};
use serde::{Deserialize, Serialize};

use crate::fee::FeeChoice;
use crate::history::History;
use crate::tx::InputKind;

/// Version of the persisted [`State`] format.
pub const STATE_FORMAT: u32 = 1;

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
    /// Why it pays that fee (`None` in a state written before this was
    /// recorded).
    #[serde(default)]
    pub fee_choice: Option<FeeChoice>,
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
    /// Why it pays that fee (`None` in a state written before this was
    /// recorded).
    #[serde(default)]
    pub fee_choice: Option<FeeChoice>,
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
    /// Mined transactions whose proofs could not be stored, most recent
    /// last (at most [`MAX_SET_ASIDE`]); their commitments were put back to
    /// be stamped again. Shown to the operator.
    #[serde(default)]
    pub set_aside: Vec<SetAside>,
    /// Completed transactions mined within [`REORG_WATCH_BLOCKS`] of the
    /// best height: a reorg that takes their block out of the best chain
    /// is seen, their proofs withdrawn and their commitments stamped again
    /// (a state written before this existed loads with none).
    #[serde(default)]
    pub completed: Vec<Completed>,
    /// Completed transactions whose block left the best chain, most recent
    /// last (at most [`MAX_REORGED`]), for the operator and to finish
    /// withdrawing their proofs after a crash.
    #[serde(default)]
    pub reorged: Vec<Reorged>,
    /// How many completed transactions reorgs have undone, ever.
    #[serde(default)]
    pub reorged_total: u64,
}

/// How deep below the best block a completed transaction's block is still
/// checked (a day of blocks; the runtime remembers as many block hashes).
/// A reorg deeper than this is not seen: Bitcoin has never had one
/// deeper than a few dozen blocks, and then only by a consensus bug.
pub const REORG_WATCH_BLOCKS: u64 = 144;
/// Most reorged-out completed transactions remembered.
pub const MAX_REORGED: usize = 64;

/// A completed transaction whose proofs are stored, remembered while a
/// reorg could still take its block out of the best chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completed {
    /// The version that was mined.
    pub version: TxVersion,
    /// Its block.
    pub block: BlockHash,
    /// The block's height.
    pub height: u64,
    /// The proof store's id of the batch holding its proofs.
    pub batch: u64,
}

/// A completed transaction whose block left the best chain after its
/// proofs were stored: they name a block a verifier no longer finds, so
/// they are withdrawn from serving and its commitments stamped again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reorged {
    /// The transaction.
    pub txid: Txid,
    /// The block it was in.
    pub block: BlockHash,
    /// That block's height.
    pub height: u64,
    /// The journal positions it covered (pending again since).
    pub ranges: Vec<Range<u64>>,
    /// The proof store's batch of its proofs.
    pub batch: u64,
    /// Unix time the reorg was seen.
    pub at: u64,
    /// Whether the runtime has withdrawn the batch (and put the
    /// commitments back in its pending index).
    pub withdrawn: bool,
}

/// Most set-aside batches remembered (the oldest are forgotten first).
pub const MAX_SET_ASIDE: usize = 64;

/// A mined transaction whose proofs could not be built from the journal
/// (its records no longer lead to the transaction's tip: the journal was
/// damaged after the round), set aside so that stamping goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAside {
    /// The transaction.
    pub txid: Txid,
    /// The height it was mined at.
    pub height: u64,
    /// The journal positions it covered (pending again since).
    pub ranges: Vec<Range<u64>>,
    /// Why its proofs could not be stored.
    pub reason: String,
    /// Unix time it was set aside.
    pub at: u64,
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
            set_aside: Vec::new(),
            completed: Vec::new(),
            reorged: Vec::new(),
            reorged_total: 0,
        }
    }
}
