//! A calendar's Bitcoin stamping decisions, as a sans-I/O state machine
//! ([`stamper`]) with its transaction arithmetic ([`tx`]), journal range
//! sets ([`ranges`]), the fee rules ([`fee`]), the serde [`State`] a runtime persists ([`state`])
//! and the record of completed transactions ([`history`]).
//!
//! Nothing here talks to a node, reads a file or keeps time: the calendar
//! server (`otsd`'s `stamping` module) feeds events (time, blocks, reorgs,
//! RPC results), carries out the [`Action`]s, and persists the state, so
//! every decision is unit-tested here without a node.
#![warn(missing_docs)]
// A one-element list of ranges is a set with one interval here, not a
// mistaken attempt at a vector of the range's numbers.
#![allow(clippy::single_range_in_vec_init)]

pub mod action;
pub mod fee;
pub mod history;
pub mod ranges;
pub mod recover;
mod round;
pub mod stamper;
pub mod state;
pub mod tx;

pub use stamper::{
    status_in, Action, BroadcastResult, Config, FundingOffer, Mined, Stamper, State, Status, Utxo,
    Warning,
};
