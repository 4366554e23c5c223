//! The library's typed errors: chain, mempool, wallet and data-directory failures.

use std::path::PathBuf;

/// Why the mempool refused a transaction, classified the way Bitcoin Core's
/// `TxValidationResult`/`TransactionError` classify it, because the RPC layer
/// maps each class to a different JSON-RPC error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectClass {
    /// An input is unknown or already spent (`TX_MISSING_INPUTS`, RPC -25).
    MissingInputs,
    /// The transaction's outputs already sit in the UTXO set (RPC -27).
    AlreadyInChain,
    /// The same transaction is already in the mempool.
    AlreadyInMempool,
    /// Consensus or policy rejection (`MEMPOOL_REJECTED`, RPC -26).
    Rejected,
    /// The fee rate exceeds the caller's `maxfeerate` (RPC -25).
    MaxFeeExceeded,
    /// An unspendable output burns more than `maxburnamount` (RPC -25).
    MaxBurnExceeded,
}

/// A refused transaction: class, Core's short reject reason and its detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxReject {
    /// How the rejection maps onto an RPC error code.
    pub class: RejectClass,
    /// Core's reject reason, e.g. `min relay fee not met`.
    pub reason: String,
    /// Core's debug message, e.g. `100 < 141`; may be empty.
    pub detail: String,
}

impl TxReject {
    /// A rejection with a reason and a (possibly empty) detail.
    pub fn new(class: RejectClass, reason: impl Into<String>, detail: impl Into<String>) -> Self {
        TxReject {
            class,
            reason: reason.into(),
            detail: detail.into(),
        }
    }

    /// Core's `TxValidationState::ToString()`: reason, then `, detail` if any.
    pub fn message(&self) -> String {
        if self.detail.is_empty() {
            self.reason.clone()
        } else {
            format!("{}, {}", self.reason, self.detail)
        }
    }
}

impl std::fmt::Display for TxReject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

/// Everything the devchain library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A block failed validation; the string is Core's reject reason (`high-hash`, ...).
    #[error("block rejected: {0}")]
    BlockInvalid(String),
    /// A block that is already known was submitted again.
    #[error("duplicate block {0}")]
    DuplicateBlock(bitcoin::BlockHash),
    /// No block with this hash is known.
    #[error("block not found: {0}")]
    BlockNotFound(bitcoin::BlockHash),
    /// The mempool refused a transaction.
    #[error("transaction rejected: {0}")]
    TxRejected(TxReject),
    /// The wallet cannot pay the requested amount.
    #[error("insufficient funds")]
    InsufficientFunds,
    /// A wallet name is unknown.
    #[error("wallet \"{0}\" does not exist")]
    WalletNotFound(String),
    /// A wallet with this name already exists.
    #[error("wallet \"{0}\" already exists")]
    WalletExists(String),
    /// Key derivation or signing failed.
    #[error("wallet key error: {0}")]
    Key(String),
    /// Reading or writing the data directory failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The data directory holds something devchain cannot read.
    #[error("corrupt devchain data directory {path}: {detail}")]
    Corrupt {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
