//! The aggregator's own metric families (issue 17), read from its round
//! figures ([`Stats`]) when scraped: rounds, rounds answered 503, digests
//! answered, and the last round's digests. Its upstreams' families are
//! `crate::metrics::upstream`'s, the same as a calendar's upstreams.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::round::Stats;

/// Reads [`Stats`] at every scrape.
#[derive(Debug)]
pub struct RoundFigures(pub Arc<Stats>);

impl Collector for RoundFigures {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counters = [
            (
                "aggregate_rounds",
                "Aggregator rounds with at least one digest",
                self.0.rounds.load(Relaxed),
            ),
            (
                "aggregate_rounds_unavailable",
                "Aggregator rounds answered 503: fewer than --upstream-min upstreams answered in time",
                self.0.rounds_unavailable.load(Relaxed),
            ),
            (
                "aggregate_digests",
                "Digests the aggregator answered with a proof",
                self.0.digests.load(Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(m)?;
        }
        let m = e.encode_descriptor(
            "aggregate_last_round_digests",
            "Digests of the last round answered",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.0.last_round_digests.load(Relaxed) as i64).encode(m)
    }
}
