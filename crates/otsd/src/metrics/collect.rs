//! The figures read at scrape time from where they already live: the
//! pending index, the journal, the sizes of the calendar's files, and the
//! stamper's view ([`StamperView`]: chain height, wallet balance, the
//! unconfirmed transaction, node reachability). Nothing here is updated
//! on a hot path; a figure that is unknown (no stamper, no node yet) has
//! its family described without a sample.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use crate::journal::{JournalReader, JOURNAL_FILE};
use crate::status::{PendingIndex, StamperView};
use crate::store::STORE_FILE;

/// What a calendar's scrape reads.
pub struct Sources {
    /// The calendar directory (file sizes).
    pub dir: PathBuf,
    /// Journaled commitments without a completed proof.
    pub pending: Arc<PendingIndex>,
    /// The journal (its durable length).
    pub journal: JournalReader,
    /// The stamping backend's view.
    pub stamper: Arc<dyn StamperView>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Writes one gauge family with one sample, or none when `value` is `None`.
fn gauge<N>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    value: Option<N>,
) -> Result<(), std::fmt::Error>
where
    ConstGauge<N>: EncodeMetric,
{
    let metric = encoder.encode_descriptor(
        name,
        help,
        unit.as_ref(),
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    match value {
        Some(v) => ConstGauge::new(v).encode(metric),
        None => Ok(()),
    }
}

/// Writes one counter family with one sample (the `_total` suffix is the
/// encoder's), or none when `value` is `None`.
fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: Option<u64>,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    match value {
        Some(v) => prometheus_client::metrics::counter::ConstCounter::new(v).encode(metric),
        None => Ok(()),
    }
}

fn satoshis() -> Option<Unit> {
    Some(Unit::Other("satoshis".into()))
}

impl Collector for Sources {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let size = |file: &str| std::fs::metadata(self.dir.join(file)).ok().map(|m| m.len());
        gauge(
            &mut e,
            "pending_commitments",
            "Journaled commitments without a completed proof.",
            None,
            Some(self.pending.len() as u64),
        )?;
        gauge(
            &mut e,
            "journal_records",
            "Commitments in the journal (durable records).",
            None,
            Some(self.journal.durable_len()),
        )?;
        gauge(
            &mut e,
            "journal_size",
            "Size of the journal file.",
            Some(Unit::Bytes),
            size(JOURNAL_FILE),
        )?;
        gauge(
            &mut e,
            "store_size",
            "Size of the proof store file (store.redb).",
            Some(Unit::Bytes),
            size(STORE_FILE),
        )?;
        self.encode_stamper(&mut e)
    }
}

impl Sources {
    fn encode_stamper(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let chain = self.stamper.chain_info();
        let tx = self.stamper.unconfirmed();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        gauge(
            e,
            "bitcoin_block_height",
            "Height of the best block the stamper has seen.",
            None,
            chain.block_height,
        )?;
        gauge(
            e,
            "bitcoin_node_up",
            "1 if the Bitcoin node answered the stamper's last pass, 0 while stamping is paused by the node.",
            None,
            self.stamper.node_reachable().map(i64::from),
        )?;
        gauge(
            e,
            "wallet_balance",
            "Confirmed balance of the stamper's wallet.",
            satoshis(),
            chain.balance_sats,
        )?;
        gauge(
            e,
            "stamper_waiting_transactions",
            "Timestamp transactions mined and waiting for their confirmations.",
            None,
            chain.txs_waiting_for_confirmation,
        )?;
        gauge(
            e,
            "stamper_unconfirmed_age",
            "How long the current timestamp transaction has waited to be mined, since its first version was sent (counted from start-up after a restart).",
            Some(Unit::Seconds),
            tx.map(|t| now.saturating_sub(t.since)),
        )?;
        gauge(
            e,
            "stamper_unconfirmed_fee",
            "Fee of the current unconfirmed timestamp transaction's latest version.",
            satoshis(),
            tx.map(|t| t.fee_sats),
        )?;
        gauge(
            e,
            "stamper_unconfirmed_fee_rate",
            "Fee rate of the current unconfirmed timestamp transaction's latest version, satoshis per virtual byte.",
            Some(Unit::Other("sat_per_vbyte".into())),
            tx.map(|t| t.fee_sats as f64 / t.vsize.max(1) as f64),
        )?;
        gauge(
            e,
            "stamper_unconfirmed_bumps",
            "Fee bumps of the current unconfirmed timestamp transaction (versions that replaced its first).",
            None,
            tx.map(|t| t.bumps),
        )?;
        gauge(
            e,
            "stamper_last_confirmation_timestamp",
            "Unix time (block header time) of the block that mined the latest completed timestamp transaction.",
            Some(Unit::Seconds),
            chain.transactions.first().map(|t| t.block_time),
        )?;
        counter(
            e,
            "stamper_reorged_transactions",
            "Completed timestamp transactions that a reorg deeper than the confirmation depth took out of the best chain (their commitments are stamped again).",
            chain.reorged_completed_total,
        )?;
        gauge(
            e,
            "stamper_warnings",
            "Conditions the operator should act on, as listed on the info page (node unreachable, empty wallet, fee cap, batches set aside).",
            None,
            Some(chain.warnings.len() as u64),
        )
    }
}
