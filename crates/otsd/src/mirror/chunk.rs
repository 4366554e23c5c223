//! One backup chunk as a mirror receives it (PROTOCOL §2): parsed whole and
//! checked before anything of it is stored. A chunk is refused whole when a
//! key or record does not parse, a key comes twice, an operation leads to a
//! message the chunk does not hold, a node without operations has no
//! attestation, the nodes form a cycle, a commitment's proof would exceed
//! the serving limits, a commitment's proof reaches no Bitcoin
//! attestation, or its Bitcoin attestations are at more than
//! [`MAX_HEIGHTS`] heights. The Bitcoin attestations are returned for the
//! header check ([`super::headers`]), which needs a node.

use std::collections::{BTreeMap, HashMap};

use ots_proof::codec::Reader;
use ots_proof::op::MAX_MSG_LENGTH;
use ots_proof::timestamp::MAX_DEPTH;
use ots_proof::Attestation;

use crate::refstore::node::{self, NodeError, NodeRecord};

/// The most nodes one commitment's proof may expand to (the tree a
/// `GET /timestamp` serves); the same bound as the reference store's.
pub const MAX_PROOF_NODES: usize = crate::refstore::MAX_PROOF_NODES;

/// The most bytes the messages of one commitment's proof may hold once
/// expanded into the tree a `GET /timestamp` builds: a chunk holds each
/// message once, but a node reached by several operations (`append(a)`
/// and `prepend(a)` of a run of `a`s) is copied into the tree once per
/// path, so a few kilobytes of chunk could cost megabytes at every `GET`.
/// The same bound as an upstream calendar's proofs.
pub const MAX_PROOF_MESSAGE_BYTES: usize = crate::upstream::proof::MAX_MESSAGE_BYTES;

/// The most distinct heights of Bitcoin attestations in one chunk. Each
/// costs the header check two requests to our node; a chunk is 1000
/// commitments, stamped in a few transactions (each maybe through a few
/// calendars), while a hostile one could name every block of the chain
/// (a node whose message is a block's merkle root is a valid root).
pub const MAX_HEIGHTS: usize = 4096;

/// A chunk that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Every node, by message, each record re-encoded (canonical).
    pub nodes: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The commitments: the nodes no operation of the chunk leads to.
    pub roots: Vec<Vec<u8>>,
    /// Every Bitcoin attestation: (message, height).
    pub bitcoin: Vec<(Vec<u8>, u64)>,
}

/// Why a chunk is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The chunk holds no node at all.
    #[error("empty chunk")]
    Empty,
    /// A key or a record is cut short or over its length limit.
    #[error("truncated or malformed at byte {offset}: {message}")]
    Truncated {
        /// Where the bad item starts.
        offset: usize,
        /// The decoder's reason.
        message: String,
    },
    /// A record does not parse.
    #[error("node {key}: {source}")]
    Node {
        /// The key, hex.
        key: String,
        /// Why.
        source: NodeError,
    },
    /// The same key twice.
    #[error("node {0} twice")]
    DuplicateKey(String),
    /// An operation cannot be applied to its node's message.
    #[error("node {key}: operation {op}: {message}")]
    Op {
        /// The node, hex.
        key: String,
        /// The operation.
        op: String,
        /// Why.
        message: String,
    },
    /// An operation leads to a message the chunk does not hold.
    #[error("node {key} leads to {missing}, which is not in the chunk")]
    Missing {
        /// The node, hex.
        key: String,
        /// Its operation's result, hex.
        missing: String,
    },
    /// A node with neither operations nor attestations: a path that
    /// reaches no attestation.
    #[error("node {0} ends a path without an attestation")]
    DeadEnd(String),
    /// A Bitcoin attestation on a message that cannot be a merkle root.
    #[error("node {key}: Bitcoin attestation on a {len}-byte message")]
    BadBitcoinMessage {
        /// The node, hex.
        key: String,
        /// Its length.
        len: usize,
    },
    /// Operations that lead back to where they started.
    #[error("node {0} is on a cycle")]
    Cycle(String),
    /// A commitment whose proof exceeds the depth or node limit.
    #[error("proof of {key} exceeds {what}")]
    TooLarge {
        /// The commitment, hex.
        key: String,
        /// The limit hit.
        what: &'static str,
    },
    /// A commitment whose proof reaches no Bitcoin attestation.
    #[error("proof of {0} reaches no Bitcoin attestation")]
    NoBitcoin(String),
    /// Bitcoin attestations at more heights than [`MAX_HEIGHTS`].
    #[error("Bitcoin attestations at {count} heights, over the {max} a chunk may name")]
    TooManyHeights {
        /// The distinct heights, counted up to one over the limit.
        count: usize,
        /// [`MAX_HEIGHTS`].
        max: usize,
    },
}

