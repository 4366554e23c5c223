//! Pruning: dropping what a proof no longer needs once it is complete —
//! pending attestations (by default all of them, or one calendar's), other
//! notaries on request, and every Bitcoin (or Litecoin) attestation but the
//! best one (lowest height, then shortest path) — then every branch left
//! without an attestation.

use ots_proof::{Attestation, Op, Timestamp};

/// Which attestations `--discard` names (the reference's notary specs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discard {
    /// `btc`: Bitcoin attestations.
    Bitcoin,
    /// `ltc`: Litecoin attestations.
    Litecoin,
    /// `unknown`: attestations of unknown kinds.
    Unknown,
    /// `pending:*`: every pending attestation.
    AllPending,
    /// `pending:URI`: one calendar's pending attestation.
    Pending(String),
}

impl Discard {
    /// Parses a notary spec.
    pub fn parse(spec: &str) -> Result<Discard, String> {
        Ok(match spec {
            "btc" => Discard::Bitcoin,
            "ltc" => Discard::Litecoin,
            "unknown" => Discard::Unknown,
            "pending:*" => Discard::AllPending,
            _ => match spec.strip_prefix("pending:") {
                Some(uri) => Discard::Pending(uri.to_string()),
                None => {
                    return Err(format!(
                        "invalid choice: '{spec}' (choose from 'btc', 'ltc', 'unknown', 'pending:*', 'pending:uri')"
                    ))
                }
            },
        })
    }

    fn matches(&self, a: &Attestation) -> bool {
        match (self, a) {
            (Discard::Bitcoin, Attestation::Bitcoin { .. })
            | (Discard::Litecoin, Attestation::Litecoin { .. })
            | (Discard::Unknown, Attestation::Unknown { .. })
            | (Discard::AllPending, Attestation::Pending { .. }) => true,
            (Discard::Pending(want), Attestation::Pending { uri }) => want == uri,
            _ => false,
        }
    }
}

fn for_each_node(node: &mut Timestamp, f: &mut dyn FnMut(&mut Timestamp)) {
    f(node);
    let ops: Vec<Op> = node.ops().map(|(op, _)| op.clone()).collect();
    for op in ops {
        if let Some(child) = node.child_mut(&op) {
            for_each_node(child, f);
        }
    }
}

/// Size of a path as the reference counts it: one byte per op plus its
/// argument.
fn path_cost(path: &[&Op]) -> usize {
    path.iter()
        .map(|op| 1 + op.argument().map_or(0, <[u8]>::len))
        .sum()
}

/// Keeps only the best attestation of one kind (Bitcoin or Litecoin): the
/// lowest height, then the shortest path.
fn keep_best(timestamp: &mut Timestamp, is_kind: fn(&Attestation) -> bool) {
    let best = timestamp
        .attestation_paths()
        .into_iter()
        .filter(|(_, a)| is_kind(a))
        .min_by(|(pa, a), (pb, b)| a.cmp(b).then(path_cost(pa).cmp(&path_cost(pb))))
        .map(|(path, a)| (path.into_iter().cloned().collect::<Vec<Op>>(), a.clone()));
    let Some((best_path, best)) = best else {
        return;
    };
    let mut path: Vec<Op> = Vec::new();
    remove_all_but(timestamp, &mut path, &best_path, &best, is_kind);
}

fn remove_all_but(
    node: &mut Timestamp,
    path: &mut Vec<Op>,
    keep_path: &[Op],
    keep: &Attestation,
    is_kind: fn(&Attestation) -> bool,
) {
    let doomed: Vec<Attestation> = node
        .attestations()
        .iter()
        .filter(|a| is_kind(a) && !(path.as_slice() == keep_path && *a == keep))
        .cloned()
        .collect();
    for a in doomed {
        node.remove_attestation(&a);
    }
    let ops: Vec<Op> = node.ops().map(|(op, _)| op.clone()).collect();
    for op in ops {
        path.push(op.clone());
        if let Some(child) = node.child_mut(&op) {
            remove_all_but(child, path, keep_path, keep, is_kind);
        }
        path.pop();
    }
}

