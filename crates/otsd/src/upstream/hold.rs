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
    /// `covered` (a round the stamper is about to fund) without what is
    /// not the wallet's: the positions an upstream completed, and those
    /// still left to the upstreams (from [`StampHold::stampable_len`] on;
    /// positions put back below the cursor, after a reorg or at start-up,
    /// wait for the deadline too).
    fn stampable(&self, covered: Vec<Range<u64>>) -> Vec<Range<u64>>;
}

/// No upstreams: the stamper stamps everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHold;

impl StampHold for NoHold {
    fn stampable_len(&self, journal_len: u64) -> u64 {
        journal_len
    }
    fn stampable(&self, covered: Vec<Range<u64>>) -> Vec<Range<u64>> {
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

    fn stampable(&self, covered: Vec<Range<u64>>) -> Vec<Range<u64>> {
        let held = self.stampable_len(self.journal.durable_len());
        let mut not_ours = lock(&self.completed).clone();
        not_ours.push(held..u64::MAX);
        ranges::subtract(&covered, &ranges::normalize(not_ours))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::calendar::COMMITMENT_LEN;
    use crate::journal::{JournalReader, JOURNAL_FILE};
    use crate::upstream::UpstreamConfig;

    /// A journal of records made at these unix times.
    fn journal(dir: &std::path::Path, times: &[u64]) -> JournalReader {
        let mut bytes = Vec::new();
        for (i, t) in times.iter().enumerate() {
            let mut r = [i as u8 + 1; COMMITMENT_LEN];
            r[..TIME_LEN].copy_from_slice(&(*t as u32).to_be_bytes());
            bytes.extend_from_slice(&r);
        }
        std::fs::write(dir.join(JOURNAL_FILE), bytes).unwrap();
        JournalReader::open(dir).unwrap()
    }

    fn upstreams(dir: &std::path::Path, reader: JournalReader) -> Upstreams {
        let config = UpstreamConfig {
            urls: vec!["http://a/".into(), "http://b/".into()],
            min: 1,
            fallback_after: Duration::from_secs(100),
            ..UpstreamConfig::default()
        };
        Upstreams::open(dir, config, reader).unwrap()
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)]
    fn the_stamper_gets_what_is_past_the_deadline_or_given_up_and_not_completed() {
        let dir = tempfile::tempdir().unwrap();
        let now = unix_now();
        let reader = journal(dir.path(), &[now - 1000, now - 500, now - 10, now - 5, now]);
        let up = upstreams(dir.path(), reader.clone());
        assert_eq!(up.stampable_len(5), 2, "the two older than the deadline");
        assert_eq!(up.stampable_len(1), 1);
        // One of two upstreams gave up: the other may still take it.
        up.give_up(2, 0, true);
        assert_eq!(up.stampable_len(5), 2);
        // Both: fewer than --upstream-min can, so the wallet takes it.
        up.give_up(2, 1, true);
        assert_eq!(up.stampable_len(5), 3);
        up.give_up(2, 1, false);
        assert_eq!(up.stampable_len(5), 2, "accepted again");
        // An upstream completed position 1: it is not stamped.
        let leaf = crate::store::leaf(&reader.get(1).unwrap().unwrap());
        up.db
            .record_complete("http://a/", 1, &leaf, b"proof")
            .unwrap();
        up.mark_completed(1);
        assert_eq!(up.stampable(vec![0..5]), vec![0..1]);
        up.give_up(2, 0, true);
        up.give_up(2, 1, true);
        assert_eq!(up.stampable(vec![0..5]), vec![0..1, 2..3]);
        assert!(up.is_completed(1) && !up.is_completed(0));
        // ... after a restart too.
        drop(up);
        let up = upstreams(dir.path(), reader);
        assert!(up.is_completed(1));
        assert_eq!(up.stampable(vec![0..2]), vec![0..1]);
        assert_eq!(NoHold.stampable_len(5), 5);
        assert_eq!(NoHold.stampable(vec![0..5]), vec![0..5]);
    }
}
