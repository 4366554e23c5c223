//! The `--json` documents of `ots info` and `ots verify`, for scripts.
//!
//! The tree is a flat list of nodes in serialization order (depth first),
//! each naming its parent and the operation from it, rather than nested
//! objects: a proof is up to 256 nodes deep, deeper than common JSON
//! parsers nest by default (serde_json stops at 128). Documents are
//! written as they are made, a node at a time, so their cost in memory is
//! that of one node, not of the whole tree.

use std::io::Write;

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

/// Calls `visit(id, parent, op, node)` for every node of the tree, in
/// serialization order (depth first), ids counting from 0 at the root.
fn walk<'a>(
    timestamp: &'a Timestamp,
    mut visit: impl FnMut(usize, Option<usize>, Option<&'a Op>, &'a Timestamp) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut next = 0;
    let mut stack: Vec<(&Timestamp, Option<usize>, Option<&Op>)> = vec![(timestamp, None, None)];
    while let Some((node, parent, via)) = stack.pop() {
        let id = next;
        next += 1;
        visit(id, parent, via, node)?;
        let children: Vec<_> = node.ops().collect();
        for (child_op, child) in children.into_iter().rev() {
            stack.push((child, Some(id), Some(child_op)));
        }
    }
    Ok(())
}

/// Writes `items` as a JSON array, one at a time (a hostile proof's tree
/// is never held as JSON values all at once).
fn array<'a, W: Write>(
    out: &mut W,
    timestamp: &'a Timestamp,
    mut items: impl FnMut(usize, Option<usize>, Option<&'a Op>, &'a Timestamp) -> Vec<Value>,
) -> std::io::Result<()> {
    out.write_all(b"[")?;
    let mut first = true;
    walk(timestamp, |id, parent, via, node| {
        for item in items(id, parent, via, node) {
            if !first {
                out.write_all(b",")?;
            }
            first = false;
            serde_json::to_writer(&mut *out, &item)?;
        }
        Ok(())
    })?;
    out.write_all(b"]")
}

/// The members of `ots info --json`, without the closing brace.
fn write_info_members<W: Write>(out: &mut W, proof: &DetachedTimestampFile) -> std::io::Result<()> {
    let heights = crate::verify::bitcoin_attestations(proof.timestamp())
        .into_iter()
        .map(|(_, h)| h)
        .collect::<Vec<_>>();
    write!(
        out,
        "{{\"format_version\":{FORMAT_VERSION},\"file_hash\":{},\"file_digest\":{},\"bitcoin_heights\":{},\"tree\":",
        json!(proof.hash_op().name()),
        json!(hex::encode(proof.file_digest())),
        json!(heights),
    )?;
    array(out, proof.timestamp(), |id, parent, via, node| {
        vec![json!({
            "id": id,
            "parent": parent,
            "op": via.map(op),
            "msg": hex::encode(node.msg()),
            "attestations": node.attestations().iter().map(attestation).collect::<Vec<_>>(),
        })]
    })?;
    out.write_all(b",\"attestations\":")?;
    array(out, proof.timestamp(), |id, _, _, node| {
        node.attestations()
            .iter()
            .map(|a| {
                let mut a = attestation(a);
                a["node"] = json!(id);
                a["msg"] = json!(hex::encode(node.msg()));
                a
            })
            .collect()
    })
}

/// `ots info --json`: the file's hash and digest, the Bitcoin heights
/// attested (lowest first), the tree as a flat list of nodes (`id`,
/// `parent`, `op`, `msg`, `attestations`), and every attestation with the
/// `node` and `msg` it is made on, in the same order. Written as it is
/// made, one node at a time, followed by a newline.
pub fn write_info<W: Write>(out: &mut W, proof: &DetachedTimestampFile) -> std::io::Result<()> {
    write_info_members(out, proof)?;
    out.write_all(b"}\n")
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

/// `ots verify --json`: everything `info` says, each Bitcoin check
/// (`checks`), and the `result`: `verified` with the `height` and block
/// `time` of the earliest attestation that checks out, or not, with the
/// `reason`.
pub fn write_verify<W: Write>(
    out: &mut W,
    proof: &DetachedTimestampFile,
    checks: &[Check],
    failure: Option<&str>,
) -> std::io::Result<()> {
    write_info_members(out, proof)?;
    out.write_all(b",\"checks\":[")?;
    for (i, c) in checks.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, &check(c))?;
    }
    let verified = checks
        .iter()
        .find_map(|c| c.verified_time().map(|t| (c.height, t)));
    let result = match (verified, failure) {
        (Some((height, time)), None) => json!({
            "verified": true,
            "height": height,
            "time": time,
            "date": utc_date(time),
        }),
        (_, Some(reason)) => json!({"verified": false, "reason": reason}),
        (None, None) => json!({"verified": false, "reason": "no Bitcoin attestation verified"}),
    };
    writeln!(out, "],\"result\":{result}}}")
}
