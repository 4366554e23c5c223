//! What Bitcoin adds to OpenTimestamps: the proof from a tip committed in a
//! transaction to a block header attestation ([`proof`]), and a small typed
//! client for the Bitcoin Core JSON-RPC calls a calendar and a verifying
//! client make ([`rpc`], [`node`], [`network`]).
#![warn(missing_docs)]

pub mod network;
pub mod node;
pub mod proof;
pub mod rpc;

pub use network::Chain;
pub use proof::{timestamp_from_block, ProofError};
pub use rpc::{Auth, RpcClient, RpcConfig, RpcError};
