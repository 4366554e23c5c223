//! Merkle trees as OpenTimestamps builds them, and the privacy nonce.
//!
//! The rule (consensus-critical: every calendar and client builds trees this
//! way, and it never changes): pair neighbours left to right and replace each
//! pair by `sha256(left ‖ right)`; an odd element at the end of a level is
//! carried up unchanged, not duplicated (unlike Bitcoin's block merkle tree).
//! Repeat until one element is left; a single leaf is its own root.
//!
//! As proof steps, the left element of a pair takes `append(right)` then
//! `sha256`, the right element `prepend(left)` then `sha256`.
//!
//! Leaves are 32-byte digests: in every use (a calendar's nonced digests, a
//! client's nonced file digests, a stamper's hashed commitments) each leaf
//! is the output of `sha256`, which keeps every level a flat array.

use crate::op::{sha256, Op};

/// Length of the random nonce appended to each digest before aggregation.
pub const NONCE_LEN: usize = 16;

/// The steps that hide a digest from everyone else in the same tree:
/// `append(nonce)` then `sha256`. Draw the nonce from a CSPRNG, fresh for
/// every digest; without it, a sibling in a calendar's tree would reveal
/// its neighbours' digests.
pub fn nonce_ops(nonce: [u8; NONCE_LEN]) -> [Op; 2] {
    [Op::Append(nonce.to_vec()), Op::Sha256]
}

/// A Merkle tree over 32-byte leaves, with every level kept so that the path
/// of any leaf can be produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    /// `levels[0]` holds the leaves; each next level pairs the one below;
    /// the last level holds only the root.
    levels: Vec<Vec<[u8; 32]>>,
}

impl MerkleTree {
    /// Builds the tree over `leaves`; `None` for an empty list.
    pub fn new(leaves: Vec<[u8; 32]>) -> Option<Self> {
        if leaves.is_empty() {
            return None;
        }
        let mut levels = vec![leaves];
        while let Some(level) = levels.last().filter(|l| l.len() > 1) {
            let next = pair_level(level);
            levels.push(next);
        }
        Some(MerkleTree { levels })
    }

    /// The number of leaves.
    pub fn len(&self) -> usize {
        self.levels[0].len()
    }

    /// Always false: an empty tree cannot be built.
    pub fn is_empty(&self) -> bool {
        self.levels[0].is_empty()
    }

    /// The leaves, in order.
    pub fn leaves(&self) -> &[[u8; 32]] {
        &self.levels[0]
    }

    /// The root: the single leaf itself, or the top hash.
    pub fn root(&self) -> [u8; 32] {
        // Every level is non-empty by construction.
        self.levels[self.levels.len() - 1][0]
    }

    /// Every level, leaves first, root last.
    pub fn levels(&self) -> &[Vec<[u8; 32]>] {
        &self.levels
    }

    /// Every level, leaves first, root last, taken out of the tree.
    pub fn into_levels(self) -> Vec<Vec<[u8; 32]>> {
        self.levels
    }

    /// The siblings met on the way from leaf `index` to the root, leaf side
    /// first (a level where the element rises unchanged has none); `None`
    /// if out of range.
    pub fn siblings(&self, index: usize) -> Option<Vec<Sibling>> {
        if index >= self.len() {
            return None;
        }
        let mut out = Vec::with_capacity(self.levels.len());
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            if i % 2 == 1 {
                out.push(Sibling {
                    left: true,
                    node: level[i - 1],
                });
            } else if let Some(right) = level.get(i + 1) {
                out.push(Sibling {
                    left: false,
                    node: *right,
                });
            }
            // else: the odd last element rises unchanged.
            i /= 2;
        }
        Some(out)
    }

    /// The steps from leaf `index` to the root; `None` if out of range.
    pub fn path(&self, index: usize) -> Option<Vec<Op>> {
        let siblings = self.siblings(index)?;
        let mut ops = Vec::with_capacity(2 * siblings.len());
        for s in siblings {
            ops.push(s.op());
            ops.push(Op::Sha256);
        }
        Some(ops)
    }
}

