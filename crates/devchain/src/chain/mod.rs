//! The chain: regtest consensus and block assembly ([`block`]), the block
//! tree and UTXO set ([`chainstate`]) with block acceptance and reorgs
//! ([`reorg`]), and [`Chain`], the sans-I/O node that ties them to the
//! mempool and the wallets ([`node`]), mines ([`mining`]), is snapshotted
//! ([`snapshot`]) and persisted to a data directory ([`store`]).
//!
//! Lower modules never name higher ones: `block` < `chainstate` < `reorg`
//! < `node` < `mining`, `snapshot` < `store`.

pub mod block;
pub mod chainstate;
pub mod mining;
pub mod node;
pub mod reorg;
pub mod snapshot;
pub mod store;

pub use node::Chain;
