//! Finding a reference batch's extent from its first commitment's proof
//! alone: which of the journal's next commitments form the Merkle tree
//! whose nodes that proof passes through.
//!
//! Why this is enough to import a batch without reading its other nodes:
//! the tree rule is fixed ([`ots_proof::MerkleTree`]: pairs left to right,
//! an odd last element carried up), so a tree over `n` consecutive journal
//! commitments has exactly one root, and if that root is a node on the
//! first commitment's stored path, the reference built that very tree over
//! those very commitments (anything else is a SHA-256 collision). Every
//! proof we then serve for them is rooted at the journal commitment, passes
//! our own tree and ends in the tail read from `db/` (checked to reach
//! Bitcoin): the same bytes the reference serves, by construction, which
//! the import still compares for a sample of each batch.
//!
//! The tree over `n` leaves is the right fold of the perfect subtrees of
//! `n`'s binary decomposition, largest first (`n = 7`: `H(P4, H(P2, P1))`).
//! So the first leaf's path passes the roots of the perfect prefixes of
//! sizes 1, 2, 4, … up to the largest power of two `2^K ≤ n`; if `n > 2^K`
//! the next node is `P_K ‖ S` with `S` the root of the remaining `n - 2^K`
//! leaves, found by growing that remainder one leaf at a time.

use ots_proof::op::sha256;
use rustc_hash::FxHashSet;

/// Leaves read ahead in the journal at most for one batch (about 80 bytes
/// each while held): a larger batch is gathered by the node-for-node walk.
pub const MAX_BATCH: usize = 1 << 21;

/// The leaves after a batch's first commitment, read as needed.
pub trait Leaves {
    /// The leaf `i` places after the first (`0` is the first itself);
    /// `None` past the end of the journal or of what may be read ahead.
    fn leaf(&mut self, i: usize) -> anyhow::Result<Option<[u8; 32]>>;
}

/// How many commitments the batch has whose first commitment's stored
/// path visits exactly the messages of `path` (in order, from the
/// commitment to where the walk ended); `None` when no tree of two or
/// more consecutive journal commitments has its root on the path (then
/// the walk gathers the batch node for node).
pub fn batch_size(path: &[Vec<u8>], leaves: &mut dyn Leaves) -> anyhow::Result<Option<usize>> {
    let on_path: FxHashSet<&[u8]> = path.iter().map(Vec::as_slice).collect();
    let Some(first) = leaves.leaf(0)? else {
        return Ok(None);
    };
    if !on_path.contains(first.as_slice()) {
        return Ok(None);
    }
    // The perfect prefixes: `p` is the root of the first `size` leaves.
    let mut p = first;
    let mut size = 1usize;
    while size * 2 <= MAX_BATCH {
        let Some(q) = perfect_root(leaves, size, size)? else {
            break;
        };
        let next = pair(&p, &q);
        if !on_path.contains(next.as_slice()) {
            break;
        }
        p = next;
        size *= 2;
    }
    // After `p`, a tree larger than `size` continues with `p ‖ S`.
    let s = path
        .iter()
        .position(|m| m.as_slice() == p.as_slice())
        .and_then(|i| path.get(i + 1))
        .filter(|m| m.len() == 64 && m[..32] == p[..])
        .map(|m| {
            let mut s = [0u8; 32];
            s.copy_from_slice(&m[32..]);
            s
        });
    if let Some(s) = s {
        // Grow the remainder leaf by leaf (fewer than `size` of them, or
        // the next perfect prefix would have been on the path).
        let mut stack: Vec<(usize, [u8; 32])> = Vec::new();
        for r in 1..size {
            let Some(l) = leaves.leaf(size + r - 1)? else {
                break;
            };
            stack.push((1, l));
            while stack.len() >= 2 && stack[stack.len() - 1].0 == stack[stack.len() - 2].0 {
                let (n, right) = stack.pop().expect("two on the stack");
                let (_, left) = stack.pop().expect("two on the stack");
                stack.push((2 * n, pair(&left, &right)));
            }
            if fold(&stack) == s && on_path.contains(pair(&p, &s).as_slice()) {
                return Ok(Some(size + r));
            }
        }
    }
    Ok((size >= 2).then_some(size))
}

