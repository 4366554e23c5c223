//! The start-up reconciliation of the stamper's state with the journal and
//! the proof store: positions the state believes done but that have no
//! proof (a lost or restored store, a state written by someone else) are
//! put back to be stamped again, and a journal shorter than the state's
//! cursor is reported, never papered over.

use std::ops::Range;

use crate::ranges;
use crate::state::State;

/// What [`reconcile`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reconciled {
    /// Positions put back to be stamped again: below the cursor, in no
    /// transaction of the state, without a proof.
    pub returned: Vec<Range<u64>>,
    /// The cursor was set to the journal's end (a fresh state over a
    /// journal whose proofs exist): how many positions it skipped, all of
    /// which have a proof or are in `returned`.
    pub adopted: Option<u64>,
}

/// The journal holds fewer records than the state has handed to rounds:
/// acknowledged commitments are gone from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stamper has handed journal records up to {journal_end} to transactions, but the journal holds {journal_len}")]
pub struct JournalShort {
    /// The state's cursor.
    pub journal_end: u64,
    /// The journal's length.
    pub journal_len: u64,
}

/// Positions that some transaction of `state` covers (the open round's
/// versions and attempt, the mined ones). Reorged-out versions are not
/// here: their positions are in `returned`.
pub fn in_flight(state: &State) -> Vec<Range<u64>> {
    let mut all = Vec::new();
    if let Some(round) = &state.round {
        for v in &round.versions {
            all.extend(v.ranges.iter().cloned());
        }
        if let Some(a) = &round.attempt {
            all.extend(a.ranges.iter().cloned());
        }
    }
    for m in &state.mined {
        all.extend(m.version.ranges.iter().cloned());
    }
    ranges::normalize(all)
}

