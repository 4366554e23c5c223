//! Persistence of a [`Chain`] to a data directory.
//!
//! On-disk format (all in the data directory):
//!
//! - `blocks.dat`: append-only log of every block ever accepted (active or
//!   stale), in arrival order. Each record is the regtest network magic
//!   `fa bf b5 da`, the block's length as a little-endian `u32`, then the
//!   block in Bitcoin consensus encoding (with witnesses). The genesis block
//!   is implicit. Each append is followed by `fsync`. A record cut short by a
//!   crash at the end of the file is dropped (and the file truncated) with a
//!   warning; anything else unreadable is reported as corruption.
//! - `state.json`: a [`ChainSnapshot`] (versioned by its `format` field:
//!   wallets with seeds and derivation indexes, labels, invalidated blocks,
//!   mempool transactions, mock time). Rewritten atomically: temp file,
//!   `fsync`, rename, `fsync` of the directory.
//! - `.cookie`: the RPC cookie (`__cookie__:<hex>`) while a server runs.
//!
//! The UTXO set, indexes and wallet transaction lists are rebuilt from the
//! blocks on open, so they can never disagree with them.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bitcoin::consensus::encode;
use bitcoin::Block;

use crate::chain::node::Chain;
use crate::chain::snapshot::{ChainSnapshot, SNAPSHOT_FORMAT};
use crate::error::{Error, Result};

/// Block log file name.
pub const BLOCKS_FILE: &str = "blocks.dat";
/// State file name.
pub const STATE_FILE: &str = "state.json";
/// Cookie file name (as Core's `.cookie`).
pub const COOKIE_FILE: &str = ".cookie";
/// Record marker: regtest's network magic.
pub const BLOCK_MAGIC: [u8; 4] = [0xfa, 0xbf, 0xb5, 0xda];
/// Largest record accepted when reading (a block can be at most 4 MB serialised).
pub const MAX_RECORD_LEN: u32 = 4_000_000;

/// An open data directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    blocks: File,
}

impl Store {
    /// Opens (creating if needed) `dir` and rebuilds the chain it holds.
    pub fn open(dir: &Path) -> Result<(Store, Chain)> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let blocks_path = dir.join(BLOCKS_FILE);
        let blocks = read_blocks(&blocks_path)?;
        let state_path = dir.join(STATE_FILE);
        let snap = match fs::read(&state_path) {
            Ok(bytes) => {
                let corrupt = |detail: String| Error::Corrupt {
                    path: state_path.clone(),
                    detail,
                };
                let value: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
                // Check the version before the shape, so a newer format gets a clear message.
                let format = value.get("format").and_then(serde_json::Value::as_u64);
                if format != Some(u64::from(SNAPSHOT_FORMAT)) {
                    let shown = format.map_or("missing".to_string(), |f| f.to_string());
                    return Err(corrupt(format!(
                        "unsupported format version {shown} (expected {SNAPSHOT_FORMAT})"
                    )));
                }
                serde_json::from_value::<ChainSnapshot>(value)
                    .map_err(|e| corrupt(e.to_string()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ChainSnapshot {
                format: SNAPSHOT_FORMAT,
                ..Default::default()
            },
            Err(e) => return Err(Error::io(state_path, e)),
        };
        let chain = Chain::restore(blocks, &snap).map_err(|e| match e {
            Error::Key(detail) => Error::Corrupt {
                path: state_path.clone(),
                detail,
            },
            other => other,
        })?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&blocks_path)
            .map_err(|e| Error::io(&blocks_path, e))?;
        Ok((
            Store {
                dir: dir.to_path_buf(),
                blocks: file,
            },
            chain,
        ))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes whatever the chain's journal holds: appends new blocks and
    /// rewrites the state file if it changed.
    pub fn persist(&mut self, chain: &mut Chain) -> Result<()> {
        let journal = chain.drain_journal();
        let path = self.dir.join(BLOCKS_FILE);
        if !journal.blocks.is_empty() {
            let mut buf = Vec::new();
            for b in &journal.blocks {
                let bytes = encode::serialize(b.as_ref());
                buf.extend_from_slice(&BLOCK_MAGIC);
                buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                buf.extend_from_slice(&bytes);
            }
            self.blocks
                .write_all(&buf)
                .map_err(|e| Error::io(&path, e))?;
            self.blocks.sync_data().map_err(|e| Error::io(&path, e))?;
        }
        if journal.dirty || !journal.blocks.is_empty() {
            let text =
                serde_json::to_vec_pretty(&chain.snapshot()).map_err(|e| Error::Corrupt {
                    path: self.dir.join(STATE_FILE),
                    detail: e.to_string(),
                })?;
            write_atomic(&self.dir.join(STATE_FILE), &text)?;
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the
/// new content: temp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Some(dir) = path.parent() {
        // Directory fsync makes the rename durable; not all platforms allow it.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn read_blocks(path: &Path) -> Result<Vec<Block>> {
    let mut data = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut data).map_err(|e| Error::io(path, e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(Error::io(path, e)),
    }
    let corrupt = |offset: usize, detail: &str| Error::Corrupt {
        path: path.to_path_buf(),
        detail: format!("at byte {offset}: {detail}"),
    };
    let mut blocks = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        if data.len() - pos < 8 {
            truncate_tail(path, pos, data.len())?;
            break;
        }
        if data[pos..pos + 4] != BLOCK_MAGIC {
            return Err(corrupt(pos, "bad record magic"));
        }
        let len = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
        if len > MAX_RECORD_LEN {
            return Err(corrupt(pos, "record length too large"));
        }
        let end = pos + 8 + len as usize;
        if end > data.len() {
            truncate_tail(path, pos, data.len())?;
            break;
        }
        let block: Block = encode::deserialize(&data[pos + 8..end])
            .map_err(|e| corrupt(pos, &format!("undecodable block: {e}")))?;
        blocks.push(block);
        pos = end;
    }
    Ok(blocks)
}

fn truncate_tail(path: &Path, good: usize, total: usize) -> Result<()> {
    tracing::warn!(path = %path.display(), dropped = total - good, "dropping truncated block record");
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.set_len(good as u64).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}