/// Parses and checks a chunk.
pub fn parse(bytes: &[u8]) -> Result<Chunk, ChunkError> {
    let mut r = Reader::new(bytes);
    let mut parsed: Vec<(Vec<u8>, NodeRecord)> = Vec::new();
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    while !r.is_at_end() {
        let offset = r.offset();
        let bad = |e: ots_proof::DecodeError| ChunkError::Truncated {
            offset,
            message: e.to_string(),
        };
        let key = r.read_varbytes("key", 1, MAX_MSG_LENGTH).map_err(bad)?;
        let value = r.read_varbytes("record", 1, bytes.len()).map_err(bad)?;
        let record = node::parse(value).map_err(|source| ChunkError::Node {
            key: hex::encode(key),
            source,
        })?;
        if index.insert(key.to_vec(), parsed.len()).is_some() {
            return Err(ChunkError::DuplicateKey(hex::encode(key)));
        }
        parsed.push((key.to_vec(), record));
    }
    if parsed.is_empty() {
        return Err(ChunkError::Empty);
    }
    // Each node's children, as indices; and which nodes are someone's
    // child.
    let mut children: Vec<Vec<usize>> = Vec::with_capacity(parsed.len());
    let mut is_child = vec![false; parsed.len()];
    let mut bitcoin = Vec::new();
    let mut heights = std::collections::HashSet::new();
    for (key, record) in &parsed {
        if record.ops.is_empty() && record.attestations.is_empty() {
            return Err(ChunkError::DeadEnd(hex::encode(key)));
        }
        for a in &record.attestations {
            if let Attestation::Bitcoin { height } = a {
                if key.len() != 32 {
                    return Err(ChunkError::BadBitcoinMessage {
                        key: hex::encode(key),
                        len: key.len(),
                    });
                }
                bitcoin.push((key.clone(), *height));
                if heights.insert(*height) && heights.len() > MAX_HEIGHTS {
                    return Err(ChunkError::TooManyHeights {
                        count: heights.len(),
                        max: MAX_HEIGHTS,
                    });
                }
            }
        }
        let mut mine = Vec::with_capacity(record.ops.len());
        for op in &record.ops {
            let result = op.apply(key).map_err(|e| ChunkError::Op {
                key: hex::encode(key),
                op: op.to_string(),
                message: e.to_string(),
            })?;
            let Some(&child) = index.get(&result) else {
                return Err(ChunkError::Missing {
                    key: hex::encode(key),
                    missing: hex::encode(&result),
                });
            };
            is_child[child] = true;
            mine.push(child);
        }
        children.push(mine);
    }
    let facts = facts(&parsed, &children)?;
    let mut roots = Vec::new();
    for (i, (key, _)) in parsed.iter().enumerate() {
        if is_child[i] {
            continue;
        }
        let f = &facts[i];
        if f.depth >= MAX_DEPTH {
            return Err(ChunkError::TooLarge {
                key: hex::encode(key),
                what: "the depth limit",
            });
        }
        if f.size > MAX_PROOF_NODES {
            return Err(ChunkError::TooLarge {
                key: hex::encode(key),
                what: "the node limit",
            });
        }
        if f.bytes > MAX_PROOF_MESSAGE_BYTES {
            return Err(ChunkError::TooLarge {
                key: hex::encode(key),
                what: "the limit on its messages' bytes once expanded",
            });
        }
        if !f.bitcoin {
            return Err(ChunkError::NoBitcoin(hex::encode(key)));
        }
        roots.push(key.clone());
    }
    let nodes = parsed
        .into_iter()
        .map(|(k, rec)| (k, rec.encode()))
        .collect();
    Ok(Chunk {
        nodes,
        roots,
        bitcoin,
    })
}

