//! Upgrading: completing pending attestations with what calendars (and the
//! local cache) now know, for one proof or many at once. Only calendars on
//! the whitelist are contacted, unless the user names calendars explicitly.
//!
//! One pass over a batch of proofs:
//!
//! 1. every node of every proof is looked up in the cache;
//! 2. then, in rounds, every pending attestation anywhere in the tree of
//!    every proof not yet complete is gathered, keyed by (calendar,
//!    commitment): proofs that share a commitment and calendar (files
//!    stamped together, or the same proof twice) cost one request, and a
//!    pair already asked in this pass is not asked again;
//! 3. each reply is merged into every node of every proof with that
//!    commitment. A reply may bring new pending attestations (a private
//!    calendar or an aggregator pointing at the calendars it forwarded to:
//!    a chain), so the rounds go on while replies bring something new and
//!    some incomplete proof has a whitelisted pending attestation not yet
//!    asked, at most [`MAX_FOLLOW_ROUNDS`] rounds and
//!    [`MAX_REQUESTS_PER_PASS`] requests.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use ots_calendar::{CalendarError, Client};
use ots_proof::{Attestation, Op, Timestamp};

use crate::cache::Cache;
use crate::log::Log;
use crate::progress::RequestBar;
use crate::whitelist::Whitelist;

/// Most rounds of asking in one pass: how long a chain of calendars one
/// run follows (client → aggregator → private calendar → public calendar
/// is three; the rest is room). Each round asks only what the one before
/// brought.
pub const MAX_FOLLOW_ROUNDS: usize = 8;
/// Most requests in one pass over all the proofs given: a bound on what a
/// hostile calendar's replies (each up to 10,000 bytes of new pending
/// attestations on whitelisted hosts) can make us send.
pub const MAX_REQUESTS_PER_PASS: usize = 10_000;
/// Requests in flight at once.
pub const MAX_CONCURRENT_REQUESTS: usize = 8;

/// Where to look for upgrades.
#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    /// Calendars to ask instead of those named in the proof (`-c`).
    pub calendars: Vec<String>,
    /// Calendars the proof may name that we will ask.
    pub whitelist: Whitelist,
    /// Per-request timeout.
    pub timeout: Duration,
    /// How calendars are reached (roots, extra CA file, proxy).
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

/// Every (message, attestation) pair of the tree: an attestation the
/// proof already has, on a new message, is news too (a calendar pointing
/// at its own pending attestation on another commitment).
fn attestation_set(timestamp: &Timestamp) -> BTreeSet<(Vec<u8>, Attestation)> {
    timestamp
        .all_attestations()
        .into_iter()
        .map(|(m, a)| (m.to_vec(), a.clone()))
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

/// Merges `reply` (a timestamp of `commitment`) into every node of
/// `timestamp` whose message is `commitment`.
fn merge_at(timestamp: &mut Timestamp, commitment: &[u8], reply: &Timestamp) {
    let paths: Vec<Vec<Op>> = node_paths(timestamp)
        .into_iter()
        .filter(|p| timestamp.follow(p).is_some_and(|n| n.msg() == commitment))
        .collect();
    for path in paths {
        if let Some(node) = node_mut(timestamp, &path) {
            // Same message by construction, so this cannot fail.
            let _ = node.merge(reply.clone());
        }
    }
}

/// Looks every node up in the cache; returns how many attestations that
/// added.
fn merge_cache(timestamp: &mut Timestamp, cache: &Cache) -> usize {
    let before = attestation_set(timestamp).len();
    for path in node_paths(timestamp) {
        if let Some(node) = node_mut(timestamp, &path) {
            if let Some(cached) = cache.get(node.msg()) {
                let _ = node.merge(cached);
            }
        }
    }
    attestation_set(timestamp).len() - before
}

/// One request: ask calendar `url` about `commitment`, on behalf of a
/// pending attestation naming `uri` (the same unless `-c` overrides it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Request {
    url: String,
    commitment: Vec<u8>,
    uri: String,
}

