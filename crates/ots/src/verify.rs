//! Verifying Bitcoin attestations against block headers, from a node the
//! user runs or from a block explorer the user trusts, and saying when the
//! data existed.

use bitcoin::block::Header;
use ots_bitcoin::{RpcClient, RpcError};
use ots_proof::verify::verify_bitcoin_header;
use ots_proof::{Attestation, Timestamp};

use crate::esplora::{Esplora, EsploraError};
use crate::log::Log;

/// Where block headers come from.
#[derive(Debug)]
pub enum HeaderSource {
    /// A Bitcoin node's JSON-RPC: it has checked the chain itself.
    /// `hint` follows its errors (how else to get headers, when the node
    /// was not named by the user).
    Node {
        /// The node.
        rpc: RpcClient,
        /// Said after a failure.
        hint: &'static str,
    },
    /// An Esplora-style explorer: trusted to serve the header of the chain
    /// with the most work at each height.
    Explorer(Esplora),
}

/// Why a header could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The node failed.
    #[error("Could not connect to Bitcoin node: {error}{hint}")]
    Node {
        /// Why.
        error: RpcError,
        /// What else to do, if anything.
        hint: &'static str,
    },
    /// The explorer failed.
    #[error("Could not get the block header from the explorer: {0}")]
    Explorer(#[from] EsploraError),
}

impl HeaderSource {
    /// The header at `height`, or the best height when there is none.
    pub async fn header_at(&self, height: u64) -> Result<Result<Header, u64>, SourceError> {
        match self {
            HeaderSource::Node { rpc, hint } => {
                let node = |error| SourceError::Node { error, hint };
                let best = rpc.block_count().await.map_err(node)?;
                let Some(hash) = rpc.block_hash(height).await.map_err(node)? else {
                    return Ok(Err(best));
                };
                Ok(rpc.block_header(&hash).await.map_err(node)?.ok_or(best))
            }
            HeaderSource::Explorer(explorer) => {
                let header = match explorer.block_hash(height).await? {
                    Some(hash) => explorer.block_header(&hash).await?,
                    None => None,
                };
                match header {
                    Some(header) => Ok(Ok(header)),
                    None => Ok(Err(explorer.tip_height().await?)),
                }
            }
        }
    }
}

/// What checking one Bitcoin attestation found.
#[derive(Debug)]
pub enum Outcome {
    /// The attested message is the block's merkle root: the data existed as
    /// of the block's time.
    Verified {
        /// Block height.
        height: u64,
        /// The header's nTime.
        time: u32,
    },
    /// The node has no block at that height.
    NoSuchBlock {
        /// Block height.
        height: u64,
        /// The node's best height.
        best: u64,
    },
    /// The header does not match.
    Mismatch {
        /// Block height.
        height: u64,
        /// Why.
        reason: String,
    },
}

/// Checks the Bitcoin attestation `(msg, height)` against the header
/// `source` gives for that height.
pub async fn check(source: &HeaderSource, msg: &[u8], height: u64) -> Result<Outcome, SourceError> {
    let header = match source.header_at(height).await? {
        Ok(header) => header,
        Err(best) => return Ok(Outcome::NoSuchBlock { height, best }),
    };
    Ok(match verify_bitcoin_header(msg, &header) {
        Ok(time) => Outcome::Verified { height, time },
        Err(e) => Outcome::Mismatch {
            height,
            reason: e.to_string(),
        },
    })
}

/// The Bitcoin attestations of `timestamp`, lowest height first (the
/// earliest proof of existence is the one worth reporting).
pub fn bitcoin_attestations(timestamp: &Timestamp) -> Vec<(Vec<u8>, u64)> {
    let mut out: Vec<_> = timestamp
        .all_attestations()
        .into_iter()
        .filter_map(|(msg, a)| match a {
            Attestation::Bitcoin { height } => Some((msg.to_vec(), *height)),
            _ => None,
        })
        .collect();
    out.sort_by_key(|(_, h)| *h);
    out
}

