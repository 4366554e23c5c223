//! The one face the stamper sees of the upstreams ([`StampHold`]): with a
//! Bitcoin backend and upstreams both, our wallet stamps a commitment only
//! once it is older than `--upstream-fallback-after` or enough upstreams
//! gave up on it, and never one an upstream completed.

use std::ops::Range;

use ots_stamper::ranges;

use super::{lock, unix_now, Upstreams};
use crate::calendar::TIME_LEN;

/// What the stamper asks before it stamps.
pub trait StampHold: Send + Sync {
    /// The journal length the stamper may take new commitments up to: the
    /// commitments from there on are left to the upstreams for now.
    fn stampable_len(&self, journal_len: u64) -> u64;
    /// `covered` without the positions an upstream completed.
    fn without_completed(&self, covered: Vec<Range<u64>>) -> Vec<Range<u64>>;
}

/// No upstreams: the stamper stamps everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHold;

impl StampHold for NoHold {
    fn stampable_len(&self, journal_len: u64) -> u64 {
        journal_len
    }
    fn without_completed(&self, covered: Vec<Range<u64>>) -> Vec<Range<u64>> {
        covered
    }
}

impl Upstreams {
    /// Whether enough upstreams gave up on `position` that fewer than
    /// `--upstream-min` can still accept it.
    fn lost_upstream(&self, position: u64) -> bool {
        let bits = lock(&self.given_up).get(&position).copied().unwrap_or(0);
        let n = self.config.urls.len();
        (n - (bits.count_ones() as usize).min(n)) < self.config.min
    }

    /// The record time of journal position `p`; `None` unreadable.
    fn time_of(&self, p: u64) -> Option<u64> {
        let r = self.journal.get(p).ok()??;
        let mut t = [0u8; TIME_LEN];
        t.copy_from_slice(&r[..TIME_LEN]);
        Some(u64::from(u32::from_be_bytes(t)))
    }
}

impl StampHold for Upstreams {
    fn stampable_len(&self, journal_len: u64) -> u64 {
        let cutoff = unix_now().saturating_sub(self.config.fallback_after.as_secs());
        // Journal records are in time order: the first one younger than
        // the deadline, by bisection (an unreadable one counts as young:
        // held, never stamped by mistake).
        let (mut lo, mut hi) = (0, journal_len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.time_of(mid) {
                Some(t) if t <= cutoff => lo = mid + 1,
                _ => hi = mid,
            }
        }
        // Younger ones the upstreams gave up on are ours right away (up to
        // the first one still held: the stamper takes a prefix).
        while lo < journal_len && self.lost_upstream(lo) {
            lo += 1;
        }
        lo
    }

    fn without_completed(&self, covered: Vec<Range<u64>>) -> Vec<Range<u64>> {
        ranges::subtract(&covered, &lock(&self.completed))
    }
}
