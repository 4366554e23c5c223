//! The wallets: the HD wallet itself ([`hd`]), its key paths and
//! descriptors ([`desc`]) and signing ([`sign`]), and the wallet operations
//! over the whole [`crate::Chain`]: lifecycle, coins, balances, payments
//! ([`ops`]) and transaction views ([`tx`]).

pub mod desc;
pub mod hd;
pub mod ops;
pub mod sign;
pub mod tx;

pub use hd::{AddressType, Wallet};
