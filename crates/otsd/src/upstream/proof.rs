//! What an upstream sends, judged before it is kept: a submit reply keeps
//! only its paths to pending attestations (anything it claims beyond that
//! is not ours to vouch for), and an upgrade becomes a complete proof only
//! through Bitcoin attestations, each checked against our own node when
//! there is one. The proofs served are built here too: every upstream
//! reply of a commitment merged under it, after its `sha256` (the leaf
//! that was submitted, as in our own proofs).

use ots_proof::{Attestation, Op, Timestamp};

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

/// A submit reply as kept: its paths to pending attestations, serialized.
pub fn accept_reply(mut reply: Timestamp) -> Result<Vec<u8>, Refused> {
    if !prune(&mut reply, &|a| matches!(a, Attestation::Pending { .. })) {
        return Err(Refused::NoPending);
    }
    reply
        .serialize()
        .map_err(|e| Refused::Limits(e.to_string()))
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
    out.serialize()
        .map(Some)
        .map_err(|e| Refused::Limits(e.to_string()))
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

/// The proof served for `commitment`: `sha256` to the leaf, then every
/// proof in `proofs` (serialized, rooted at the leaf) merged. Proofs that
/// do not decode are left out (the database checked them on the way in).
pub fn served(commitment: &[u8], proofs: &[&[u8]]) -> Option<Timestamp> {
    let mut ts = Timestamp::new(commitment.to_vec()).ok()?;
    let leaf_node = ts.add_op(Op::Sha256).ok()?;
    let leaf = leaf_node.msg().to_vec();
    let mut any = false;
    for p in proofs {
        match Timestamp::deserialize(p, &leaf) {
            Ok(t) => {
                any |= leaf_node.merge(t).is_ok();
            }
            Err(e) => {
                tracing::error!(commitment = %hex::encode(commitment), error = %e, "a stored upstream proof does not decode: left out");
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

    #[test]
    fn the_served_proof_starts_with_sha256_of_the_commitment() {
        let commitment = [3u8; 44];
        let leaf = sha256(&commitment);
        let (a, _) = reply_of(&leaf, "https://a.test");
        let (b, _) = reply_of(&leaf, "https://b.test");
        let (a, b) = (a.serialize().unwrap(), b.serialize().unwrap());
        let ts = served(&commitment, &[&a, &b, b"\xff\xff"]).unwrap();
        assert_eq!(ts.msg(), commitment);
        let leaf_node = ts.child(&Op::Sha256).unwrap();
        assert_eq!(leaf_node.msg(), leaf);
        assert_eq!(pending_commitments(&ts).len(), 1, "same path, merged");
        assert_eq!(ts.all_attestations().len(), 2);
        assert!(served(&commitment, &[]).is_none());
    }
}
