//! The mempool: entries, relay-policy constants and fee arithmetic
//! ([`pool`]), admission under Core's policy and after chain changes
//! ([`admission`]), and clusters and chunks ([`cluster`]).

pub mod admission;
pub mod cluster;
pub mod pool;

pub use pool::{fee_for, AcceptOptions, Accepted, Mempool, MempoolEntry};