/// The requests the incomplete proofs call for that were not asked yet in
/// this pass, in a stable order. Pending attestations of calendars not on
/// the whitelist are named (once each) and skipped.
fn wanted(
    timestamps: &[&mut Timestamp],
    options: &UpgradeOptions,
    asked: &HashSet<(String, Vec<u8>)>,
    ignored: &mut BTreeSet<String>,
    log: &Log,
) -> BTreeSet<Request> {
    let mut out = BTreeSet::new();
    for timestamp in timestamps.iter().filter(|t| !is_complete(t)) {
        for (msg, attestation) in timestamp.all_attestations() {
            let Attestation::Pending { uri } = attestation else {
                continue;
            };
            let urls = if !options.calendars.is_empty() {
                options.calendars.clone()
            } else if options.whitelist.contains(uri) {
                vec![uri.clone()]
            } else {
                if ignored.insert(uri.clone()) {
                    log.warn(format!(
                        "Ignoring attestation from calendar {uri}: Calendar not in whitelist"
                    ));
                }
                continue;
            };
            for url in urls {
                if !asked.contains(&(url.clone(), msg.to_vec())) {
                    out.insert(Request {
                        url,
                        commitment: msg.to_vec(),
                        uri: uri.clone(),
                    });
                }
            }
        }
    }
    out
}

/// Asks one calendar; the reply, or `None` after saying why not.
async fn ask(request: &Request, options: &UpgradeOptions, log: &Log) -> Option<Timestamp> {
    log.debug(format!(
        "Checking calendar {} for {}",
        request.url,
        hex::encode(&request.commitment)
    ));
    let reply = match options.client.calendar(&request.url) {
        Ok(calendar) => {
            calendar
                .with_timeout(options.timeout)
                .get_timestamp(&request.commitment)
                .await
        }
        Err(e) => Err(e),
    };
    match reply {
        Ok(reply) => Some(reply),
        Err(CalendarError::NotFound { reason, .. }) => {
            log.warn(format!("Calendar {}: {reason}", request.uri));
            None
        }
        Err(e) => {
            log.warn(e.to_string());
            None
        }
    }
}

/// For each commitment with a pending attestation, the proofs (indexes)
/// that have it: a reply is merged into those only.
fn pending_owners(timestamps: &[&mut Timestamp]) -> HashMap<Vec<u8>, Vec<usize>> {
    let mut owners: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
    for (i, timestamp) in timestamps.iter().enumerate() {
        let pending: BTreeSet<&[u8]> = timestamp
            .all_attestations()
            .into_iter()
            .filter(|(_, a)| matches!(a, Attestation::Pending { .. }))
            .map(|(m, _)| m)
            .collect();
        for m in pending {
            owners.entry(m.to_vec()).or_default().push(i);
        }
    }
    owners
}

/// Merges `reply` (of `commitment`) into the proofs `owners` names, where
/// it brings something they lack; whether it added anything.
fn apply(
    timestamps: &mut [&mut Timestamp],
    owners: Option<&Vec<usize>>,
    commitment: &[u8],
    reply: &Timestamp,
) -> bool {
    let theirs = attestation_set(reply);
    let mut used = false;
    for &i in owners.into_iter().flatten() {
        let Some(timestamp) = timestamps.get_mut(i) else {
            continue;
        };
        let ours = attestation_set(timestamp);
        if theirs.is_subset(&ours) {
            continue;
        }
        merge_at(timestamp, commitment, reply);
        used |= attestation_set(timestamp).len() > ours.len();
    }
    used
}

