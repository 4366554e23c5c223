//! The calendar's recently completed timestamp transactions, kept in the
//! persisted state for the info page: the latest ones listed with their fee
//! rates, and the last week's fees and spacing computed from their block
//! times.
//!
//! The figures never claim more than the history holds: `since` is a time
//! from which every completed transaction is in the list. It is 0 for a
//! calendar that kept its history from the start, the time of the first
//! completion after an upgrade from a state file without history, and it
//! moves forward when an entry is dropped to bound the list. While `since`
//! is inside the week, the weekly figures are unknown (`None`).

use bitcoin::{Amount, Txid};
use serde::{Deserialize, Serialize};

/// Seconds in the window of the weekly figures.
pub const WEEK_SECS: u64 = 7 * 24 * 3600;
/// Most entries kept: a week of blocks, and a calendar has at most one
/// round in flight, so about one transaction per block at most.
pub const MAX_ENTRIES: usize = 1008;
/// `since` of a state written before the history existed: not known yet.
pub const SINCE_UNKNOWN: u64 = u64::MAX;

/// A timestamp transaction whose proofs are stored for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedTx {
    /// Its txid.
    pub txid: Txid,
    /// Its fee.
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub fee: Amount,
    /// Its estimated virtual size.
    pub vsize: u64,
    /// Height of the block that mined it.
    pub height: u64,
    /// That block's header time (unix seconds).
    pub block_time: u64,
}

/// Completed transactions, most recent completion first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Every transaction completed with a block time at or after this is
    /// in `entries` (see the module documentation).
    pub since: u64,
    /// The transactions, most recent completion first.
    pub entries: Vec<CompletedTx>,
}

impl Default for History {
    /// A history from the start: nothing completed yet, nothing missing.
    fn default() -> Self {
        History {
            since: 0,
            entries: Vec::new(),
        }
    }
}

/// The history of a state written before it existed (serde's default for
/// the missing field).
pub fn unknown() -> History {
    History {
        since: SINCE_UNKNOWN,
        entries: Vec::new(),
    }
}

/// The last week's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Week {
    /// Transactions whose block time is in the week.
    pub transactions: usize,
    /// Sum of their fees.
    pub fees: Amount,
    /// Average spacing of their block times, in hours (`None` for fewer
    /// than two).
    pub hours_between: Option<f64>,
}

impl History {
    /// Records `tx`, completed at `now`; drops entries beyond
    /// [`MAX_ENTRIES`], moving `since` past each one dropped.
    pub fn record(&mut self, tx: CompletedTx, now: u64) {
        if self.since == SINCE_UNKNOWN {
            // Completions before this one were not recorded; every one
            // from now on is, and its block time is before `now`.
            self.since = now;
        }
        self.entries.insert(0, tx);
        while self.entries.len() > MAX_ENTRIES {
            if let Some(dropped) = self.entries.pop() {
                self.since = self.since.max(dropped.block_time.saturating_add(1));
            }
        }
    }

