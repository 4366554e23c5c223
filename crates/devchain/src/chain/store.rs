//! Persistence of a [`Chain`] to a data directory.
//!
//! On-disk format (all in the data directory):
//!
//! - `blocks.dat`: append-only log of every block ever accepted (active or
//!   stale), in arrival order. Each record is the regtest network magic
//!   `fa bf b5 da`, the block's length as a little-endian `u32`, then the
//!   block in Bitcoin consensus encoding (with witnesses). The genesis block
//!   is implicit. Each append is followed by `fsync`, and the chain forgets
//!   its pending blocks only once both succeeded: a failed append or `fsync`
//!   (a full disk) is returned to the caller, the file is cut back to its
//!   last complete record, and the same blocks are written again by the next
//!   [`Store::persist`]. A record cut short by a crash at the end of the file
//!   is dropped (and the file truncated) at open, with a warning; anything
//!   else unreadable is reported as corruption.
//! - `state.json`: a [`ChainSnapshot`] (versioned by its `format` field:
//!   wallets with seeds and derivation indexes, labels, invalidated blocks,
//!   mempool transactions, mock time). Rewritten atomically: temp file,
//!   `fsync`, rename, `fsync` of the directory. It holds the wallet seeds,
//!   so it is created readable by its owner only ([`PRIVATE_FILE_MODE`]).
//! - `.cookie`: the RPC cookie (`__cookie__:<hex>`) while a server runs,
//!   written the same way and with the same mode.
//!
//! The UTXO set, indexes and wallet transaction lists are rebuilt from the
//! blocks on open, so they can never disagree with them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
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

/// Mode of the files written with [`write_atomic`]: `state.json` holds the
/// wallet seeds and `.cookie` the RPC password, so only the owner may read.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// The block log's file operations. [`File`] is the real one; the trait
/// lets tests fail them the way a full disk does.
pub trait BlockLog: std::fmt::Debug + Send {
    /// Appends `buf` at the end of the log. On failure part of it may have
    /// been written.
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes everything appended durable (`fsync`).
    fn sync(&mut self) -> io::Result<()>;
    /// Cuts the log back to `len` bytes, durably.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

impl BlockLog for File {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write_all(buf)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)?;
        self.sync_all()
    }
}

/// An open data directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    blocks: Box<dyn BlockLog>,
    /// Length of the block log up to its last complete, durable record.
    good_len: u64,
    /// A failed append may have left part of a record past `good_len` that
    /// could not be cut yet; the next persist cuts it before writing.
    torn: bool,
}

impl Store {
    /// Opens (creating if needed) `dir` and rebuilds the chain it holds.
    pub fn open(dir: &Path) -> Result<(Store, Chain)> {
        Store::open_with(dir, |f| Box::new(f))
    }

    /// [`Store::open`], with the block log file wrapped by `log` (tests put
    /// a log that fails here).
    pub fn open_with(
        dir: &Path,
        log: impl FnOnce(File) -> Box<dyn BlockLog>,
    ) -> Result<(Store, Chain)> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let blocks_path = dir.join(BLOCKS_FILE);
        let (blocks, good_len) = read_blocks(&blocks_path)?;
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
                blocks: log(file),
                good_len,
                torn: false,
            },
            chain,
        ))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes whatever the chain's journal holds: appends new blocks and
    /// rewrites the state file if it changed. The chain forgets each part
    /// only once it is written and synced, so after an error the same
    /// blocks and state are written by the next call: nothing is dropped.
    pub fn persist(&mut self, chain: &mut Chain) -> Result<()> {
        let path = self.dir.join(BLOCKS_FILE);
        if self.torn {
            self.blocks
                .truncate(self.good_len)
                .map_err(|e| Error::io(&path, e))?;
            tracing::info!(path = %path.display(), len = self.good_len, "cut the block log back to its last complete record");
            self.torn = false;
        }
        let pending = chain.journal().blocks.len();
        if pending > 0 {
            let mut buf = Vec::new();
            for b in &chain.journal().blocks {
                let bytes = encode::serialize(b.as_ref());
                buf.extend_from_slice(&BLOCK_MAGIC);
                buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                buf.extend_from_slice(&bytes);
            }
            if let Err(e) = self.blocks.append(&buf).and_then(|()| self.blocks.sync()) {
                // Part of a record may be on disk (or, after a failed fsync,
                // in the page cache only): cut back now, so that nothing is
                // ever appended after a torn record; if even that fails, the
                // next call cuts before it writes.
                self.torn = self.blocks.truncate(self.good_len).is_err();
                return Err(Error::io(&path, e));
            }
            self.good_len += buf.len() as u64;
            chain.blocks_written(pending);
        }
        if chain.journal().dirty {
            let text =
                serde_json::to_vec_pretty(&chain.snapshot()).map_err(|e| Error::Corrupt {
                    path: self.dir.join(STATE_FILE),
                    detail: e.to_string(),
                })?;
            write_atomic(&self.dir.join(STATE_FILE), &text)?;
            chain.state_written();
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the
/// new content: temp file, fsync, rename, fsync of the directory. The file
/// is readable by its owner only ([`PRIVATE_FILE_MODE`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    // A temp file left by a crash keeps its old mode if reused: start afresh.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(Error::io(&tmp, e)),
        _ => {}
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
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

/// The blocks of the log at `path` and the length of its complete records
/// (a torn last record is cut off the file).
fn read_blocks(path: &Path) -> Result<(Vec<Block>, u64)> {
    let mut data = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut data).map_err(|e| Error::io(path, e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((vec![], 0)),
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
    Ok((blocks, pos as u64))
}

fn truncate_tail(path: &Path, good: usize, total: usize) -> Result<()> {
    tracing::warn!(path = %path.display(), kept = good, dropped = total - good, "cutting a torn block record off the end of the log");
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.set_len(good as u64).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}
