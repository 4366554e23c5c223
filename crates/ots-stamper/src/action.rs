//! What passes between the stamper and its runtime: the actions it asks
//! for, the warnings it raises, the funding, wallet outputs and broadcast
//! results it is given, and the status of a journal position.

use std::ops::Range;

use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, Txid};

use crate::state::{Mined, Reorged};

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a round over these positions: compute the Merkle tip of their
    /// commitments, gather wallet outputs, a fee estimate, a change script
    /// and the height (a [`FundingOffer`]), then call
    /// [`crate::Stamper::on_funding`].
    Fund(Vec<Range<u64>>),
    /// Replace the round's transaction with one over these positions:
    /// compute their tip and call [`crate::Stamper::on_bump`].
    Bump(Vec<Range<u64>>),
    /// Sign with the wallet, then call [`crate::Stamper::on_signed`].
    Sign(Transaction),
    /// Persist the state, broadcast, then call [`crate::Stamper::on_broadcast`].
    Broadcast(Transaction),
    /// Build the proofs of this transaction's commitments, store them (one
    /// batch), then call [`crate::Stamper::on_completed`].
    Complete(Box<Mined>),
    /// Tell the operator.
    Warn(Warning),
    /// A reorg took this completed transaction's block out of the best
    /// chain: stop serving the proofs of its store batch, put its
    /// commitments back in the pending index (they are stamped again),
    /// warn, then call [`crate::Stamper::on_withdrawn`].
    Withdraw(Box<Reorged>),
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

/// What the runtime gathered for an [`Action::Fund`]: everything a round's
/// first transaction is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FundingOffer {
    /// The wallet's spendable outputs.
    pub utxos: Vec<Utxo>,
    /// The node's fee estimate, sat/kvB (`None`: no estimate, the relay
    /// fee rate is used).
    pub feerate: Option<u64>,
    /// Where change goes.
    pub change: ScriptBuf,
    /// The best height (the transaction's lock time).
    pub height: u64,
    /// The Merkle tip of the covered commitments.
    pub tip: [u8; 32],
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
