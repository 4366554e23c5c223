//! The stamper inside the calendar: adapters from the journal, the proof
//! store and the pending index to `ots-stamper`'s runner, and the
//! [`StamperView`] that the HTTP layer reads (404 reasons, `/tip`, the info
//! page) built from the runner's view.

use std::ops::Range;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use ots_proof::Timestamp;
use ots_stamper::runner::{CommitmentSource, ProofSink, View};
use ots_stamper::Status;

use crate::info::MAX_LISTED_TXS;
use crate::journal::JournalReader;
use crate::status::{ChainInfo, MinedTx, PendingIndex, StamperView, Waiting};
use crate::store::{commitment_bytes, record_of, CompletedBatch, Store};

/// Journal records read per request when gathering a round.
const READ_CHUNK: usize = 65_536;

/// The journal as the stamper reads it.
pub struct JournalSource(pub JournalReader);

impl CommitmentSource for JournalSource {
    fn len(&self) -> u64 {
        self.0.durable_len()
    }

    fn read(&self, ranges: &[Range<u64>]) -> std::io::Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        for range in ranges {
            let mut at = range.start;
            while at < range.end {
                let want = ((range.end - at) as usize).min(READ_CHUNK);
                let records = self.0.read_range(at, want)?;
                if records.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("journal has no record {at}"),
                    ));
                }
                for record in &records {
                    out.push((at, commitment_bytes(record).to_vec()));
                    at += 1;
                }
            }
        }
        Ok(out)
    }
}

/// The proof store as the stamper fills it; completed commitments leave the
/// pending index.
pub struct StoreSink {
    /// The store.
    pub store: Arc<Store>,
    /// The pending index.
    pub pending: Arc<PendingIndex>,
}

impl ProofSink for StoreSink {
    fn add_batch(&self, commitments: Vec<(u64, Vec<u8>)>, tail: Timestamp) -> Result<(), String> {
        // The store checks these records against the journal, and their
        // tree against the tail, before it writes anything.
        let records = commitments
            .into_iter()
            .map(|(index, bytes)| {
                record_of(&bytes)
                    .map(|record| (index, record))
                    .ok_or_else(|| format!("journal position {index}: not a commitment"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let done: Vec<_> = records.clone();
        self.store
            .add_batch(CompletedBatch {
                commitments: records,
                tail,
            })
            .map_err(|e| e.to_string())?;
        for (index, record) in &done {
            self.pending.remove_at(record, *index);
        }
        Ok(())
    }
}

/// What the HTTP layer sees of the running stamper.
pub struct Stamping {
    /// The runner's view.
    pub view: Arc<RwLock<View>>,
    /// The pending index (commitment → journal position).
    pub pending: Arc<PendingIndex>,
}

impl Stamping {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl StamperView for Stamping {
    fn waiting(&self, commitment: &[u8]) -> Option<Waiting> {
        let position = self.pending.lookup(commitment)?;
        match self.read().status(position) {
            Status::Mined { txid, waiting_for } => Some(Waiting {
                txid: txid.to_string(),
                confirmations_needed: u32::try_from(waiting_for).unwrap_or(u32::MAX),
            }),
            Status::Pending => None,
        }
    }

    fn tip(&self) -> Option<Vec<u8>> {
        self.read().tip.map(|t| t.to_vec())
    }

    fn chain_info(&self) -> ChainInfo {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        chain_info_at(&self.read(), now)
    }
}

/// The info page's chain figures from the runner's view at unix time `now`.
pub fn chain_info_at(v: &View, now: u64) -> ChainInfo {
    let best_height = v.best.map(|b| b.0);
    let week = v.history.last_week(now);
    ChainInfo {
        txs_waiting_for_confirmation: Some(v.mined.len() as u64),
        most_recent_tx: v.unconfirmed.map(|(txid, _)| txid.to_string()),
        prior_versions: v.unconfirmed.map(|(_, n)| n as u64),
        best_block: v.best.map(|b| b.1.to_string()),
        block_height: best_height,
        balance_sats: v.balance.map(|b| b.to_sat()),
        hours_between_transactions: week.and_then(|w| w.hours_between),
        fees_in_last_week_sats: week.map(|w| w.fees.to_sat()),
        transactions: v
            .history
            .entries
            .iter()
            .take(MAX_LISTED_TXS)
            .map(|done| MinedTx {
                txid: done.txid.to_string(),
                fee_sats: done.fee.to_sat(),
                fee_rate: done.fee.to_sat() as f64 / done.vsize.max(1) as f64,
                confirmations: best_height.map_or(0, |b| {
                    u32::try_from(b.saturating_sub(done.height) + 1).unwrap_or(u32::MAX)
                }),
                block_time: done.block_time,
            })
            .collect(),
        warnings: v
            .node_error
            .iter()
            .map(|e| format!("the Bitcoin node is unreachable, stamping is paused: {e}"))
            .chain(v.warnings.iter().cloned())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use bitcoin::{Amount, BlockHash, Txid};
    use ots_stamper::history::{CompletedTx, History, WEEK_SECS};

    const NOW: u64 = 1_700_000_000;

    fn done(n: u8, fee: u64, vsize: u64, height: u64, block_time: u64) -> CompletedTx {
        CompletedTx {
            txid: Txid::from_byte_array([n; 32]),
            fee: Amount::from_sat(fee),
            vsize,
            height,
            block_time,
        }
    }

    #[test]
    fn chain_figures_come_from_the_history_and_the_best_block() {
        let view = View {
            best: Some((800_010, BlockHash::from_byte_array([9; 32]))),
            balance: Some(Amount::from_sat(5_000_000)),
            history: History {
                since: 0,
                entries: vec![
                    done(3, 3_000, 150, 800_010, NOW - 3_600),
                    done(2, 1_500, 300, 800_000, NOW - 4 * 3_600),
                    done(1, 9_999, 150, 798_000, NOW - WEEK_SECS - 1),
                ],
            },
            ..View::default()
        };
        let c = chain_info_at(&view, NOW);
        assert_eq!(c.block_height, Some(800_010));
        assert_eq!(c.balance_sats, Some(5_000_000));
        // The 8-day-old transaction is listed but not in the week.
        assert_eq!(c.fees_in_last_week_sats, Some(4_500));
        assert_eq!(c.hours_between_transactions, Some(3.0));
        let listed: Vec<_> = c
            .transactions
            .iter()
            .map(|t| (t.fee_sats, t.fee_rate, t.confirmations))
            .collect();
        assert_eq!(
            listed,
            vec![
                (3_000, 20.0, 1),
                (1_500, 5.0, 11),
                (9_999, 9_999.0 / 150.0, 2_011)
            ]
        );
        assert_eq!(
            c.transactions[0].txid,
            Txid::from_byte_array([3; 32]).to_string()
        );
        assert_eq!(c.transactions[0].block_time, NOW - 3_600);
    }

    #[test]
    fn weekly_figures_are_unknown_while_the_history_is_short() {
        let view = View {
            history: History {
                since: NOW - 3_600,
                entries: vec![done(1, 700, 150, 10, NOW - 1_800)],
            },
            ..View::default()
        };
        let c = chain_info_at(&view, NOW);
        assert_eq!(c.fees_in_last_week_sats, None);
        assert_eq!(c.hours_between_transactions, None);
        assert_eq!(c.transactions.len(), 1);
        assert_eq!(c.transactions[0].confirmations, 0, "no best block known");
    }
}
