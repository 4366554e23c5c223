//! devchain: an embedded Bitcoin regtest chain that answers the subset of
//! Bitcoin Core's JSON-RPC that `otsd` and OpenTimestamps clients use.
//!
//! A development and test chain, never a production one. Blocks, headers
//! and transactions are real (rust-bitcoin consensus encoding, regtest
//! proof of work, merkle roots, witness commitments, secp256k1 signatures).
//!
//! Modules by concept, each folder's `mod.rs` only declaring and
//! re-exporting:
//!
//! - [`error`], [`json`]: typed errors and Core-shaped JSON values.
//! - [`script`]: script verification and descriptors.
//! - [`chain`]: consensus and block assembly, the block tree and UTXO set,
//!   and [`Chain`], the sans-I/O node holding the mempool and the wallets,
//!   with its mining, snapshot and persistence ([`chain::store`]).
//! - [`mempool`]: the pool, admission and clusters.
//! - [`wallet`]: the HD wallet and signing, and wallet operations on a
//!   `Chain`.
//! - [`rpc`]: the JSON-RPC server and Core's methods over a `Chain`.
//! - [`devnode`]: [`DevChain`], the in-process node `otsd --dev` starts.
//!
//! No two modules depend on each other, directly or around a cycle. From
//! the bottom: `chain::block` < `chain::chainstate` < `chain::reorg`;
//! `mempool::pool` < `mempool::admission`, `mempool::cluster`;
//! `wallet::hd` < `wallet::desc`, `wallet::sign`; then `chain::node` ties
//! those together, and `chain::mining`, `chain::snapshot`, `wallet::ops`
//! and `wallet::tx` extend it; `chain::store` persists it; `rpc` serves it;
//! `devnode` runs it all.
#![warn(missing_docs)]

pub mod chain;
pub mod devnode;
pub mod error;
pub mod json;
pub mod mempool;
pub mod rpc;
pub mod script;
pub mod wallet;

pub use chain::node::Chain;
pub use devnode::{DevChain, DevChainConfig};
pub use error::{Error, RejectClass, Result, TxReject};