/// The most Bitcoin attestations [`verify`] asks a node or explorer about
/// (three requests each). Real proofs have one per calendar, a handful; a
/// hostile proof can carry tens of thousands, each at its own height, and
/// would otherwise make `verify` send that many requests (to a public
/// explorer, with `--esplora`).
pub const MAX_BITCOIN_CHECKS: usize = 64;

/// What became of one Bitcoin attestation during [`verify`].
#[derive(Debug)]
pub struct Check {
    /// The attested message (the block's merkle root, if it verifies).
    pub msg: Vec<u8>,
    /// The attested height.
    pub height: u64,
    /// What checking it found; `None` if it was not checked (Bitcoin
    /// disabled, or an earlier attestation already verified).
    pub outcome: Option<Result<Outcome, String>>,
}

impl Check {
    /// The block time, if this attestation verified.
    pub fn verified_time(&self) -> Option<u32> {
        match self.outcome {
            Some(Ok(Outcome::Verified { time, .. })) => Some(time),
            _ => None,
        }
    }
}

/// Verifies `timestamp`: the first Bitcoin attestation that checks out is
/// reported and ends the search. `source` is `None` with `--no-bitcoin`.
/// Returns every Bitcoin attestation (lowest height first) with what became
/// of it; the timestamp is verified if one of them is
/// [`Outcome::Verified`].
pub async fn verify(timestamp: &Timestamp, source: Option<&HeaderSource>, log: &Log) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut done = false;
    let mut asked = 0;
    let mut skipped = 0;
    for (msg, height) in bitcoin_attestations(timestamp) {
        if source.is_some() && !done && asked == MAX_BITCOIN_CHECKS {
            skipped += 1;
        }
        if done || (source.is_some() && asked == MAX_BITCOIN_CHECKS) {
            checks.push(Check {
                msg,
                height,
                outcome: None,
            });
            continue;
        }
        let Some(source) = source else {
            log.warn("Not checking Bitcoin attestation; Bitcoin disabled");
            let mut root = msg.clone();
            root.reverse();
            log.info(format!(
                "To verify manually, check that Bitcoin block {height} has merkleroot {}",
                hex::encode(root)
            ));
            checks.push(Check {
                msg,
                height,
                outcome: None,
            });
            continue;
        };
        asked += 1;
        let outcome = match check(source, &msg, height).await {
            Ok(outcome) => {
                match &outcome {
                    Outcome::Verified { height, time } => {
                        log.info(format!(
                            "Success! Bitcoin block {height} attests existence as of {}",
                            utc_date(*time)
                        ));
                        done = true;
                    }
                    Outcome::NoSuchBlock { height, best } => log.error(format!(
                        "Bitcoin block height {height} not found; {best} is highest known block"
                    )),
                    Outcome::Mismatch { reason, .. } => {
                        log.error(format!("Bitcoin verification failed: {reason}"))
                    }
                }
                Ok(outcome)
            }
            Err(e) => {
                log.error(e.to_string());
                Err(e.to_string())
            }
        };
        checks.push(Check {
            msg,
            height,
            outcome: Some(outcome),
        });
    }
    if skipped > 0 {
        log.warn(format!(
            "Not checking {skipped} more Bitcoin attestation(s): at most {MAX_BITCOIN_CHECKS} are checked"
        ));
    }
    checks
}

/// `YYYY-MM-DD UTC` for a unix time (the reference prints the local date;
/// we print UTC, the same on every machine).
pub fn utc_date(time: u32) -> String {
    // Howard Hinnant's civil-from-days.
    let days = i64::from(time) / 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01 UTC");
        assert_eq!(utc_date(1_432_827_678), "2015-05-28 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 UTC");
        assert_eq!(utc_date(u32::MAX), "2106-02-07 UTC");
    }
}
