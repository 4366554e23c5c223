//! What an upstream sends, judged before it is kept: a submit reply keeps
//! only its paths to pending attestations (anything it claims beyond that
//! is not ours to vouch for), and an upgrade becomes a complete proof only
//! through Bitcoin attestations, each checked against our own node when
//! there is one. The proofs served are built here too: every upstream
//! reply of a commitment merged under it, after its `sha256` (the leaf
//! that was submitted, as in our own proofs).
//!
//! Whatever is kept must still be servable: a client reads at most
//! [`MAX_SERVED_LEN`] bytes of a reply and decodes at most [`MAX_DEPTH`]
//! nodes from its own file's digest, so an upstream proof is kept only if
//! it leaves room for the commitment's `sha256` in front of it
//! ([`MAX_KEPT_LEN`]) and for the paths above it ([`MAX_KEPT_DEPTH`]); and
//! a served proof takes upstream proofs smallest first while they fit, so
//! that an upstream padding its proofs cannot crowd out the others.

use ots_proof::timestamp::MAX_DEPTH;
use ots_proof::{Attestation, Op, Timestamp};

/// The most bytes a served proof may have: what a client reads of a reply.
pub const MAX_SERVED_LEN: usize = ots_calendar::MAX_REPLY_LEN;
/// The largest upstream proof kept (rooted at the leaf): served, it comes
/// after the commitment's one-byte `sha256`.
pub const MAX_KEPT_LEN: usize = MAX_SERVED_LEN - 1;
/// Nodes kept free, above an upstream proof, for what comes before it in a
/// client's file: the commitment (and its `sha256`), our round's path to it
/// (nonce, a Merkle tree of millions of digests, time and mac: about 50),
/// and the client's own tree of the files it stamped together.
pub const ROOM_ABOVE: usize = 64;
/// The deepest upstream proof kept, in nodes from the leaf (the leaf
/// included): an upstream proof at the format's own limit would make every
/// file stamped through it unreadable.
pub const MAX_KEPT_DEPTH: usize = MAX_DEPTH - ROOM_ABOVE;

/// Why an upstream's answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A submit reply with no pending attestation: nothing to upgrade.
    #[error("the reply has no pending attestation")]
    NoPending,
    /// The proof cannot be serialized again (beyond the format's limits).
    #[error("the proof exceeds the format's limits: {0}")]
    Limits(String),
    /// No Bitcoin attestation of the upgrade holds against our node.
    #[error("no Bitcoin attestation of the upgrade matches our node's block headers{0}")]
    Unverified(String),
    /// The path to the upgraded commitment is not in the reply.
    #[error("the upgraded commitment is not in the reply")]
    NotInReply,
    /// Too large to serve after the commitment's `sha256`.
    #[error("the proof is {len} bytes, over the {max} a served proof leaves for it")]
    TooLarge {
        /// Its size, serialized.
        len: usize,
        /// [`MAX_KEPT_LEN`].
        max: usize,
    },
    /// More pending commitments than are polled for.
    #[error("the reply has {count} commitments to upgrade, over {max}")]
    TooManyPending {
        /// Its pending attestations' distinct messages.
        count: usize,
        /// [`MAX_PENDING_COMMITMENTS`].
        max: usize,
    },
    /// Its messages hold too many bytes once decoded.
    #[error("the proof's messages hold {bytes} bytes once decoded, over {max}")]
    TooManyBytes {
        /// Their bytes.
        bytes: usize,
        /// [`MAX_MESSAGE_BYTES`].
        max: usize,
    },
    /// Too deep to leave room for the paths above it.
    #[error("the proof is {depth} nodes deep, over the {max} a served proof leaves for it")]
    TooDeep {
        /// Its depth, in nodes.
        depth: usize,
        /// [`MAX_KEPT_DEPTH`].
        max: usize,
    },
}

