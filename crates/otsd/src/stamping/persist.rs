//! The stamper's state on disk (`stamper.json` in the calendar directory):
//! `ots-stamper`'s serde [`State`] as one JSON file, replaced atomically
//! (write a temporary file, fsync it, rename it over the old one, fsync the
//! directory), so a crash leaves either the old state or the new one.

use std::io::Write;
use std::path::{Path, PathBuf};

use ots_stamper::state::{State, STATE_FORMAT};

/// Why the state cannot be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Reading or writing failed.
    #[error("stamper state {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a state we can read.
    #[error("stamper state {path} is corrupt or of an unknown format: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Loads the state at `path`; a missing file is a fresh state.
pub fn load(path: &Path) -> Result<State, PersistError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
        Err(source) => {
            return Err(PersistError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let state: State = serde_json::from_slice(&bytes).map_err(|e| PersistError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if state.format != STATE_FORMAT {
        return Err(PersistError::Corrupt {
            path: path.to_path_buf(),
            message: format!(
                "format {} (this version reads {STATE_FORMAT})",
                state.format
            ),
        });
    }
    Ok(state)
}

/// The state as saved, to tell whether it changed since the last save.
pub fn to_bytes(state: &State) -> Vec<u8> {
    // Serializing plain data into memory cannot fail; an empty result only
    // makes the next save happen.
    serde_json::to_vec_pretty(state).unwrap_or_default()
}

/// Saves `state` at `path` atomically and durably.
pub fn save(path: &Path, state: &State) -> Result<(), PersistError> {
    let io = |source| PersistError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| io(std::io::Error::other(e)))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_missing_and_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stamper.json");
        assert_eq!(load(&path).unwrap(), State::default());
        use bitcoin::hashes::Hash;
        let state = State {
            journal_end: 42,
            next_round_at: 7,
            history: ots_stamper::history::History {
                since: 5,
                entries: vec![ots_stamper::history::CompletedTx {
                    txid: bitcoin::Txid::from_byte_array([3; 32]),
                    fee: bitcoin::Amount::from_sat(1_234),
                    vsize: 153,
                    height: 800_001,
                    block_time: 1_700_000_000,
                }],
            },
            ..State::default()
        };
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), state);
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(load(&path), Err(PersistError::Corrupt { .. })));
        std::fs::write(
            &path,
            serde_json::to_vec(&State {
                format: 99,
                ..State::default()
            })
            .unwrap(),
        )
        .unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("format 99"));
    }

    #[test]
    fn a_state_file_from_before_the_history_and_the_reorg_watch_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stamper.json");
        // What an earlier version wrote: the same fields, no `history`.
        let mut old = serde_json::to_value(State {
            journal_end: 42,
            best_height: 800_000,
            ..State::default()
        })
        .unwrap();
        let fields = old.as_object_mut().unwrap();
        for later in ["history", "completed", "reorged", "reorged_total"] {
            assert!(fields.remove(later).is_some(), "{later}");
        }
        std::fs::write(&path, serde_json::to_vec(&old).unwrap()).unwrap();
        let state = load(&path).unwrap();
        assert_eq!((state.journal_end, state.best_height), (42, 800_000));
        assert_eq!(state.history, ots_stamper::history::unknown());
        assert!(state.completed.is_empty() && state.reorged.is_empty());
        assert_eq!(state.reorged_total, 0);
        // Saved again, the history is kept as it is.
        save(&path, &state).unwrap();
        assert_eq!(
            load(&path).unwrap().history,
            ots_stamper::history::unknown()
        );
    }
}
