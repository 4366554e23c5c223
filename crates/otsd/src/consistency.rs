//! The start-up check of a calendar directory's parts against each other:
//! the journal, the proof store and the stamper's state. A disagreement is
//! repaired, with a logged reason, when the repair cannot lose an
//! acknowledged commitment (a lost store: its commitments are stamped
//! again); otherwise start-up is refused with an error that names the
//! files, what disagrees and how to proceed (a journal shorter than what
//! the store or the stamper has seen of it).

use std::ops::Range;
use std::path::{Path, PathBuf};

use ots_stamper::recover::{reconcile, JournalShort};

use crate::journal::JOURNAL_FILE;
use crate::stamping::persist::{self, PersistError};
use crate::stamping::STAMPER_STATE_FILE;
use crate::store::STORE_FILE;

/// Why the calendar directory cannot be served as it is.
#[derive(Debug, thiserror::Error)]
pub enum ConsistencyError {
    /// The store has proofs of journal records the journal does not hold.
    #[error("{store} holds proofs of journal records up to {last}, but {journal} holds only {records} records: the journal was truncated or replaced, and every one of those records was acknowledged to a client. Restore the journal from a backup; otsd will not start on it, because new commitments would take the positions of old ones", last = store_end - 1)]
    JournalShorterThanStore {
        /// The journal file.
        journal: PathBuf,
        /// Its records.
        records: u64,
        /// The store file.
        store: PathBuf,
        /// One past the highest journal position with a proof.
        store_end: u64,
    },
    /// The stamper has handed records to transactions that the journal
    /// does not hold.
    #[error("{state} has handed journal records up to {last} to timestamp transactions, but {journal} holds only {records} records: the journal was truncated or replaced. Restore the journal from a backup; otsd will not start on it, because new commitments would take the positions of old ones and never be stamped", last = journal_end - 1)]
    JournalShorterThanStamper {
        /// The journal file.
        journal: PathBuf,
        /// Its records.
        records: u64,
        /// The stamper's state file.
        state: PathBuf,
        /// The state's journal cursor.
        journal_end: u64,
    },
    /// `--dev`: devchain holds fewer blocks than the stamper has followed.
    #[error("{chain} holds blocks up to height {height}, but {state} has followed the chain to height {best}: the dev chain lost blocks, so completed proofs may name blocks it does not have. This is dev data: delete {dir} to start a new dev calendar")]
    DevChainBehind {
        /// devchain's data directory.
        chain: PathBuf,
        /// Its height.
        height: u64,
        /// The stamper's state file.
        state: PathBuf,
        /// The best height the stamper saw.
        best: u64,
        /// The dev calendar directory.
        dir: PathBuf,
    },
    /// The stamper's state file cannot be read or written.
    #[error(transparent)]
    State(#[from] PersistError),
}

/// Refuses a journal shorter than the positions the store has proofs of.
pub fn check_store(dir: &Path, records: u64, store_end: u64) -> Result<(), ConsistencyError> {
    if records < store_end {
        return Err(ConsistencyError::JournalShorterThanStore {
            journal: dir.join(JOURNAL_FILE),
            records,
            store: dir.join(STORE_FILE),
            store_end,
        });
    }
    Ok(())
}

/// `--dev`: refuses a devchain (in `chain_dir`) lower than the chain the
/// stamper has followed.
pub fn check_dev_chain(dir: &Path, chain_dir: &Path, height: u64) -> Result<(), ConsistencyError> {
    let path = dir.join(STAMPER_STATE_FILE);
    if !path.exists() {
        return Ok(());
    }
    let best = persist::load(&path)?.best_height;
    if best > height {
        return Err(ConsistencyError::DevChainBehind {
            chain: chain_dir.to_path_buf(),
            height,
            state: path,
            best,
            dir: dir.to_path_buf(),
        });
    }
    Ok(())
}

/// Checks `stamper.json` (if there is one) against a journal of `records`
/// records, and with `stamping`, repairs it against the positions
/// `without_proof` that have no proof in the store: positions it counts as
/// done but whose proof is missing are put back to be stamped again, and a
/// state that is new over a journal with proofs starts at the journal's
/// end. A repaired state is saved before the stamper starts.
pub fn check_stamper(
    dir: &Path,
    records: u64,
    without_proof: &[Range<u64>],
    stamping: bool,
) -> Result<(), ConsistencyError> {
    let path = dir.join(STAMPER_STATE_FILE);
    if !stamping && !path.exists() {
        return Ok(());
    }
    let mut state = persist::load(&path)?;
    let shortfall = |e: JournalShort| ConsistencyError::JournalShorterThanStamper {
        journal: dir.join(JOURNAL_FILE),
        records,
        state: path.clone(),
        journal_end: e.journal_end,
    };
    if !stamping {
        // Nothing stamps in this run: only refuse what would lose records.
        return match state.journal_end > records {
            true => Err(shortfall(JournalShort {
                journal_end: state.journal_end,
                journal_len: records,
            })),
            false => Ok(()),
        };
    }
    let repaired = reconcile(&mut state, records, without_proof).map_err(shortfall)?;
    if !repaired.returned.is_empty() {
        let count = ots_stamper::ranges::count(&repaired.returned);
        tracing::warn!(
            commitments = count,
            first = repaired.returned[0].start,
            "{} holds no proof of {count} journal records that {} counts as stamped (the store was lost, or replaced by an older copy): they are pending again and will be stamped again",
            STORE_FILE,
            STAMPER_STATE_FILE,
        );
    }
    if let Some(end) = repaired.adopted {
        let pending = ots_stamper::ranges::count(&state.returned);
        tracing::warn!(
            journal_end = end,
            pending,
            "no stamper state, but {} holds proofs: the stamper starts at the journal's end, and the {pending} records without a proof are pending",
            STORE_FILE,
        );
    }
    if !repaired.returned.is_empty() || repaired.adopted.is_some() {
        persist::save(&path, &state)?;
    }
    Ok(())
}

#[cfg(test)]
// A one-element list of ranges is a set of positions with one interval.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use ots_stamper::State;