    /// The figures of the week before `now`, or `None` when the history
    /// does not cover that whole week.
    pub fn last_week(&self, now: u64) -> Option<Week> {
        let start = now.saturating_sub(WEEK_SECS);
        if self.since > start {
            return None;
        }
        let in_week = || self.entries.iter().filter(|e| e.block_time >= start);
        let fees = in_week().fold(Amount::ZERO, |sum, e| {
            sum.checked_add(e.fee).unwrap_or(Amount::MAX)
        });
        let transactions = in_week().count();
        let first = in_week().map(|e| e.block_time).min();
        let last = in_week().map(|e| e.block_time).max();
        let hours_between = match (first, last) {
            (Some(first), Some(last)) if transactions >= 2 => {
                Some((last - first) as f64 / 3600.0 / (transactions - 1) as f64)
            }
            _ => None,
        };
        Some(Week {
            transactions,
            fees,
            hours_between,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;

    const NOW: u64 = 1_700_000_000;
    const HOUR: u64 = 3600;

    fn tx(n: u8, fee: u64, block_time: u64) -> CompletedTx {
        CompletedTx {
            txid: Txid::from_byte_array([n; 32]),
            fee: Amount::from_sat(fee),
            vsize: 150,
            height: u64::from(n),
            block_time,
        }
    }

    #[test]
    fn weekly_fees_and_spacing_count_only_the_last_seven_days() {
        let mut h = History::default();
        // Eight days ago: outside the week.
        h.record(tx(1, 9_000, NOW - 8 * 24 * HOUR), NOW - 8 * 24 * HOUR);
        // Inside: 6 days, 3 days and 6 hours ago (exactly on the edge
        // counts too).
        h.record(tx(2, 1_000, NOW - WEEK_SECS), NOW - 6 * 24 * HOUR);
        h.record(tx(3, 2_000, NOW - 72 * HOUR), NOW - 70 * HOUR);
        h.record(tx(4, 3_500, NOW - 6 * HOUR), NOW - 5 * HOUR);
        let week = h.last_week(NOW).unwrap();
        assert_eq!(week.transactions, 3);
        assert_eq!(week.fees, Amount::from_sat(6_500));
        // (168 h − 6 h) spread over two gaps.
        assert_eq!(week.hours_between, Some(81.0));
        assert_eq!(h.entries[0].txid, Txid::from_byte_array([4; 32]));
    }

    #[test]
    fn spacing_needs_two_transactions_and_an_empty_week_has_zero_fees() {
        let mut h = History::default();
        let week = h.last_week(NOW).unwrap();
        assert_eq!((week.transactions, week.fees), (0, Amount::ZERO));
        assert_eq!(week.hours_between, None);
        h.record(tx(1, 700, NOW - HOUR), NOW);
        let week = h.last_week(NOW).unwrap();
        assert_eq!((week.transactions, week.fees), (1, Amount::from_sat(700)));
        assert_eq!(week.hours_between, None);
        // Block times out of order (Bitcoin allows it): spacing uses the
        // earliest and latest.
        h.record(tx(2, 300, NOW - 3 * HOUR), NOW);
        h.record(tx(3, 300, NOW - 2 * HOUR), NOW);
        assert_eq!(h.last_week(NOW).unwrap().hours_between, Some(1.0));
    }

    #[test]
    fn an_upgraded_state_reports_nothing_until_it_has_a_whole_week() {
        let mut h = unknown();
        assert_eq!(h.last_week(NOW), None);
        h.record(tx(1, 500, NOW - HOUR), NOW);
        assert_eq!(h.since, NOW);
        assert_eq!(h.last_week(NOW + HOUR), None);
        let later = NOW + WEEK_SECS;
        let week = h.last_week(later).unwrap();
        // The transaction itself mined an hour before `since`: outside.
        assert_eq!((week.transactions, week.fees), (0, Amount::ZERO));
    }

    #[test]
    fn dropping_entries_moves_since_past_them() {
        let mut h = History::default();
        let start = NOW - WEEK_SECS + HOUR;
        for i in 0..=MAX_ENTRIES as u64 {
            let mut t = tx(0, 10, start + i);
            t.height = i;
            h.record(t, NOW);
        }
        assert_eq!(h.entries.len(), MAX_ENTRIES);
        assert_eq!(h.entries.last().unwrap().height, 1);
        // The dropped one was inside the week: the week is incomplete.
        assert_eq!(h.since, start + 1);
        assert_eq!(h.last_week(NOW), None);
        // A week after it, the history covers the window again.
        let week = h.last_week(start + 1 + WEEK_SECS).unwrap();
        assert_eq!(week.transactions, MAX_ENTRIES);
        assert_eq!(week.fees, Amount::from_sat(10 * MAX_ENTRIES as u64));
    }
}
