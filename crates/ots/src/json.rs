//! The `--json` documents of `ots info` and `ots verify`, for scripts.
//!
//! The tree is a flat list of nodes in serialization order (depth first),
//! each naming its parent and the operation from it, rather than nested
//! objects: a proof is up to 256 nodes deep, deeper than common JSON
//! parsers nest by default (serde_json stops at 128).

use ots_proof::{Attestation, DetachedTimestampFile, Op, Timestamp};
use serde_json::{json, Value};

use crate::verify::{utc_date, Check, Outcome};

/// The version of these documents' layout, bumped on incompatible change.
pub const FORMAT_VERSION: u64 = 1;

/// An attestation: `type` and its fields.
pub fn attestation(a: &Attestation) -> Value {
    match a {
        Attestation::Pending { uri } => json!({"type": "pending", "uri": uri}),
        Attestation::Bitcoin { height } => json!({"type": "bitcoin", "height": height}),
        Attestation::Litecoin { height } => json!({"type": "litecoin", "height": height}),
        Attestation::Ethereum { height } => json!({"type": "ethereum", "height": height}),
        Attestation::Unknown { tag, payload } => json!({
            "type": "unknown",
            "tag": hex::encode(tag),
            "payload": hex::encode(payload),
        }),
    }
}

/// An operation: its name and, for append and prepend, its argument.
pub fn op(op: &Op) -> Value {
    match op.argument() {
        Some(arg) => json!({"name": op.name(), "argument": hex::encode(arg)}),
        None => json!({"name": op.name()}),
    }
}

/// The tree as a flat list of nodes (`id`, `parent`, `op`, `msg`,
/// `attestations`), and every attestation with the `node` and `msg` it is
/// made on, in the same order.
pub fn tree(timestamp: &Timestamp) -> (Vec<Value>, Vec<Value>) {
    let mut nodes = Vec::new();
    let mut attestations = Vec::new();
    let mut stack: Vec<(&Timestamp, Option<usize>, Option<&Op>)> = vec![(timestamp, None, None)];
    while let Some((node, parent, via)) = stack.pop() {
        let id = nodes.len();
        let here: Vec<Value> = node.attestations().iter().map(attestation).collect();
        for a in &here {
            let mut a = a.clone();
            a["node"] = json!(id);
            a["msg"] = json!(hex::encode(node.msg()));
            attestations.push(a);
        }
        nodes.push(json!({
            "id": id,
            "parent": parent,
            "op": via.map(op),
            "msg": hex::encode(node.msg()),
            "attestations": here,
        }));
        let children: Vec<_> = node.ops().collect();
        for (child_op, child) in children.into_iter().rev() {
            stack.push((child, Some(id), Some(child_op)));
        }
    }
    (nodes, attestations)
}

/// `ots info --json`: the file's hash and digest, the tree, the
/// attestations and the Bitcoin heights attested (lowest first).
pub fn info(proof: &DetachedTimestampFile) -> Value {
    let (nodes, attestations) = tree(proof.timestamp());
    let heights = crate::verify::bitcoin_attestations(proof.timestamp())
        .into_iter()
        .map(|(_, h)| h)
        .collect::<Vec<_>>();
    json!({
        "format_version": FORMAT_VERSION,
        "file_hash": proof.hash_op().name(),
        "file_digest": hex::encode(proof.file_digest()),
        "tree": nodes,
        "attestations": attestations,
        "bitcoin_heights": heights,
    })
}

/// One Bitcoin attestation's check: `result` is `verified` (with the block
/// `time`, unix seconds, and `date`), `no_such_block` (with `best`),
/// `mismatch` or `error` (with `reason`), or `not_checked`.
pub fn check(c: &Check) -> Value {
    let mut v = json!({"type": "bitcoin", "height": c.height, "msg": hex::encode(&c.msg)});
    match &c.outcome {
        None => v["result"] = json!("not_checked"),
        Some(Ok(Outcome::Verified { time, .. })) => {
            v["result"] = json!("verified");
            v["time"] = json!(time);
            v["date"] = json!(utc_date(*time));
        }
        Some(Ok(Outcome::NoSuchBlock { best, .. })) => {
            v["result"] = json!("no_such_block");
            v["best"] = json!(best);
        }
        Some(Ok(Outcome::Mismatch { reason, .. })) => {
            v["result"] = json!("mismatch");
            v["reason"] = json!(reason);
        }
        Some(Err(reason)) => {
            v["result"] = json!("error");
            v["reason"] = json!(reason);
        }
    }
    v
}

/// `ots verify --json`: everything `info` says, each Bitcoin check, and the
/// `result`: `verified` with the `height` and block `time` of the earliest
/// attestation that checks out, or not, with the `reason`.
pub fn verify(proof: &DetachedTimestampFile, checks: &[Check], failure: Option<&str>) -> Value {
    let mut v = info(proof);
    v["checks"] = json!(checks.iter().map(check).collect::<Vec<_>>());
    let verified = checks
        .iter()
        .find_map(|c| c.verified_time().map(|t| (c.height, t)));
    v["result"] = match (verified, failure) {
        (Some((height, time)), None) => json!({
            "verified": true,
            "height": height,
            "time": time,
            "date": utc_date(time),
        }),
        (_, Some(reason)) => json!({"verified": false, "reason": reason}),
        (None, None) => json!({"verified": false, "reason": "no Bitcoin attestation verified"}),
    };
    v
}