/// What a node's proof (the tree below it) amounts to.
#[derive(Debug, Clone, Copy, Default)]
struct Facts {
    /// Levels below it, itself included.
    depth: usize,
    /// Nodes of the expanded tree, saturating.
    size: usize,
    /// Bytes of the expanded tree's messages, saturating.
    bytes: usize,
    /// Whether it reaches a Bitcoin attestation.
    bitcoin: bool,
}

/// Each node's [`Facts`], children before parents (an iterative
/// depth-first walk, so a deep chunk cannot exhaust the stack); a node met
/// again while on the walk's path is a cycle.
fn facts(
    parsed: &[(Vec<u8>, NodeRecord)],
    children: &[Vec<usize>],
) -> Result<Vec<Facts>, ChunkError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; parsed.len()];
    let mut facts = vec![Facts::default(); parsed.len()];
    for start in 0..parsed.len() {
        if mark[start] != Mark::New {
            continue;
        }
        // (node, next child to visit)
        let mut stack = vec![(start, 0usize)];
        mark[start] = Mark::OnPath;
        while let Some(&mut (n, ref mut next)) = stack.last_mut() {
            if let Some(&c) = children[n].get(*next) {
                *next += 1;
                match mark[c] {
                    Mark::OnPath => return Err(ChunkError::Cycle(hex::encode(&parsed[c].0))),
                    Mark::Done => {}
                    Mark::New => {
                        mark[c] = Mark::OnPath;
                        stack.push((c, 0));
                    }
                }
                continue;
            }
            let mut f = Facts {
                depth: 1,
                size: 1,
                bytes: parsed[n].0.len(),
                bitcoin: parsed[n]
                    .1
                    .attestations
                    .iter()
                    .any(|a| matches!(a, Attestation::Bitcoin { .. })),
            };
            for &c in &children[n] {
                let cf = facts[c];
                f.depth = f.depth.max(cf.depth + 1);
                f.size = f.size.saturating_add(cf.size);
                f.bytes = f.bytes.saturating_add(cf.bytes);
                f.bitcoin |= cf.bitcoin;
            }
            facts[n] = f;
            mark[n] = Mark::Done;
            stack.pop();
        }
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ots_proof::codec::write_varbytes;
    use ots_proof::Op;

    fn record(atts: &[Attestation], ops: &[Op]) -> Vec<u8> {
        NodeRecord {
            attestations: atts.to_vec(),
            ops: ops.to_vec(),
        }
        .encode()
    }

    fn chunk(nodes: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in nodes {
            write_varbytes(&mut out, k);
            write_varbytes(&mut out, v);
        }
        out
    }

    #[test]
    fn a_good_chunk_and_its_roots() {
        let c = b"commitment".to_vec();
        let leaf = ots_proof::op::sha256(&c).to_vec();
        let bytes = chunk(&[
            (c.clone(), record(&[], &[Op::Sha256])),
            (
                leaf.clone(),
                record(&[Attestation::Bitcoin { height: 3 }], &[]),
            ),
        ]);
        let got = parse(&bytes).unwrap();
        assert_eq!(got.roots, vec![c]);
        assert_eq!(got.bitcoin, vec![(leaf, 3)]);
        assert_eq!(got.nodes.len(), 2);
    }

    #[test]
    fn bad_chunks_are_refused() {
        let c = b"commitment".to_vec();
        let leaf = ots_proof::op::sha256(&c).to_vec();
        let good_leaf = record(&[Attestation::Bitcoin { height: 3 }], &[]);
        assert_eq!(parse(&[]), Err(ChunkError::Empty));
        let full = chunk(&[
            (c.clone(), record(&[], &[Op::Sha256])),
            (leaf.clone(), good_leaf.clone()),
        ]);
        assert!(matches!(
            parse(&full[..full.len() - 1]),
            Err(ChunkError::Truncated { .. })
        ));
        let missing = chunk(&[(c.clone(), record(&[], &[Op::Sha256]))]);
        assert!(matches!(parse(&missing), Err(ChunkError::Missing { .. })));
        let dead = chunk(&[(c.clone(), record(&[], &[]))]);
        assert!(matches!(parse(&dead), Err(ChunkError::DeadEnd(_))));
        let pending = chunk(&[(
            c.clone(),
            record(&[Attestation::pending("https://a.b").unwrap()], &[]),
        )]);
        assert!(matches!(parse(&pending), Err(ChunkError::NoBitcoin(_))));
        let dup = chunk(&[(leaf.clone(), good_leaf.clone()), (leaf, good_leaf)]);
        assert!(matches!(parse(&dup), Err(ChunkError::DuplicateKey(_))));
        let cycle = chunk(&[
            (b"ab".to_vec(), record(&[], &[Op::Reverse])),
            (b"ba".to_vec(), record(&[], &[Op::Reverse])),
        ]);
        assert!(matches!(parse(&cycle), Err(ChunkError::Cycle(_))));
        let bad_node = chunk(&[(c, vec![0, 1])]);
        assert!(matches!(parse(&bad_node), Err(ChunkError::Node { .. })));
    }

    /// Roots that are 32-byte messages attested at as many heights: each
    /// would be two requests to our node.
    fn roots_at_heights(n: u64) -> Vec<u8> {
        let nodes: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
            .map(|h| {
                (
                    ots_proof::op::sha256(&h.to_be_bytes()).to_vec(),
                    record(&[Attestation::Bitcoin { height: h }], &[]),
                )
            })
            .collect();
        chunk(&nodes)
    }

    #[test]
    fn a_proof_expanding_to_megabytes_of_messages_is_refused() {
        // Ten levels of runs of `a`s, each reached from the one above by
        // both `append(a)` and `prepend(a)`: 33 KB of chunk, over 6 MB of
        // messages in the tree of its root.
        let level = |i: usize| vec![b'a'; 3000 + i];
        let two = [Op::Append(b"a".to_vec()), Op::Prepend(b"a".to_vec())];
        let mut nodes: Vec<(Vec<u8>, Vec<u8>)> =
            (0..10).map(|i| (level(i), record(&[], &two))).collect();
        nodes.push((level(10), record(&[], &[Op::Sha256])));
        nodes.push((
            ots_proof::op::sha256(&level(10)).to_vec(),
            record(&[Attestation::Bitcoin { height: 1 }], &[]),
        ));
        let bytes = chunk(&nodes);
        assert!(bytes.len() < 40_000);
        match parse(&bytes) {
            Err(ChunkError::TooLarge { key, what }) => {
                assert_eq!(key, hex::encode(level(0)));
                assert!(what.contains("bytes"), "{what}");
            }
            other => panic!("{other:?}"),
        }
        // Three levels: 8 copies at most, well within.
        let mut nodes: Vec<(Vec<u8>, Vec<u8>)> =
            (0..3).map(|i| (level(i), record(&[], &two))).collect();
        nodes.push((level(3), record(&[], &[Op::Sha256])));
        nodes.push((
            ots_proof::op::sha256(&level(3)).to_vec(),
            record(&[Attestation::Bitcoin { height: 1 }], &[]),
        ));
        assert_eq!(parse(&chunk(&nodes)).unwrap().roots, vec![level(0)]);
    }

    #[test]
    fn a_chunk_naming_too_many_heights_is_refused() {
        let ok = parse(&roots_at_heights(MAX_HEIGHTS as u64)).unwrap();
        assert_eq!(ok.bitcoin.len(), MAX_HEIGHTS);
        assert_eq!(
            parse(&roots_at_heights(MAX_HEIGHTS as u64 + 1)),
            Err(ChunkError::TooManyHeights {
                count: MAX_HEIGHTS + 1,
                max: MAX_HEIGHTS
            })
        );
    }
}