/// A sibling on a leaf's way to the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sibling {
    /// Whether it is the left element of the pair (the message is then
    /// prepended with it), else the right one (appended).
    pub left: bool,
    /// The sibling's hash.
    pub node: [u8; 32],
}

impl Sibling {
    /// The step that joins the message with this sibling (`prepend` for a
    /// left sibling, `append` for a right one), before the `sha256`.
    pub fn op(&self) -> Op {
        if self.left {
            Op::Prepend(self.node.to_vec())
        } else {
            Op::Append(self.node.to_vec())
        }
    }

    /// The parent of `msg` and this sibling: `sha256` of the pair in order.
    pub fn parent(&self, msg: &[u8; 32]) -> [u8; 32] {
        if self.left {
            pair_hash(&self.node, msg)
        } else {
            pair_hash(msg, &self.node)
        }
    }
}

/// An inner node: `sha256(left ‖ right)`.
pub fn pair_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(left);
    buf[32..].copy_from_slice(right);
    sha256(&buf)
}

/// One level up: hash neighbours pairwise, carry an odd last element.
fn pair_level(items: &[[u8; 32]]) -> Vec<[u8; 32]> {
    items
        .chunks(2)
        .map(|pair| match pair {
            [left, right] => pair_hash(left, right),
            // chunks(2) yields one or two items; one is the odd last.
            _ => pair[0],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp::Timestamp;

    fn leaf(i: u8) -> [u8; 32] {
        sha256(&[i])
    }

    fn replay(leaf: [u8; 32], ops: &[Op]) -> Vec<u8> {
        ops.iter()
            .fold(leaf.to_vec(), |msg, op| op.apply(&msg).unwrap())
    }

    #[test]
    fn small_trees_by_hand() {
        let (a, b, c) = (leaf(0), leaf(1), leaf(2));
        let ab = sha256(&[a, b].concat());
        assert_eq!(MerkleTree::new(vec![a]).unwrap().root(), a);
        assert_eq!(MerkleTree::new(vec![a, b]).unwrap().root(), ab);
        // Odd element carried, not duplicated.
        assert_eq!(
            MerkleTree::new(vec![a, b, c]).unwrap().root(),
            sha256(&[ab, c].concat())
        );
        assert!(MerkleTree::new(vec![]).is_none());
        let three = MerkleTree::new(vec![a, b, c]).unwrap();
        assert_eq!(
            three.path(2).unwrap(),
            vec![Op::Prepend(ab.to_vec()), Op::Sha256]
        );
        assert_eq!(three.path(3), None);
    }

    #[test]
    fn every_path_reaches_the_root() {
        for n in 1..=33u8 {
            let leaves: Vec<_> = (0..n).map(leaf).collect();
            let tree = MerkleTree::new(leaves.clone()).unwrap();
            for (i, l) in leaves.iter().enumerate() {
                assert_eq!(
                    replay(*l, &tree.path(i).unwrap()),
                    tree.root(),
                    "n={n} i={i}"
                );
                // The same climb, hash by hash.
                let top = tree
                    .siblings(i)
                    .unwrap()
                    .iter()
                    .fold(*l, |msg, s| s.parent(&msg));
                assert_eq!(top, tree.root(), "n={n} i={i}");
            }
            assert!(tree.siblings(n as usize).is_none());
            assert_eq!(tree.levels().last().unwrap(), &vec![tree.root()]);
        }
    }

    #[test]
    fn nonce_ops_hash_the_nonced_digest() {
        let mut t = Timestamp::new(leaf(9).to_vec()).unwrap();
        let end = t.add_path(nonce_ops([7; NONCE_LEN])).unwrap();
        assert_eq!(end.msg(), sha256(&[leaf(9).as_slice(), &[7; 16]].concat()));
    }
}