/// The root of the perfect tree over the `len` leaves from `start` (a power
/// of two); `None` if the journal ends before.
fn perfect_root(
    leaves: &mut dyn Leaves,
    start: usize,
    len: usize,
) -> anyhow::Result<Option<[u8; 32]>> {
    if leaves.leaf(start + len - 1)?.is_none() {
        return Ok(None);
    }
    let mut level = Vec::with_capacity(len);
    for i in start..start + len {
        match leaves.leaf(i)? {
            Some(l) => level.push(l),
            None => return Ok(None),
        }
    }
    while level.len() > 1 {
        level = level.chunks(2).map(|c| pair(&c[0], &c[1])).collect();
    }
    Ok(level.first().copied())
}

/// The root of a carried-up tree from its perfect subtrees, largest first.
fn fold(stack: &[(usize, [u8; 32])]) -> [u8; 32] {
    let mut acc = stack[stack.len() - 1].1;
    for (_, left) in stack[..stack.len() - 1].iter().rev() {
        acc = pair(left, &acc);
    }
    acc
}

fn pair(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut cat = [0u8; 64];
    cat[..32].copy_from_slice(left);
    cat[32..].copy_from_slice(right);
    sha256(&cat)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ots_proof::MerkleTree;

    struct Vec32(Vec<[u8; 32]>);

    impl Leaves for Vec32 {
        fn leaf(&mut self, i: usize) -> anyhow::Result<Option<[u8; 32]>> {
            Ok(self.0.get(i).copied())
        }
    }

    fn leaves(n: usize, salt: u8) -> Vec<[u8; 32]> {
        (0..n)
            .map(|i| sha256(&[salt, i as u8, (i >> 8) as u8]))
            .collect()
    }

    /// The messages the proof of leaf 0 passes, as `db/` walks them: the
    /// leaf, then per level `msg ‖ sibling` (or `sibling ‖ msg`) and its
    /// hash, then a tail.
    fn path_of_first(tree: &MerkleTree) -> Vec<Vec<u8>> {
        let mut msg = tree.leaves()[0].to_vec();
        let mut out = vec![msg.clone()];
        for op in tree.path(0).unwrap() {
            msg = op.apply(&msg).unwrap();
            out.push(msg.clone());
        }
        let mut tail = msg.clone();
        tail.extend_from_slice(&[7u8; 32]);
        out.push(tail.clone());
        out.push(sha256(&tail).to_vec());
        out
    }

    #[test]
    fn finds_every_size_with_the_next_batch_after_it() {
        for n in (2..70).chain([127, 128, 129, 255, 256, 1000, 1023, 1024, 1025]) {
            let batch = leaves(n, 1);
            let tree = MerkleTree::new(batch.clone()).unwrap();
            let mut journal = batch.clone();
            journal.extend(leaves(3000, 2));
            let got = batch_size(&path_of_first(&tree), &mut Vec32(journal)).unwrap();
            assert_eq!(got, Some(n), "a batch of {n}");
        }
    }

    #[test]
    fn a_batch_at_the_end_of_the_journal() {
        for n in [2, 3, 5, 8, 13] {
            let batch = leaves(n, 3);
            let tree = MerkleTree::new(batch.clone()).unwrap();
            let got = batch_size(&path_of_first(&tree), &mut Vec32(batch)).unwrap();
            assert_eq!(got, Some(n), "a batch of {n}");
        }
    }

    #[test]
    fn a_single_commitment_or_a_foreign_path_is_left_to_the_walk() {
        let one = leaves(1, 4);
        let tree = MerkleTree::new(one.clone()).unwrap();
        let mut journal = one.clone();
        journal.extend(leaves(10, 5));
        assert_eq!(
            batch_size(&path_of_first(&tree), &mut Vec32(journal)).unwrap(),
            None
        );
        // A batch that skipped the journal's second commitment: only the
        // first is on its own path, so nothing is guessed.
        let mut batch = leaves(9, 6);
        let tree = MerkleTree::new(batch.clone()).unwrap();
        batch.insert(1, sha256(b"stamped earlier"));
        assert_eq!(
            batch_size(&path_of_first(&tree), &mut Vec32(batch)).unwrap(),
            None
        );
    }

    #[test]
    fn a_batch_that_skipped_a_later_commitment_yields_its_verified_prefix() {
        // Leaves 0..8 as the reference had them, the journal with one more
        // record inside: the perfect prefix of 4 is still a subtree of the
        // stored tree, so it is a batch whose proofs pass the stored path.
        let batch = leaves(9, 7);
        let tree = MerkleTree::new(batch.clone()).unwrap();
        let mut journal = batch.clone();
        journal.insert(5, sha256(b"stamped earlier"));
        assert_eq!(
            batch_size(&path_of_first(&tree), &mut Vec32(journal)).unwrap(),
            Some(4)
        );
    }
}