/// Brings `state` in line with a journal of `journal_len` records of which
/// the positions `without_proof` have no completed proof in the store.
///
/// * A fresh state (cursor 0, nothing in flight) over a journal with proofs
///   adopts the journal: the cursor moves to its end and only the
///   positions without a proof are pending, so nothing is stamped twice.
/// * Otherwise every position below the cursor that is in no transaction,
///   not already pending, and without a proof is pending again: its proof
///   was lost (a missing or older store).
///
/// Nothing an acknowledged commitment needs is dropped: a position leaves
/// the pending set only when it has a proof.
pub fn reconcile(
    state: &mut State,
    journal_len: u64,
    without_proof: &[Range<u64>],
) -> Result<Reconciled, JournalShort> {
    // Every position the state names must be in the journal: the cursor,
    // and the ranges of its transactions (a state written by hand or by
    // another program may disagree with its own cursor).
    let named_end = in_flight(state)
        .last()
        .map_or(state.journal_end, |r| r.end.max(state.journal_end));
    if journal_len < named_end {
        return Err(JournalShort {
            journal_end: named_end,
            journal_len,
        });
    }
    // Pending-again positions at or past the cursor are pending by the
    // cursor anyway; beyond the journal they name nothing.
    state.returned = ranges::subtract(&state.returned, &[state.journal_end..u64::MAX]);
    let without_proof = ranges::normalize(without_proof.to_vec());
    let fresh = state.journal_end == 0 && state.round.is_none() && state.mined.is_empty();
    if fresh {
        let with_proof = ranges::count(&ranges::subtract(&[0..journal_len], &without_proof));
        if with_proof == 0 {
            return Ok(Reconciled::default());
        }
        let below = ranges::subtract(&without_proof, &[journal_len..u64::MAX]);
        state.journal_end = journal_len;
        state.returned = ranges::normalize([state.returned.clone(), below.clone()].concat());
        return Ok(Reconciled {
            returned: Vec::new(),
            adopted: Some(journal_len),
        });
    }
    let below_cursor = ranges::subtract(&without_proof, &[state.journal_end..u64::MAX]);
    let lost = ranges::subtract(
        &ranges::subtract(&below_cursor, &in_flight(state)),
        &state.returned,
    );
    if !lost.is_empty() {
        state.returned = ranges::normalize([state.returned.clone(), lost.clone()].concat());
    }
    Ok(Reconciled {
        returned: lost,
        adopted: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_store_puts_completed_positions_back() {
        let mut state = State {
            journal_end: 100,
            returned: vec![90..95],
            ..State::default()
        };
        // The store lost everything: all 120 positions lack a proof.
        let r = reconcile(&mut state, 120, &[0..120]).unwrap();
        assert_eq!(r.returned, vec![0..90, 95..100]);
        assert_eq!(state.returned, vec![0..100]);
        assert_eq!(state.journal_end, 100, "the rest is pending by the cursor");
        // Again: nothing more to put back.
        assert_eq!(
            reconcile(&mut state, 120, &[0..120]).unwrap(),
            Reconciled::default()
        );
    }

    fn mined(ranges: Vec<Range<u64>>) -> crate::state::Mined {
        use bitcoin::hashes::Hash;
        let tx = bitcoin::Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![],
            output: vec![],
        };
        crate::state::Mined {
            version: crate::state::TxVersion {
                txid: tx.compute_txid(),
                tx,
                tip: [0; 32],
                ranges,
                fee: bitcoin::Amount::ZERO,
                vsize: 0,
                funding: crate::state::Funding {
                    outpoint: bitcoin::OutPoint::null(),
                    value: bitcoin::Amount::ZERO,
                    kind: crate::tx::InputKind::P2wpkh,
                    change: bitcoin::ScriptBuf::new(),
                },
                fee_choice: None,
            },
            block: bitcoin::BlockHash::all_zeros(),
            height: 1,
        }
    }

    #[test]
    fn positions_with_proofs_or_in_flight_stay_where_they_are() {
        // 0..10 have proofs; 10..30 are in a mined transaction; 30..40
        // are pending again already; 40..50 lost their proofs.
        let mut state = State {
            journal_end: 50,
            mined: vec![mined(vec![10..30])],
            returned: vec![30..40],
            ..State::default()
        };
        let r = reconcile(&mut state, 60, &[10..60]).unwrap();
        assert_eq!(r.returned, vec![40..50]);
        assert_eq!(state.returned, vec![30..50]);
        assert_eq!(in_flight(&state), vec![10..30]);
    }

    #[test]
    fn a_fresh_state_adopts_a_journal_with_proofs() {
        let mut state = State::default();
        let r = reconcile(&mut state, 1_000, &[990..1_000, 5..6]).unwrap();
        assert_eq!(r.adopted, Some(1_000));
        assert_eq!(state.journal_end, 1_000);
        assert_eq!(state.returned, vec![5..6, 990..1_000]);
        // A fresh state over a journal without any proof: as it was.
        let mut state = State::default();
        assert_eq!(
            reconcile(&mut state, 10, &[0..10]).unwrap(),
            Reconciled::default()
        );
        assert_eq!(state, State::default());
    }

    #[test]
    fn pending_again_positions_past_the_cursor_are_dropped_and_transactions_past_the_journal_refused(
    ) {
        let mut state = State {
            journal_end: 3,
            returned: vec![2..10, 0..u64::MAX],
            ..State::default()
        };
        reconcile(&mut state, 3, &[]).unwrap();
        assert_eq!(state.returned, vec![0..3]);
        let mut state = State {
            journal_end: 3,
            mined: vec![mined(vec![0..8])],
            ..State::default()
        };
        assert_eq!(
            reconcile(&mut state, 5, &[]),
            Err(JournalShort {
                journal_end: 8,
                journal_len: 5
            })
        );
    }

    #[test]
    fn a_short_journal_is_refused() {
        let mut state = State {
            journal_end: 41,
            ..State::default()
        };
        let before = state.clone();
        assert_eq!(
            reconcile(&mut state, 30, &[]),
            Err(JournalShort {
                journal_end: 41,
                journal_len: 30
            })
        );
        assert_eq!(state, before);
    }
}
