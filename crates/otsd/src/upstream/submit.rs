//! The submitter of one upstream: follows the journal from the upstream's
//! cursor, submits each commitment's leaf, and records each accepted reply
//! with the new cursor in one transaction. Failures are retried with
//! exponential backoff, one request at a time while the upstream fails;
//! after [`MAX_SUBMIT_ATTEMPTS`] a commitment counts as given up by this
//! upstream (for the fallback) and is still retried, at the longest
//! backoff, so a calendar without a wallet loses nothing to an outage.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ots_calendar::{error_chain, Calendar};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{proof, unix_now, Upstreams};
use crate::metrics::upstream::Outcome;
use crate::store::leaf;

/// How often the journal is looked at for new commitments (the aggregator
/// is not made to wait on us: we follow it).
pub const JOURNAL_POLL: Duration = Duration::from_millis(100);
/// Most requests in flight to one upstream.
pub const MAX_IN_FLIGHT: usize = 16;
/// Attempts after which a commitment counts as given up by an upstream.
pub const MAX_SUBMIT_ATTEMPTS: u32 = 5;
/// First retry delay; doubled per attempt.
pub const SUBMIT_BACKOFF: Duration = Duration::from_millis(500);
/// Longest retry delay.
pub const MAX_SUBMIT_BACKOFF: Duration = Duration::from_secs(300);
/// Commitments held in memory per upstream; past it the journal is read
/// again later (from the cursor on, nothing is skipped).
pub const MAX_QUEUED: usize = 100_000;
/// Journal records read at a time.
pub const READ_CHUNK: usize = 4096;

/// The delay before attempt `n + 1`.
pub fn backoff(n: u32) -> Duration {
    SUBMIT_BACKOFF
        .saturating_mul(1u32 << n.min(20))
        .min(MAX_SUBMIT_BACKOFF)
}

struct Try {
    leaf: [u8; 32],
    attempts: u32,
    due: Instant,
}

/// Runs the submitter of upstream `idx` until `stop`.
pub async fn run(
    up: Arc<Upstreams>,
    idx: usize,
    calendar: Calendar,
    mut stop: watch::Receiver<bool>,
) {
    let url = up.config.urls[idx].clone();
    let mut next = match up.db.cursor(&url) {
        Ok(Some(c)) => c,
        _ => up.journal.durable_len(),
    };
    let mut todo: BTreeMap<u64, Try> = BTreeMap::new();
    let mut failing: u32 = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let len = up.journal.durable_len();
        while next < len && todo.len() < MAX_QUEUED {
            let records = match up.journal.read_range(next, READ_CHUNK) {
                Ok(r) if !r.is_empty() => r,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(upstream = %url, position = next, error = %e, "upstream: reading the journal");
                    break;
                }
            };
            let now = Instant::now();
            for (i, record) in records.iter().enumerate() {
                let position = next + i as u64;
                let leaf = leaf(record);
                // A reply recorded before a restart is not asked for again.
                if !up.db.has_reply(&leaf, &url).unwrap_or(false) {
                    todo.insert(
                        position,
                        Try {
                            leaf,
                            attempts: 0,
                            due: now,
                        },
                    );
                }
            }
            next += records.len() as u64;
        }
        up.update(idx, |s| {
            s.backlog = todo.len() as u64 + len.saturating_sub(next)
        });
        let now = Instant::now();
        let limit = if failing == 0 { MAX_IN_FLIGHT } else { 1 };
        let batch: Vec<(u64, [u8; 32])> = todo
            .iter()
            .filter(|(_, t)| t.due <= now)
            .take(limit)
            .map(|(p, t)| (*p, t.leaf))
            .collect();
        if batch.is_empty() {
            let wait = todo
                .values()
                .map(|t| t.due.saturating_duration_since(now))
                .min()
                .map_or(JOURNAL_POLL, |d| d.min(JOURNAL_POLL));
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let mut set = tokio::task::JoinSet::new();
        for (position, leaf) in batch {
            let calendar = calendar.clone();
            set.spawn(async move {
                let asked = Instant::now();
                let reply = calendar.submit(&leaf).await;
                (position, leaf, reply, asked.elapsed())
            });
        }
        let mut accepted = Vec::new();
        let mut last_error = None;
        loop {
            let joined = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                j = set.join_next() => j,
            };
            let Some(joined) = joined else { break };
            let Ok((position, leaf, result, elapsed)) = joined else {
                continue;
            };
            let outcome = match result {
                Err(e) => {
                    let outcome = Outcome::of_error(&e);
                    let answered = (outcome == Outcome::Refused).then_some(elapsed);
                    up.count(idx, outcome, answered);
                    Err(error_chain(&e))
                }
                Ok(ts) => {
                    let kept = proof::accept_reply(ts);
                    let counted = match kept {
                        Ok(_) => Outcome::Accepted,
                        Err(_) => Outcome::Refused,
                    };
                    up.count(idx, counted, Some(elapsed));
                    kept.map_err(|e| format!("calendar {url}: refused: {e}"))
                }
            };
            match outcome {
                Ok(bytes) => accepted.push((position, leaf, bytes)),
                Err(message) => {
                    if let Some(t) = todo.get_mut(&position) {
                        t.attempts += 1;
                        t.due = Instant::now() + backoff(t.attempts);
                        if t.attempts == MAX_SUBMIT_ATTEMPTS {
                            tracing::warn!(upstream = %url, position, "upstream gave no usable reply after {MAX_SUBMIT_ATTEMPTS} attempts: counted as given up (still retried)");
                            up.give_up(position, idx, true);
                        }
                    }
                    last_error = Some(message);
                }
            }
        }
        if let Some(message) = last_error {
            if failing == 0 {
                tracing::warn!(upstream = %url, error = %message, "upstream submission failed; retrying with backoff");
            }
            up.error(idx, message);
        }
        if accepted.is_empty() {
            failing = failing.saturating_add(1);
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(backoff(failing)) => {}
            }
            continue;
        }
        if failing > 0 {
            tracing::info!(upstream = %url, "upstream accepts submissions again");
        }
        failing = 0;
        for (position, _, _) in &accepted {
            todo.remove(position);
        }
        let cursor = todo.keys().next().copied().unwrap_or(next).min(next);
        let db = up.db.clone();
        let (u, rows) = (url.clone(), accepted);
        let written = tokio::task::spawn_blocking(move || {
            let r = db.record_replies(&u, &rows, cursor);
            (r, rows)
        })
        .await;
        match written {
            Ok((Ok(()), rows)) => {
                let n = rows.len() as u64;
                for (position, _, _) in &rows {
                    up.give_up(*position, idx, false);
                }
                up.update(idx, |s| {
                    s.last_success = Some(unix_now());
                    s.open += n;
                });
            }
            Ok((Err(e), rows)) => {
                // Not recorded: submitted again (the only case of a second
                // submission of an answered commitment).
                tracing::error!(upstream = %url, error = %e, "upstream: recording replies failed; they will be asked for again");
                up.error(idx, e.to_string());
                let now = Instant::now();
                for (position, leaf, _) in rows {
                    todo.insert(
                        position,
                        Try {
                            leaf,
                            attempts: 0,
                            due: now + MAX_SUBMIT_BACKOFF.min(Duration::from_secs(5)),
                        },
                    );
                }
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), SUBMIT_BACKOFF);
        assert_eq!(backoff(1), SUBMIT_BACKOFF * 2);
        assert_eq!(backoff(3), SUBMIT_BACKOFF * 8);
        assert_eq!(backoff(40), MAX_SUBMIT_BACKOFF);
    }
}
