//! devchain: an embedded Bitcoin regtest chain that answers the subset of
//! Bitcoin Core's JSON-RPC that `otsd` and OpenTimestamps clients use.
//!
//! A development and test chain, never a production one. Blocks, headers
//! and transactions are real (rust-bitcoin consensus encoding, regtest
//! proof of work, merkle roots, witness commitments, secp256k1 signatures).
//!
//! Layers: [`Chain`] is the sans-I/O core (block tree, UTXO set, mempool,
//! wallets); [`store`] persists it; [`rpcchain`] implements the node RPC
//! methods over it with Core's reply shapes. Still to come: the HTTP
//! JSON-RPC server, the wallet RPC methods and the in-process start used
//! by `otsd --dev`.
#![warn(missing_docs)]

pub mod admission;
pub mod block;
pub mod chain;
pub mod chainsnapshot;
pub mod chainstate;
pub mod cluster;
pub mod descriptor;
pub mod devnode;
pub mod error;
pub mod json;
pub mod mempool;
pub mod mining;
pub mod reorg;
pub mod verify;
pub mod wallet;
pub mod walletdesc;
pub mod walletops;
pub mod walletsign;
pub mod wallettx;

pub use chain::Chain;
pub use devnode::{DevChain, DevChainConfig};
pub use error::{Error, RejectClass, Result, TxReject};
pub mod rpc;
pub mod rpcchain;
pub mod rpccoins;
pub mod rpcmempool;
pub mod rpcparams;
pub mod rpcrawtx;
pub mod rpcwallet;
pub mod rpcwallettx;
pub mod store;
pub mod txjson;