/// The most bytes the messages of a kept upstream proof may hold
/// together, once decoded: a proof's encoding does not carry its messages,
/// so 10,000 bytes of `reverse`s on a 4,000-byte message decode to
/// megabytes, and every `GET` of the commitment would decode them again.
/// An honest proof holds a few kilobytes (a transaction or two of at most
/// 4,096 bytes, and hashes), 30 KB through a calendar merging several.
/// Tighter than the calendar client's decoding bound
/// ([`ots_calendar::MAX_REPLY_MESSAGE_BYTES`], which only keeps a hostile
/// reply from being held at all): what is kept here is decoded again at
/// every `GET`.
pub const MAX_MESSAGE_BYTES: usize = 64 << 10;

/// The most commitments of pending attestations a kept reply may have:
/// the upgrade poller asks the upstream for each of them, every poll. A
/// calendar's reply has one; an aggregator's (which upstreams should not
/// be) one per calendar behind it.
pub const MAX_PENDING_COMMITMENTS: usize = 16;

/// The bytes of all the messages of `ts`'s nodes, saturating.
pub fn message_bytes(ts: &Timestamp) -> usize {
    ts.ops().fold(ts.msg().len(), |sum, (_, child)| {
        sum.saturating_add(message_bytes(child))
    })
}

/// How many nodes deep `ts` is, its root included.
pub fn depth(ts: &Timestamp) -> usize {
    // Recursion is bounded: decoded trees are at most MAX_DEPTH deep, and
    // merging does not deepen them.
    1 + ts.ops().map(|(_, child)| depth(child)).max().unwrap_or(0)
}

/// `ts` serialized, if an upstream proof of that size, depth and weight
/// can be kept (see [`MAX_KEPT_LEN`], [`MAX_KEPT_DEPTH`],
/// [`MAX_MESSAGE_BYTES`]).
pub fn keepable(ts: &Timestamp) -> Result<Vec<u8>, Refused> {
    let d = depth(ts);
    if d > MAX_KEPT_DEPTH {
        return Err(Refused::TooDeep {
            depth: d,
            max: MAX_KEPT_DEPTH,
        });
    }
    let held = message_bytes(ts);
    if held > MAX_MESSAGE_BYTES {
        return Err(Refused::TooManyBytes {
            bytes: held,
            max: MAX_MESSAGE_BYTES,
        });
    }
    let bytes = ts.serialize().map_err(|e| Refused::Limits(e.to_string()))?;
    if bytes.len() > MAX_KEPT_LEN {
        return Err(Refused::TooLarge {
            len: bytes.len(),
            max: MAX_KEPT_LEN,
        });
    }
    Ok(bytes)
}

/// Removes every attestation `keep` refuses, and every branch left without
/// attestations. Returns whether anything is left.
pub fn prune(ts: &mut Timestamp, keep: &impl Fn(&Attestation) -> bool) -> bool {
    let dropped: Vec<Attestation> = ts
        .attestations()
        .iter()
        .filter(|a| !keep(a))
        .cloned()
        .collect();
    for a in &dropped {
        ts.remove_attestation(a);
    }
    let ops: Vec<Op> = ts.ops().map(|(op, _)| op.clone()).collect();
    for op in ops {
        let alive = ts.child_mut(&op).is_some_and(|child| prune(child, keep));
        if !alive {
            ts.remove_op(&op);
        }
    }
    !ts.attestations().is_empty() || ts.ops().len() > 0
}

/// A submit reply as kept: its paths to pending attestations, serialized;
/// refused with more than [`MAX_PENDING_COMMITMENTS`] commitments to ask
/// for.
pub fn accept_reply(mut reply: Timestamp) -> Result<Vec<u8>, Refused> {
    if !prune(&mut reply, &|a| matches!(a, Attestation::Pending { .. })) {
        return Err(Refused::NoPending);
    }
    let n = pending_commitments(&reply).len();
    if n > MAX_PENDING_COMMITMENTS {
        return Err(Refused::TooManyPending {
            count: n,
            max: MAX_PENDING_COMMITMENTS,
        });
    }
    keepable(&reply)
}

