//! The upgrade poller of one upstream: asks it, in journal order, for the
//! commitments of the pending attestations in its replies, and records a
//! complete proof once one reaches Bitcoin, each Bitcoin attestation
//! checked against our own node's header at its height when we have a
//! node. Upstreams complete in order, so a pass stops after a few
//! commitments not complete yet; each of those waits longer (doubling,
//! capped) before it is asked again, so a stuck one does not hold up the
//! rest.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ots_calendar::{error_chain, Calendar, CalendarError};
use ots_proof::Timestamp;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{proof, unix_now, Upstreams};
use crate::status::PendingIndex;
use crate::store::leaf;

/// Open replies looked at per pass.
pub const UPGRADE_BATCH: usize = 256;
/// Commitments found not complete after which a pass stops.
pub const UPGRADE_MISSES_PER_PASS: usize = 4;
/// A pending reply waits at most this many poll intervals between asks.
pub const UPGRADE_BACKOFF_FACTOR: u32 = 32;
/// ... and never more than this.
pub const MAX_UPGRADE_BACKOFF: Duration = Duration::from_secs(3600);
/// The most Bitcoin attestations of one upgrade checked against our node.
pub const MAX_CHECKED_ATTESTATIONS: usize = 8;

/// What asking for one commitment gave.
enum Asked {
    /// A complete proof, serialized, rooted at the leaf.
    Complete(Vec<u8>),
    /// Not complete yet.
    NotYet,
    /// Refused or failed, with why.
    Failed(String),
}

/// Runs the poller of upstream `idx` until `stop`.
pub async fn run(
    up: Arc<Upstreams>,
    idx: usize,
    calendar: Calendar,
    node: Option<Arc<ots_bitcoin::RpcClient>>,
    pending: Arc<PendingIndex>,
    mut stop: watch::Receiver<bool>,
) {
    let url = up.config.urls[idx].clone();
    let poll = up.config.poll;
    let cap = poll
        .saturating_mul(UPGRADE_BACKOFF_FACTOR)
        .min(MAX_UPGRADE_BACKOFF)
        .max(poll);
    let mut waits: HashMap<u64, (u32, Instant)> = HashMap::new();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(poll) => {}
        }
        let mut misses = 0;
        let mut from = 0;
        // A batch at a time, past the ones waiting out their backoff, so
        // that commitments an upstream lost do not hide the later ones.
        'pass: loop {
            let rows = match up.db.open_replies(&url, from, UPGRADE_BATCH) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(upstream = %url, error = %e, "upstream: reading open replies");
                    break;
                }
            };
            let Some(&(last, _)) = rows.last() else { break };
            from = last + 1;
            for (position, leaf_bytes) in rows {
                let now = Instant::now();
                if waits.get(&position).is_some_and(|w| w.1 > now) {
                    continue;
                }
                let asked = tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    a = ask(&up, &url, &calendar, node.as_deref(), &leaf_bytes) => a,
                };
                match asked {
                    Asked::Complete(bytes) => {
                        waits.remove(&position);
                        record(&up, idx, &pending, position, leaf_bytes, bytes).await;
                    }
                    Asked::NotYet | Asked::Failed(_) => {
                        if let Asked::Failed(message) = asked {
                            tracing::warn!(upstream = %url, position, error = %message, "upstream upgrade failed");
                            up.error(idx, message);
                        }
                        let w = waits.entry(position).or_insert((0, now));
                        w.0 = w.0.saturating_add(1);
                        w.1 = now + poll.saturating_mul(1u32 << w.0.min(20)).min(cap);
                        misses += 1;
                        if misses >= UPGRADE_MISSES_PER_PASS {
                            break 'pass;
                        }
                    }
                }
            }
        }
    }
}

/// Asks `calendar` for the commitments of its reply to `leaf`.
async fn ask(
    up: &Upstreams,
    url: &str,
    calendar: &Calendar,
    node: Option<&ots_bitcoin::RpcClient>,
    leaf: &[u8; 32],
) -> Asked {
    let reply = match up.db.replies(leaf) {
        Ok(rows) => rows.into_iter().find(|r| r.url == url && !r.complete),
        Err(e) => return Asked::Failed(e.to_string()),
    };
    let Some(reply) = reply else {
        return Asked::Failed("its reply is missing from the database".into());
    };
    let reply = match Timestamp::deserialize(&reply.proof, leaf) {
        Ok(t) => t,
        Err(e) => return Asked::Failed(format!("its stored reply does not decode: {e}")),
    };
    let mut result = Asked::NotYet;
    for msg in proof::pending_commitments(&reply) {
        let upgrade = match calendar.get_timestamp(&msg).await {
            Ok(t) => t,
            Err(CalendarError::NotFound { .. }) => continue,
            Err(e) => {
                result = Asked::Failed(error_chain(&e));
                continue;
            }
        };
        let verified = verified(node, &upgrade).await;
        let verified = match verified {
            Ok(v) => v,
            Err(e) => {
                result = Asked::Failed(e);
                continue;
            }
        };
        let ok = |m: &[u8], h: u64| verified.iter().any(|(vm, vh)| vm == m && *vh == h);
        match proof::complete(&reply, &msg, upgrade, &ok) {
            Ok(Some(bytes)) => return Asked::Complete(bytes),
            Ok(None) => {}
            Err(e) => result = Asked::Failed(format!("calendar {url}: proof refused: {e}")),
        }
    }
    result
}