/// One pass over `timestamps` (see the module's documentation). Returns,
/// for each, whether anything new was added to it.
pub async fn upgrade_pass(
    timestamps: &mut [&mut Timestamp],
    cache: &Cache,
    options: &UpgradeOptions,
    log: &Log,
) -> Vec<bool> {
    let before: Vec<BTreeSet<(Vec<u8>, Attestation)>> =
        timestamps.iter().map(|t| attestation_set(t)).collect();
    for timestamp in timestamps.iter_mut() {
        let n = merge_cache(timestamp, cache);
        if n > 0 {
            log.info(format!("Got {n} attestation(s) from cache"));
        }
    }
    let mut asked: HashSet<(String, Vec<u8>)> = HashSet::new();
    let mut ignored = BTreeSet::new();
    let mut bar = RequestBar::start();
    // Every answer of this pass, by (calendar, commitment): a proof that
    // reaches an already-answered commitment later in the pass (through
    // another proof's reply) gets the answer without a second request.
    let mut answers: BTreeMap<(String, Vec<u8>), Timestamp> = BTreeMap::new();
    for round in 0..MAX_FOLLOW_ROUNDS {
        let owners = pending_owners(timestamps);
        let mut new = false;
        for ((_, commitment), reply) in &answers {
            new |= apply(timestamps, owners.get(commitment), commitment, reply);
        }
        // As the reference: calendars are asked only about proofs still
        // incomplete (a complete proof is verified without telling anyone).
        let mut requests = wanted(timestamps, options, &asked, &mut ignored, log);
        if requests.is_empty() && !new {
            break;
        }
        let room = MAX_REQUESTS_PER_PASS.saturating_sub(asked.len());
        if requests.len() > room {
            log.warn(format!(
                "Not asking {} more calendar request(s): at most {MAX_REQUESTS_PER_PASS} in one run",
                requests.len() - room
            ));
            requests = requests.into_iter().take(room).collect();
        }
        if round > 0 && !requests.is_empty() {
            log.debug(format!(
                "Following {} new pending attestation(s)",
                requests.len()
            ));
        }
        bar.add(requests.len());
        for r in &requests {
            asked.insert((r.url.clone(), r.commitment.clone()));
        }
        let replies: Vec<(Request, Option<Timestamp>)> = stream::iter(requests)
            .map(|request| {
                let bar = &bar;
                async move {
                    let reply = ask(&request, options, log).await;
                    bar.inc();
                    (request, reply)
                }
            })
            .buffer_unordered(MAX_CONCURRENT_REQUESTS)
            .collect()
            .await;
        // Merged in a stable order, whatever order the replies came in.
        let replies: BTreeMap<Request, Option<Timestamp>> = replies.into_iter().collect();
        for (request, reply) in replies {
            let Some(reply) = reply else { continue };
            log.info(format!(
                "Got {} attestation(s) from {}",
                attestation_set(&reply).len(),
                request.url
            ));
            if apply(
                timestamps,
                owners.get(&request.commitment),
                &request.commitment,
                &reply,
            ) {
                new = true;
                if let Err(e) = cache.merge(&reply) {
                    log.debug(format!("Could not write the cache: {e}"));
                }
            }
            answers.insert((request.url, request.commitment), reply);
        }
        if !new {
            break;
        }
        if round + 1 == MAX_FOLLOW_ROUNDS
            && !wanted(
                timestamps,
                options,
                &asked,
                &mut BTreeSet::new(),
                &Log::new(-2),
            )
            .is_empty()
        {
            log.warn(format!(
                "Not following the pending attestations further: at most {MAX_FOLLOW_ROUNDS} rounds in one run"
            ));
        }
    }
    bar.finish();
    timestamps
        .iter()
        .zip(before)
        .map(|(t, b)| attestation_set(t).len() > b.len())
        .collect()
}

/// One pass over a single timestamp; whether anything new was added.
pub async fn upgrade_once(
    timestamp: &mut Timestamp,
    cache: &Cache,
    options: &UpgradeOptions,
    log: &Log,
) -> bool {
    upgrade_pass(&mut [timestamp], cache, options, log).await[0]
}

/// Upgrades all of `timestamps` until each is complete (with `wait`,
/// polling every `interval`) or once. Returns, for each, whether anything
/// was added.
pub async fn upgrade_all(
    timestamps: &mut [&mut Timestamp],
    cache: &Cache,
    options: &UpgradeOptions,
    wait: Option<Duration>,
    log: &Log,
) -> Vec<bool> {
    let mut changed = vec![false; timestamps.len()];
    loop {
        let found = upgrade_pass(timestamps, cache, options, log).await;
        for (c, f) in changed.iter_mut().zip(&found) {
            *c |= f;
        }
        match wait {
            _ if timestamps.iter().all(|t| is_complete(t)) => return changed,
            None => return changed,
            Some(_) if found.iter().any(|f| *f) => continue,
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

/// [`upgrade_all`] of one timestamp.
pub async fn upgrade(
    timestamp: &mut Timestamp,
    cache: &Cache,
    options: &UpgradeOptions,
    wait: Option<Duration>,
    log: &Log,
) -> bool {
    upgrade_all(&mut [timestamp], cache, options, wait, log).await[0]
}
