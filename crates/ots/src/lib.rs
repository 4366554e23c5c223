//! The OpenTimestamps client as a library: the reply cache, the
//! whitelist, and the stamp, upgrade, verify and prune operations behind the
//! `ots` binary. Calendars are talked to through the `ots-calendar` crate;
//! block headers come from a node or an Esplora-style explorer. Git commit
//! timestamps (the gpg wrapper's format) are in [`git`].
#![warn(missing_docs)]

pub mod bounds;
pub mod cache;
pub mod esplora;
pub mod git;
pub mod json;
pub mod log;
pub mod progress;
pub mod prune;
pub mod stamp;
pub mod upgrade;
pub mod verify;
pub mod wallet;
pub mod whitelist;
