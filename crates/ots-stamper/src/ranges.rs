//! Sets of journal positions as sorted, disjoint half-open ranges: which
//! commitments a transaction covers, which are still pending.

use std::ops::Range;

/// Sorted, merged, without empty ranges.
pub fn normalize(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// `a` without the positions in `b`.
pub fn subtract(a: &[Range<u64>], b: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    for r in normalize(a.to_vec()) {
        let mut pieces = vec![r];
        for cut in b {
            pieces = pieces
                .into_iter()
                .flat_map(|p| {
                    if cut.end <= p.start || cut.start >= p.end {
                        vec![p]
                    } else {
                        vec![p.start..cut.start.max(p.start), cut.end.min(p.end)..p.end]
                    }
                })
                .filter(|p| p.start < p.end)
                .collect();
        }
        out.extend(pieces);
    }
    normalize(out)
}

/// How many positions.
pub fn count(ranges: &[Range<u64>]) -> u64 {
    ranges.iter().map(|r| r.end - r.start).sum()
}

/// The first `n` positions.
pub fn take(ranges: &[Range<u64>], mut n: u64) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    for r in ranges {
        if n == 0 {
            break;
        }
        let len = (r.end - r.start).min(n);
        out.push(r.start..r.start + len);
        n -= len;
    }
    out
}

/// Whether `position` is in `ranges`.
pub fn contains(ranges: &[Range<u64>], position: u64) -> bool {
    ranges.iter().any(|r| r.contains(&position))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_algebra() {
        assert_eq!(
            normalize(vec![5..7, 0..2, 2..3, 6..9, 4..4]),
            vec![0..3, 5..9]
        );
        assert_eq!(subtract(&[0..10], &[2..4, 6..7]), vec![0..2, 4..6, 7..10]);
        assert_eq!(subtract(&[0..10], &[0..10]), Vec::<Range<u64>>::new());
        assert_eq!(count(&[0..3, 5..9]), 7);
        assert_eq!(take(&[0..3, 5..9], 5), vec![0..3, 5..7]);
        assert!(contains(&[0..3, 5..9], 8) && !contains(&[0..3, 5..9], 3));
    }
}