/// The Bitcoin attestations of `upgrade` worth checking: those whose
/// message can be a merkle root at all (32 bytes), each once, the first
/// [`MAX_CHECKED_ATTESTATIONS`] of them. The rest are dropped unchecked:
/// each one checked costs our node two requests, and an upstream's upgrade
/// has one or a few (a 10,000-byte reply could name hundreds).
pub fn to_check(upgrade: &Timestamp) -> Vec<(Vec<u8>, u64)> {
    let mut out: Vec<(Vec<u8>, u64)> = Vec::new();
    for (msg, height) in proof::bitcoin_attestations(upgrade) {
        if msg.len() == 32 && !out.iter().any(|(m, h)| *m == msg && *h == height) {
            out.push((msg, height));
            if out.len() == MAX_CHECKED_ATTESTATIONS {
                break;
            }
        }
    }
    out
}

/// The Bitcoin attestations of `upgrade` that hold ([`to_check`]): against
/// `node`'s header at their height, or, without a node, all of them (our
/// clients check the rest).
async fn verified(
    node: Option<&ots_bitcoin::RpcClient>,
    upgrade: &Timestamp,
) -> Result<Vec<(Vec<u8>, u64)>, String> {
    let candidates = to_check(upgrade);
    let Some(node) = node else {
        return Ok(candidates);
    };
    let mut out = Vec::new();
    for (msg, height) in candidates {
        let hash = node
            .block_hash(height)
            .await
            .map_err(|e| format!("our Bitcoin node: {e}"))?;
        let Some(hash) = hash else { continue };
        let header = node
            .block_header(&hash)
            .await
            .map_err(|e| format!("our Bitcoin node: {e}"))?;
        if let Some(header) = header {
            if ots_proof::verify::verify_bitcoin_header(&msg, &header).is_ok() {
                out.push((msg, height));
            }
        }
    }
    Ok(out)
}

/// Stores a complete proof and takes the commitment out of the pending
/// index.
async fn record(
    up: &Arc<Upstreams>,
    idx: usize,
    pending: &PendingIndex,
    position: u64,
    leaf_bytes: [u8; 32],
    bytes: Vec<u8>,
) {
    let url = up.config.urls[idx].clone();
    let db = up.db.clone();
    let u = url.clone();
    let written =
        tokio::task::spawn_blocking(move || db.record_complete(&u, position, &leaf_bytes, &bytes))
            .await;
    match written {
        Ok(Ok(())) => {
            up.mark_completed(position);
            if let Ok(Some(record)) = up.journal.get(position) {
                if leaf(&record) == leaf_bytes {
                    pending.remove_at(&record, position);
                }
            }
            up.update(idx, |s| {
                s.last_success = Some(unix_now());
                s.open = s.open.saturating_sub(1);
                s.completed += 1;
            });
            tracing::info!(upstream = %url, position, "complete proof from upstream");
        }
        Ok(Err(e)) => {
            tracing::error!(upstream = %url, position, error = %e, "upstream: recording a complete proof failed");
            up.error(idx, e.to_string());
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ots_proof::{Attestation, Op};

    #[test]
    fn only_a_few_bitcoin_attestations_of_an_upgrade_are_checked() {
        let mut ts = Timestamp::new(vec![1; 32]).unwrap();
        // Hundreds at distinct heights, each on a 32-byte message.
        for i in 0..300u32 {
            ts.add_path([Op::Append(i.to_be_bytes().to_vec()), Op::Sha256])
                .unwrap()
                .add_attestation(Attestation::Bitcoin {
                    height: u64::from(i),
                });
        }
        assert_eq!(proof::bitcoin_attestations(&ts).len(), 300);
        assert_eq!(to_check(&ts).len(), MAX_CHECKED_ATTESTATIONS);
        // Not on a 32-byte message: never a merkle root, never checked.
        let mut short = Timestamp::new(vec![1; 20]).unwrap();
        short.add_attestation(Attestation::Bitcoin { height: 1 });
        assert!(to_check(&short).is_empty());
    }
}
