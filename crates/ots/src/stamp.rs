//! Stamping: each file's digest gets its own random nonce (so a proof never
//! reveals the digests of files stamped beside it), the nonced digests are
//! merkled into one tip, and the tip is submitted to several calendars at
//! once; the stamp succeeds when at least `m` of them answer in time.

use std::time::Duration;

use futures::future::join_all;
use ots_calendar::{CalendarError, Client};
use ots_proof::merkle::{nonce_ops, NONCE_LEN};
use ots_proof::{DetachedTimestampFile, MerkleTree, Timestamp};
use rand::RngCore;

/// The outcome of submitting a tip to calendars.
#[derive(Debug)]
pub struct Submission {
    /// The merged replies, a timestamp of the tip.
    pub timestamp: Timestamp,
    /// How many calendars answered with a valid timestamp.
    pub replies: usize,
    /// The calendars that did not, with why.
    pub failures: Vec<CalendarError>,
}

/// Adds a nonce to each file's timestamp and merkles them; returns the tip
/// and, for each file, the path from its digest to the tip.
pub fn prepare(files: &mut [DetachedTimestampFile]) -> Option<([u8; 32], Vec<Vec<ots_proof::Op>>)> {
    let mut rng = rand::rngs::OsRng;
    let mut paths = Vec::with_capacity(files.len());
    let mut leaves = Vec::with_capacity(files.len());
    for file in files.iter_mut() {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let ops = nonce_ops(nonce).to_vec();
        // A 32-byte or 20-byte digest plus 16 bytes is far within limits.
        let leaf = ots_proof::verify::replay(file.file_digest(), &ops).ok()?;
        leaves.push(<[u8; 32]>::try_from(leaf.as_slice()).ok()?);
        paths.push(ops);
    }
    let tree = MerkleTree::new(leaves)?;
    for (i, path) in paths.iter_mut().enumerate() {
        path.extend(tree.path(i)?);
    }
    Some((tree.root(), paths))
}

/// Submits the message of `tip` to every calendar concurrently through
/// `client`, each bounded by `timeout`, and merges the replies into `tip`.
pub async fn submit(
    mut tip: Timestamp,
    calendars: &[String],
    client: &Client,
    timeout: Duration,
) -> Submission {
    let msg = tip.msg().to_vec();
    let msg = msg.as_slice();
    let requests = calendars.iter().map(|url| async move {
        let calendar = client.calendar(url)?.with_timeout(timeout);
        // Named as the client's own timeout names it (the parsed URL), so
        // the message is the same whichever of the two fires first.
        let name = calendar.url().to_string();
        // The client timeout covers each request; this one bounds the
        // whole exchange (connect, send, read) as the reference does.
        match tokio::time::timeout(timeout, calendar.submit(msg)).await {
            Ok(result) => result,
            Err(_) => Err(CalendarError::Timeout { url: name }),
        }
    });
    let mut replies = 0;
    let mut failures = Vec::new();
    for result in join_all(requests).await {
        match result {
            Ok(reply) => {
                if tip.merge(reply).is_ok() {
                    replies += 1;
                }
            }
            Err(e) => failures.push(e),
        }
    }
    Submission {
        timestamp: tip,
        replies,
        failures,
    }
}

/// Attaches the merged calendar replies to each file's timestamp.
pub fn attach(
    files: &mut [DetachedTimestampFile],
    paths: Vec<Vec<ots_proof::Op>>,
    tip_timestamp: &Timestamp,
) -> Result<(), ots_proof::OpError> {
    for (file, path) in files.iter_mut().zip(paths) {
        let end = file.timestamp_mut().add_path(path)?;
        // The path ends at the tip by construction.
        let _ = end.merge(tip_timestamp.clone());
    }
    Ok(())
}