/// The commitments a reply's pending attestations stand for, each once.
pub fn pending_commitments(reply: &Timestamp) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for (msg, a) in reply.all_attestations() {
        if matches!(a, Attestation::Pending { .. }) && !out.iter().any(|m| m == msg) {
            out.push(msg.to_vec());
        }
    }
    out
}

/// The Bitcoin attestations of `ts`: `(message, height)`.
pub fn bitcoin_attestations(ts: &Timestamp) -> Vec<(Vec<u8>, u64)> {
    ts.all_attestations()
        .into_iter()
        .filter_map(|(msg, a)| match a {
            Attestation::Bitcoin { height } => Some((msg.to_vec(), *height)),
            _ => None,
        })
        .collect()
}

/// The complete proof rooted at `reply`'s message: the path from it to
/// `msg` (a commitment of one of its pending attestations), then
/// `upgrade` (rooted at `msg`) pruned to the Bitcoin attestations `ok`
/// accepts (the caller's check against its node). `None` when the upgrade
/// has no Bitcoin attestation yet.
pub fn complete(
    reply: &Timestamp,
    msg: &[u8],
    mut upgrade: Timestamp,
    ok: &impl Fn(&[u8], u64) -> bool,
) -> Result<Option<Vec<u8>>, Refused> {
    if bitcoin_attestations(&upgrade).is_empty() {
        return Ok(None);
    }
    // The messages are known only while walking: a Bitcoin attestation is
    // kept if it is at a node whose message `ok` accepts for its height.
    let verified: Vec<(Vec<u8>, u64)> = bitcoin_attestations(&upgrade)
        .into_iter()
        .filter(|(m, h)| ok(m, *h))
        .collect();
    if verified.is_empty() {
        return Err(Refused::Unverified(String::new()));
    }
    prune_bitcoin(&mut upgrade, &verified);
    let path = path_to(reply, msg).ok_or(Refused::NotInReply)?;
    let mut out =
        Timestamp::new(reply.msg().to_vec()).map_err(|e| Refused::Limits(e.to_string()))?;
    let end = out
        .add_path(path)
        .map_err(|e| Refused::Limits(e.to_string()))?;
    end.merge(upgrade).map_err(|_| Refused::NotInReply)?;
    keepable(&out).map(Some)
}

/// Keeps the Bitcoin attestations whose `(message, height)` is in `keep`.
fn prune_bitcoin(ts: &mut Timestamp, keep: &[(Vec<u8>, u64)]) {
    let here: Vec<Attestation> = ts
        .attestations()
        .iter()
        .filter(|a| match a {
            Attestation::Bitcoin { height } => {
                !keep.iter().any(|(m, h)| m == ts.msg() && h == height)
            }
            _ => true,
        })
        .cloned()
        .collect();
    for a in &here {
        ts.remove_attestation(a);
    }
    let ops: Vec<Op> = ts.ops().map(|(op, _)| op.clone()).collect();
    for op in ops {
        if let Some(child) = ts.child_mut(&op) {
            prune_bitcoin(child, keep);
            if child.attestations().is_empty() && child.ops().len() == 0 {
                ts.remove_op(&op);
            }
        }
    }
}

/// The operations from `ts`'s message to a node whose message is `msg`.
fn path_to(ts: &Timestamp, msg: &[u8]) -> Option<Vec<Op>> {
    if ts.msg() == msg {
        return Some(Vec::new());
    }
    for (op, child) in ts.ops() {
        if let Some(mut rest) = path_to(child, msg) {
            rest.insert(0, op.clone());
            return Some(rest);
        }
    }
    None
}