/// Removes branches without attestations; true if `node` itself is now
/// empty.
fn prune_tree(node: &mut Timestamp) -> bool {
    let ops: Vec<Op> = node.ops().map(|(op, _)| op.clone()).collect();
    for op in ops {
        if node.child_mut(&op).is_some_and(prune_tree) {
            node.remove_op(&op);
        }
    }
    node.is_empty()
}

/// Prunes `timestamp`. Returns `(empty, changed)`: whether nothing is left,
/// and whether anything was removed.
pub fn prune(timestamp: &mut Timestamp, discard: &[Discard]) -> (bool, bool) {
    let before = timestamp.clone();
    for_each_node(timestamp, &mut |node| {
        let doomed: Vec<Attestation> = node
            .attestations()
            .iter()
            .filter(|a| discard.iter().any(|d| d.matches(a)))
            .cloned()
            .collect();
        for a in doomed {
            node.remove_attestation(&a);
        }
    });
    keep_best(timestamp, |a| matches!(a, Attestation::Bitcoin { .. }));
    keep_best(timestamp, |a| matches!(a, Attestation::Litecoin { .. }));
    let empty = prune_tree(timestamp);
    (empty, *timestamp != before)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Timestamp {
        let mut t = Timestamp::new(vec![1; 32]).unwrap();
        t.add_path([Op::append(vec![1]).unwrap(), Op::Sha256])
            .unwrap()
            .add_attestation(Attestation::pending("https://a.example").unwrap());
        let b = t
            .add_path([Op::append(vec![2]).unwrap(), Op::Sha256])
            .unwrap();
        b.add_attestation(Attestation::pending("https://b.example").unwrap());
        b.add_op(Op::Sha256)
            .unwrap()
            .add_attestation(Attestation::Bitcoin { height: 10 });
        t.add_path([Op::append(vec![3, 3]).unwrap(), Op::Sha256])
            .unwrap()
            .add_attestation(Attestation::Bitcoin { height: 10 });
        t.add_path([Op::append(vec![4]).unwrap(), Op::Sha256])
            .unwrap()
            .add_attestation(Attestation::Bitcoin { height: 12 });
        t
    }

    #[test]
    fn default_prune_keeps_one_best_bitcoin_attestation() {
        let mut t = sample();
        let (empty, changed) = prune(&mut t, &[Discard::AllPending]);
        assert!(!empty && changed);
        let all = t.all_attestations();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1, &Attestation::Bitcoin { height: 10 });
        // Of the two height-10 attestations only one branch survives.
        assert_eq!(t.ops().len(), 1);
    }

    #[test]
    fn discard_one_calendar() {
        let mut t = sample();
        let (empty, changed) = prune(&mut t, &[Discard::Pending("https://a.example".into())]);
        assert!(!empty && changed);
        assert!(t
            .all_attestations()
            .iter()
            .any(|(_, a)| *a == &Attestation::pending("https://b.example").unwrap()));
        assert!(!t
            .all_attestations()
            .iter()
            .any(|(_, a)| *a == &Attestation::pending("https://a.example").unwrap()));
    }

    #[test]
    fn discarding_everything_leaves_nothing() {
        let mut t = sample();
        let (empty, _) = prune(&mut t, &[Discard::AllPending, Discard::Bitcoin]);
        assert!(empty);
        let mut unchanged = Timestamp::new(vec![1; 32]).unwrap();
        unchanged.add_attestation(Attestation::Bitcoin { height: 1 });
        assert_eq!(
            prune(&mut unchanged, &[Discard::AllPending]),
            (false, false)
        );
    }

    #[test]
    fn specs() {
        assert_eq!(Discard::parse("pending:*"), Ok(Discard::AllPending));
        assert_eq!(
            Discard::parse("pending:https://x"),
            Ok(Discard::Pending("https://x".into()))
        );
        assert!(Discard::parse("eth").is_err());
    }
}
