//! A calendar's Bitcoin stamping decisions, as a sans-I/O state machine
//! ([`stamper`]) with its transaction arithmetic ([`tx`]), journal range
//! sets ([`ranges`]) and the record of completed transactions
//! ([`history`]). The calendar server runs it: it feeds events (time,
//! blocks, reorgs, RPC results), carries out the actions, and persists the
//! state; every decision is unit-tested here without a node.
#![warn(missing_docs)]
// A one-element list of ranges is a set with one interval here, not a
// mistaken attempt at a vector of the range's numbers.
#![allow(clippy::single_range_in_vec_init)]

pub mod action;
mod gather;
pub mod history;
pub mod persist;
pub mod ranges;
pub mod recover;
mod round;
pub mod runner;
pub mod stamper;
pub mod state;
pub mod tx;
mod view;

pub use stamper::{Action, BroadcastResult, Config, Mined, Stamper, State, Status, Utxo, Warning};

/// The Merkle tip of a round: the leaves are `sha256(commitment)` in journal
/// order, merkled by OpenTimestamps' rule. `None` for no commitments.
pub fn merkle_tip<C: AsRef<[u8]>>(commitments: &[C]) -> Option<[u8; 32]> {
    let leaves = commitments
        .iter()
        .map(|c| ots_proof::op::sha256(c.as_ref()))
        .collect();
    ots_proof::MerkleTree::new(leaves).map(|t| t.root())
}