/// The proof served for `commitment`: `ours` (our own complete proof,
/// rooted at the commitment) if any, then `sha256` to the leaf and the
/// proofs in `proofs` (serialized, rooted at the leaf) merged, smallest
/// first, each only if the whole still fits in [`MAX_SERVED_LEN`] bytes.
/// Proofs that do not decode, or that [`keepable`] refuses (kept by an
/// older version), are left out. `None`: nothing to serve.
pub fn served(commitment: &[u8], ours: Option<Timestamp>, proofs: &[&[u8]]) -> Option<Timestamp> {
    let mut ts = Timestamp::new(commitment.to_vec()).ok()?;
    let mut any = false;
    if let Some(ours) = ours {
        any = ts.merge(ours).is_ok();
    }
    let leaf = ots_proof::op::sha256(commitment);
    let mut decoded: Vec<(usize, Timestamp)> = Vec::new();
    for p in proofs {
        match Timestamp::deserialize(p, &leaf) {
            Ok(t) if keepable(&t).is_ok() => decoded.push((p.len(), t)),
            Ok(t) => {
                let why = keepable(&t)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                tracing::warn!(commitment = %hex::encode(commitment), why, "a stored upstream proof (kept by an older version) is beyond what is kept now: left out");
            }
            Err(e) => {
                tracing::error!(commitment = %hex::encode(commitment), error = %e, "a stored upstream proof does not decode: left out");
            }
        }
    }
    decoded.sort_by_key(|(len, _)| *len);
    for (_, t) in decoded {
        let mut candidate = ts.clone();
        let Ok(leaf_node) = candidate.add_op(Op::Sha256) else {
            continue;
        };
        if leaf_node.merge(t).is_err() {
            continue;
        }
        match candidate.serialize() {
            Ok(bytes) if bytes.len() <= MAX_SERVED_LEN => {
                ts = candidate;
                any = true;
            }
            // Debug only: this is on every GET of the commitment, and the
            // upstream proofs were each checked when they were kept.
            _ => {
                tracing::debug!(commitment = %hex::encode(commitment), "an upstream proof does not fit in the served proof: left out");
            }
        }
    }
    any.then_some(ts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ots_proof::op::sha256;

    fn reply_of(leaf: &[u8], uri: &str) -> (Timestamp, Vec<u8>) {
        let mut ts = Timestamp::new(leaf.to_vec()).unwrap();
        let end = ts
            .add_path([
                Op::Append(vec![1, 2]),
                Op::Sha256,
                Op::Prepend(vec![0, 0, 0, 9]),
            ])
            .unwrap();
        let commitment = end.msg().to_vec();
        end.add_attestation(Attestation::pending(uri).unwrap());
        (ts, commitment)
    }

    #[test]
    fn a_reply_keeps_its_pending_paths_only() {
        let leaf = sha256(b"c");
        let (mut reply, _) = reply_of(&leaf, "https://up.test");
        // A claimed Bitcoin attestation on the side is not kept.
        reply
            .add_op(Op::Sha256)
            .unwrap()
            .add_attestation(Attestation::Bitcoin { height: 1 });
        let kept = Timestamp::deserialize(&accept_reply(reply).unwrap(), &leaf).unwrap();
        assert!(bitcoin_attestations(&kept).is_empty());
        assert_eq!(pending_commitments(&kept).len(), 1);
        let mut bare = Timestamp::new(leaf.to_vec()).unwrap();
        bare.add_attestation(Attestation::Bitcoin { height: 3 });
        assert_eq!(accept_reply(bare), Err(Refused::NoPending));
    }

    #[test]
    fn a_completion_keeps_only_verified_bitcoin_attestations() {
        let leaf = sha256(b"c");
        let (reply, commitment) = reply_of(&leaf, "https://up.test");
        let mut upgrade = Timestamp::new(commitment.clone()).unwrap();
        let a = upgrade.add_op(Op::Sha256).unwrap();
        a.add_attestation(Attestation::Bitcoin { height: 10 });
        let good = a.msg().to_vec();
        upgrade
            .add_op(Op::Append(vec![5]))
            .unwrap()
            .add_attestation(Attestation::Bitcoin { height: 11 });
        // Only the first matches "our node".
        let ok = |m: &[u8], h: u64| m == good.as_slice() && h == 10;
        let done = complete(&reply, &commitment, upgrade.clone(), &ok)
            .unwrap()
            .unwrap();
        let done = Timestamp::deserialize(&done, &leaf).unwrap();
        assert_eq!(bitcoin_attestations(&done), vec![(good.clone(), 10)]);
        assert!(pending_commitments(&done).is_empty());
        // None verifies: refused; no Bitcoin attestation yet: not complete.
        assert!(matches!(
            complete(&reply, &commitment, upgrade, &|_: &[u8], _| false),
            Err(Refused::Unverified(_))
        ));
        let pending = Timestamp::new(commitment.clone()).unwrap();
        assert_eq!(complete(&reply, &commitment, pending, &ok), Ok(None));
        // An upgrade of a commitment that is not in the reply.
        let mut other = Timestamp::new(b"other".to_vec()).unwrap();
        other.add_attestation(Attestation::Bitcoin { height: 10 });
        assert_eq!(
            complete(&reply, b"other", other, &|_: &[u8], _| true),
            Err(Refused::NotInReply)
        );
    }

    /// A pending reply rooted at `leaf` with two appends of `n` bytes.
    fn padded(leaf: &[u8], n: usize, uri: &str) -> Timestamp {
        let mut ts = Timestamp::new(leaf.to_vec()).unwrap();
        for i in 0..2 {
            ts.add_path([Op::Append(vec![i; n]), Op::Sha256])
                .unwrap()
                .add_attestation(Attestation::pending(uri).unwrap());
        }
        ts
    }

    /// A reply of fewer than 10,000 bytes that decodes to megabytes: one
    /// append to a 4000-byte message, then 16 chains of `reverse` (a byte
    /// each, the message kept whole) from 4001-byte messages, each ending
    /// in a pending attestation.
    fn bomb(leaf: &[u8]) -> Timestamp {
        let mut ts = Timestamp::new(leaf.to_vec()).unwrap();
        let big = ts.add_op(Op::Append(vec![0xbb; 3968])).unwrap();
        for b in 0..16u8 {
            big.add_op(Op::Append(vec![b]))
                .unwrap()
                .add_path(std::iter::repeat_n(Op::Reverse, 180))
                .unwrap()
                .add_attestation(Attestation::pending("https://b.test").unwrap());
        }
        ts
    }

    #[test]
    fn a_reply_with_hundreds_of_commitments_to_poll_is_refused() {
        let leaf = sha256(b"c");
        let reply = |n: u16| {
            let mut ts = Timestamp::new(leaf.to_vec()).unwrap();
            for i in 0..n {
                ts.add_op(Op::Append(i.to_be_bytes().to_vec()))
                    .unwrap()
                    .add_attestation(Attestation::pending("http://x.test").unwrap());
            }
            ts
        };
        assert!(accept_reply(reply(MAX_PENDING_COMMITMENTS as u16)).is_ok());
        let many = reply(300);
        assert!(many.serialize().unwrap().len() <= MAX_KEPT_LEN);
        assert_eq!(
            accept_reply(many),
            Err(Refused::TooManyPending {
                count: 300,
                max: MAX_PENDING_COMMITMENTS
            })
        );
    }

    #[test]
    fn a_reply_holding_megabytes_of_messages_is_refused() {
        let leaf = sha256(b"c");
        let bomb = bomb(&leaf);
        let bytes = bomb.serialize().unwrap();
        assert!(bytes.len() <= MAX_KEPT_LEN, "{}", bytes.len());
        // Decoded, it holds over 11 MB of messages.
        let decoded = Timestamp::deserialize(&bytes, &leaf).unwrap();
        assert!(message_bytes(&decoded) > 11_000_000);
        assert!(matches!(
            accept_reply(decoded),
            Err(Refused::TooManyBytes {
                max: MAX_MESSAGE_BYTES,
                ..
            })
        ));
    }

    #[test]
    fn a_reply_too_deep_or_too_large_to_serve_is_refused() {
        let leaf = sha256(b"c");
        let mut deep = Timestamp::new(leaf.to_vec()).unwrap();
        deep.add_path(std::iter::repeat_n(Op::Reverse, MAX_KEPT_DEPTH))
            .unwrap()
            .add_attestation(Attestation::pending("https://a.test").unwrap());
        assert_eq!(
            accept_reply(deep),
            Err(Refused::TooDeep {
                depth: MAX_KEPT_DEPTH + 1,
                max: MAX_KEPT_DEPTH
            })
        );
        let mut ok = Timestamp::new(leaf.to_vec()).unwrap();
        ok.add_path(std::iter::repeat_n(Op::Reverse, MAX_KEPT_DEPTH - 1))
            .unwrap()
            .add_attestation(Attestation::pending("https://a.test").unwrap());
        assert!(accept_reply(ok).is_ok());
        // Three appends of 3330 bytes: over 9,999 bytes.
        let mut big = Timestamp::new(leaf.to_vec()).unwrap();
        for i in 0..3u8 {
            big.add_path([Op::Append(vec![i; 3330]), Op::Sha256])
                .unwrap()
                .add_attestation(Attestation::pending("https://a.test").unwrap());
        }
        assert!(matches!(
            accept_reply(big),
            Err(Refused::TooLarge {
                max: MAX_KEPT_LEN,
                ..
            })
        ));
    }

    #[test]
    fn the_served_proof_takes_the_smallest_proofs_that_fit() {
        let commitment = [3u8; 44];
        let leaf = sha256(&commitment);
        let big = padded(&leaf, 3000, "https://big.test");
        let bigger = padded(&leaf, 3100, "https://bigger.test");
        let small = padded(&leaf, 10, "https://small.test");
        let (big, bigger, small) = (
            keepable(&big).unwrap(),
            keepable(&bigger).unwrap(),
            keepable(&small).unwrap(),
        );
        // Together over 10,000 bytes: the two smallest fit, the third not.
        assert!(big.len() + bigger.len() + small.len() > MAX_SERVED_LEN);
        let ts = served(&commitment, None, &[&bigger, &big, &small]).unwrap();
        let bytes = ts.serialize().unwrap();
        assert!(bytes.len() <= MAX_SERVED_LEN, "{}", bytes.len());
        let mut uris: Vec<String> = ts
            .all_attestations()
            .into_iter()
            .map(|(_, a)| a.to_string())
            .collect();
        uris.sort();
        uris.dedup();
        assert_eq!(uris.len(), 2, "{uris:?}");
        assert!(uris[0].contains("/big.test") && uris[1].contains("/small.test"));
        // Our own proof is always served, whatever the upstreams'.
        let mut ours = Timestamp::new(commitment.to_vec()).unwrap();
        ours.add_path([Op::Append(vec![1; 3500]), Op::Sha256])
            .unwrap()
            .add_attestation(Attestation::Bitcoin { height: 5 });
        let ts = served(&commitment, Some(ours), &[&bigger, &big, &small]).unwrap();
        assert!(ts.serialize().unwrap().len() <= MAX_SERVED_LEN);
        let atts = ts.all_attestations();
        assert!(atts
            .iter()
            .any(|(_, a)| matches!(a, Attestation::Bitcoin { height: 5 })));
        assert!(atts
            .iter()
            .any(|(_, a)| a.to_string().contains("small.test")));
    }

    #[test]
    fn the_served_proof_starts_with_sha256_of_the_commitment() {
        let commitment = [3u8; 44];
        let leaf = sha256(&commitment);
        let (a, _) = reply_of(&leaf, "https://a.test");
        let (b, _) = reply_of(&leaf, "https://b.test");
        let (a, b) = (a.serialize().unwrap(), b.serialize().unwrap());
        let ts = served(&commitment, None, &[&a, &b, b"\xff\xff"]).unwrap();
        assert_eq!(ts.msg(), commitment);
        let leaf_node = ts.child(&Op::Sha256).unwrap();
        assert_eq!(leaf_node.msg(), leaf);
        assert_eq!(pending_commitments(&ts).len(), 1, "same path, merged");
        assert_eq!(ts.all_attestations().len(), 2);
        assert!(served(&commitment, None, &[]).is_none());
    }
}
