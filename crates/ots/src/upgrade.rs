//! Upgrading: completing pending attestations with what calendars (and the
//! local cache) now know. Only calendars on the whitelist are contacted,
//! unless the user names calendars explicitly.

use std::collections::BTreeSet;
use std::time::Duration;

use ots_calendar::{CalendarError, Client};
use ots_proof::{Attestation, Op, Timestamp};

use crate::cache::Cache;
use crate::log::Log;
use crate::whitelist::Whitelist;

/// Where to look for upgrades.
#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    /// Calendars to ask instead of those named in the proof (`-c`).
    pub calendars: Vec<String>,
    /// Calendars the proof may name that we will ask.
    pub whitelist: Whitelist,
    /// Per-request timeout.
    pub timeout: Duration,
    /// How calendars are reached (roots, extra CA file).
    pub client: Client,
}

/// Whether the timestamp has a Bitcoin attestation (and so can be verified
/// without a calendar).
pub fn is_complete(timestamp: &Timestamp) -> bool {
    timestamp
        .all_attestations()
        .iter()
        .any(|(_, a)| matches!(a, Attestation::Bitcoin { .. }))
}

fn attestation_set(timestamp: &Timestamp) -> BTreeSet<Attestation> {
    timestamp
        .all_attestations()
        .into_iter()
        .map(|(_, a)| a.clone())
        .collect()
}

/// Paths from the root to every node, root first.
fn node_paths(timestamp: &Timestamp) -> Vec<Vec<Op>> {
    let mut out = Vec::new();
    let mut stack: Vec<(Vec<Op>, &Timestamp)> = vec![(Vec::new(), timestamp)];
    while let Some((path, node)) = stack.pop() {
        for (op, child) in node.ops() {
            let mut p = path.clone();
            p.push(op.clone());
            stack.push((p, child));
        }
        out.push(path);
    }
    out
}

fn node_mut<'a>(root: &'a mut Timestamp, path: &[Op]) -> Option<&'a mut Timestamp> {
    let mut node = root;
    for op in path {
        node = node.child_mut(op)?;
    }
    Some(node)
}

/// One round of upgrading: every node against the cache, then, unless that
/// made it complete or it already was, every pending attestation against
/// its calendar. Returns whether anything new was added.
pub async fn upgrade_once(
    timestamp: &mut Timestamp,
    cache: &Cache,
    options: &UpgradeOptions,
    log: &Log,
) -> bool {
    let mut known = attestation_set(timestamp);
    let before = known.len();
    for path in node_paths(timestamp) {
        if let Some(node) = node_mut(timestamp, &path) {
            if let Some(cached) = cache.get(node.msg()) {
                let _ = node.merge(cached);
            }
        }
    }
    known = attestation_set(timestamp);
    let mut changed = known.len() > before;
    if changed {
        log.info(format!(
            "Got {} attestation(s) from cache",
            known.len() - before
        ));
    }
    // As the reference: calendars are asked only while the timestamp is
    // incomplete (a complete proof is verified without telling anyone).
    if is_complete(timestamp) {
        return changed;
    }

    let pending: Vec<(Vec<Op>, String, Vec<u8>)> = node_paths(timestamp)
        .into_iter()
        .filter_map(|path| {
            let node = timestamp.follow(&path)?;
            let uris: Vec<_> = node
                .attestations()
                .iter()
                .filter_map(|a| match a {
                    Attestation::Pending { uri } => Some(uri.clone()),
                    _ => None,
                })
                .collect();
            let msg = node.msg().to_vec();
            Some(
                uris.into_iter()
                    .map(move |u| (path.clone(), u, msg.clone())),
            )
        })
        .flatten()
        .collect();

    for (path, uri, commitment) in pending {
        let calendars = if !options.calendars.is_empty() {
            options.calendars.clone()
        } else if options.whitelist.contains(&uri) {
            vec![uri.clone()]
        } else {
            log.warn(format!(
                "Ignoring attestation from calendar {uri}: Calendar not in whitelist"
            ));
            continue;
        };
        for url in calendars {
            log.debug(format!(
                "Checking calendar {url} for {}",
                hex::encode(&commitment)
            ));
            let reply = match options.client.calendar(&url) {
                Ok(calendar) => {
                    calendar
                        .with_timeout(options.timeout)
                        .get_timestamp(&commitment)
                        .await
                }
                Err(e) => Err(e),
            };
            let reply = match reply {
                Ok(reply) => reply,
                Err(CalendarError::NotFound { reason, .. }) => {
                    log.warn(format!("Calendar {uri}: {reason}"));
                    continue;
                }
                Err(e) => {
                    log.warn(e.to_string());
                    continue;
                }
            };
            let theirs = attestation_set(&reply);
            log.info(format!("Got {} attestation(s) from {url}", theirs.len()));
            let new: Vec<_> = theirs.difference(&known).cloned().collect();
            if new.is_empty() {
                continue;
            }
            changed = true;
            known.extend(new);
            if let Err(e) = cache.merge(&reply) {
                log.debug(format!("Could not write the cache: {e}"));
            }
            if let Some(node) = node_mut(timestamp, &path) {
                let _ = node.merge(reply);
            }
        }
    }
    changed
}

/// Upgrades until complete (with `wait`, polling every `interval`) or once.
pub async fn upgrade(
    timestamp: &mut Timestamp,
    cache: &Cache,
    options: &UpgradeOptions,
    wait: Option<Duration>,
    log: &Log,
) -> bool {
    let mut changed = false;
    loop {
        let found = upgrade_once(timestamp, cache, options, log).await;
        changed |= found;
        match wait {
            _ if is_complete(timestamp) => return changed,
            None => return changed,
            Some(_) if found => continue,
            Some(interval) => {
                log.info(format!(
                    "Timestamp not complete; waiting {} sec before trying again",
                    interval.as_secs()
                ));
                tokio::time::sleep(interval).await;
            }
        }
    }
}