    #[test]
    fn a_journal_shorter_than_the_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_store(dir.path(), 40, 40).is_ok());
        let e = check_store(dir.path(), 30, 40).unwrap_err();
        assert!(matches!(
            e,
            ConsistencyError::JournalShorterThanStore {
                records: 30,
                store_end: 40,
                ..
            }
        ));
        let text = e.to_string();
        assert!(
            text.contains("up to 39") && text.contains("only 30"),
            "{text}"
        );
    }

    #[test]
    fn without_stamping_the_state_is_checked_not_changed() {
        let dir = tempfile::tempdir().unwrap();
        // No state file, no stamping: nothing to check.
        check_stamper(dir.path(), 0, &[], false).unwrap();
        let path = dir.path().join(STAMPER_STATE_FILE);
        let state = State {
            journal_end: 41,
            ..State::default()
        };
        persist::save(&path, &state).unwrap();
        let e = check_stamper(dir.path(), 30, &[0..30], false).unwrap_err();
        assert!(e.to_string().contains("stamper.json"), "{e}");
        check_stamper(dir.path(), 50, &[0..50], false).unwrap();
        assert_eq!(persist::load(&path).unwrap(), state, "not rewritten");
        // Stamping: the lost positions are put back and saved.
        check_stamper(dir.path(), 50, &[0..50], true).unwrap();
        assert_eq!(persist::load(&path).unwrap().returned, vec![0..41]);
    }

    #[test]
    fn a_dev_chain_behind_the_stamper_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let chain = dir.path().join("devchain");
        check_dev_chain(dir.path(), &chain, 0).unwrap();
        let state = State {
            best_height: 107,
            ..State::default()
        };
        persist::save(&dir.path().join(STAMPER_STATE_FILE), &state).unwrap();
        check_dev_chain(dir.path(), &chain, 107).unwrap();
        let e = check_dev_chain(dir.path(), &chain, 102).unwrap_err();
        assert!(matches!(
            e,
            ConsistencyError::DevChainBehind {
                height: 102,
                best: 107,
                ..
            }
        ));
        assert!(e.to_string().contains("delete"), "{e}");
    }
}
