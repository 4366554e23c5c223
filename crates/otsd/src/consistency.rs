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
