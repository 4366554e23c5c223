//! The stamper's persisted state: the open round and its transaction
//! versions, mined transactions waiting for confirmations, reorged-out
//! ones, and the journal cursor. The runtime saves it atomically after
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
        }
    }
}
