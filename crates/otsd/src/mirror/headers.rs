//! The Bitcoin check of a chunk: each Bitcoin attestation's message must be
//! the merkle root of the block header at its height on the node's best
//! chain. Roots are cached by height (bounded), so a chunk of proofs from a
//! few blocks costs a few RPC calls.

use std::collections::HashMap;
use std::sync::Mutex;

use bitcoin::hashes::Hash;
use ots_bitcoin::RpcClient;

/// Most heights whose merkle roots are kept (40 bytes each).
pub const MAX_CACHED_ROOTS: usize = 100_000;

/// Why an attestation was not confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The node has no block at that height.
    #[error("Bitcoin attestation at height {height}: the node has no block there")]
    NoBlock {
        /// The height.
        height: u64,
    },
    /// The message is not the header's merkle root.
    #[error("Bitcoin attestation at height {height}: message {msg} is not the block's merkle root {root}")]
    Mismatch {
        /// The height.
        height: u64,
        /// The attested message, hex.
        msg: String,
        /// The header's merkle root, hex.
        root: String,
    },
    /// The node could not be asked (retried later).
    #[error("Bitcoin node: {0}")]
    Node(String),
}

/// Checks attestations against a node.
#[derive(Debug)]
pub struct Headers {
    rpc: RpcClient,
    roots: Mutex<HashMap<u64, [u8; 32]>>,
}

impl Headers {
    /// Checks against the node `rpc` talks to.
    pub fn new(rpc: RpcClient) -> Headers {
        Headers {
            rpc,
            roots: Mutex::new(HashMap::new()),
        }
    }

    /// The merkle root of the block at `height`.
    async fn root(&self, height: u64) -> Result<[u8; 32], HeaderError> {
        if let Some(r) = self.lock().get(&height) {
            return Ok(*r);
        }
        let node = |e: ots_bitcoin::RpcError| HeaderError::Node(e.to_string());
        let hash = self
            .rpc
            .block_hash(height)
            .await
            .map_err(node)?
            .ok_or(HeaderError::NoBlock { height })?;
        let header = self
            .rpc
            .block_header(&hash)
            .await
            .map_err(node)?
            .ok_or(HeaderError::NoBlock { height })?;
        let root = header.merkle_root.to_byte_array();
        let mut roots = self.lock();
        if roots.len() >= MAX_CACHED_ROOTS {
            roots.clear();
        }
        roots.insert(height, root);
        Ok(root)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, [u8; 32]>> {
        self.roots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks every (message, height).
    pub async fn check(&self, attestations: &[(Vec<u8>, u64)]) -> Result<(), HeaderError> {
        for (msg, height) in attestations {
            let root = self.root(*height).await?;
            if msg.as_slice() != root {
                return Err(HeaderError::Mismatch {
                    height: *height,
                    msg: hex::encode(msg),
                    root: hex::encode(root),
                });
            }
        }
        Ok(())
    }
}
