//! The per-upstream metric families (issue 17, "each upstream's success,
//! latency and backlog"), shared by a calendar's upstreams
//! (`crate::upstream`) and the aggregator's (`crate::aggregate`), which
//! register them through [`Metrics::register`]: requests by result and
//! their duration, counted as they happen; and the figures each keeps for
//! its info page (last success, last error, backlog), read when scraped.
//! The `upstream` label is the configured URL: at most
//! [`MAX_LABELLED_UPSTREAMS`] of them, so the label set stays bounded.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::Metrics;

/// Upstreams that get their own label values; any after them are not
/// counted (a calendar takes at most 64 upstreams anyway).
pub const MAX_LABELLED_UPSTREAMS: usize = 64;
/// Buckets of an upstream request's duration: 1 ms to about 33 s.
const REQUEST_SECONDS_BUCKETS: (f64, f64, u16) = (0.001, 2.0, 16);

/// How a request to an upstream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with a reply that was kept.
    Accepted,
    /// No usable answer: unreachable, an HTTP error, a timeout.
    Failed,
    /// Answered, but the reply was refused (does not decode, too large,
    /// rooted elsewhere, no room left in the proof).
    Refused,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 3] = [Outcome::Accepted, Outcome::Failed, Outcome::Refused];

    /// How a request that ended in the calendar client's `error` counts:
    /// a reply that came but does not fit is refused, the rest failed.
    pub fn of_error(error: &ots_calendar::CalendarError) -> Outcome {
        use ots_calendar::CalendarError as E;
        match error {
            E::TooLarge { .. } | E::Malformed { .. } => Outcome::Refused,
            _ => Outcome::Failed,
        }
    }

    /// The `result` label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
        }
    }
}

/// What an upstream's owner knows of it at scrape time; `None`: not
/// known, or not kept by this kind of server (no sample is written).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// The configured URL (the label value).
    pub url: String,
    /// Unix time of the last accepted answer.
    pub last_success: Option<u64>,
    /// Unix time of the last failure.
    pub last_error_at: Option<u64>,
    /// Commitments not answered by it yet (a calendar's upstreams only).
    pub backlog: Option<u64>,
    /// Commitments it answered that are not complete yet.
    pub open: Option<u64>,
    /// Commitments it completed since start-up.
    pub completed: Option<u64>,
}

type Labels = Vec<(&'static str, String)>;

struct Per {
    outcomes: [Counter; 3],
    duration: Histogram,
}

/// The counting side of the families: one set of handles per upstream,
/// made when registered (no allocation when counting).
pub struct UpstreamMetrics {
    per: Vec<Per>,
}

impl std::fmt::Debug for UpstreamMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamMetrics")
            .field("upstreams", &self.per.len())
            .finish_non_exhaustive()
    }
}

fn histogram() -> Histogram {
    let (start, factor, n) = REQUEST_SECONDS_BUCKETS;
    Histogram::new(exponential_buckets(start, factor, n))
}

struct Read(Box<dyn Fn() -> Vec<Figures> + Send + Sync>);

impl std::fmt::Debug for Read {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("upstream figures").finish_non_exhaustive()
    }
}

impl UpstreamMetrics {
    /// Registers the families for `urls` on `metrics`: the counters and
    /// the histogram, and `figures`, read at every scrape, for the gauges.
    pub fn register(
        metrics: &Metrics,
        urls: &[String],
        figures: impl Fn() -> Vec<Figures> + Send + Sync + 'static,
    ) -> UpstreamMetrics {
        let submissions = Family::<Labels, Counter>::default();
        let durations =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(histogram);
        let per = urls
            .iter()
            .take(MAX_LABELLED_UPSTREAMS)
            .map(|url| Per {
                outcomes: Outcome::ALL.map(|o| {
                    submissions.get_or_create_owned(&vec![
                        ("upstream", url.clone()),
                        ("result", o.label().to_owned()),
                    ])
                }),
                duration: durations.get_or_create_owned(&vec![("upstream", url.clone())]),
            })
            .collect();
        metrics.register(|r| {
            r.register(
                "upstream_submissions",
                "Submissions to each upstream calendar, by result (accepted: a reply kept; failed: no usable answer; refused: a reply dropped)",
                submissions,
            );
            r.register_with_unit(
                "upstream_request_duration",
                "Time from a submission to an upstream calendar to its answer (answers only; a timeout counts as failed, not here)",
                Unit::Seconds,
                durations,
            );
            r.register_collector(Box::new(Read(Box::new(figures))));
        });
        UpstreamMetrics { per }
    }

    /// Counts a request to upstream `idx` (its place in the configured
    /// list) that ended with `outcome`, answered after `elapsed` (`None`:
    /// no answer came).
    pub fn request(&self, idx: usize, outcome: Outcome, elapsed: Option<Duration>) {
        let Some(per) = self.per.get(idx) else { return };
        let i = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        per.outcomes[i].inc();
        if let Some(elapsed) = elapsed {
            per.duration.observe(elapsed.as_secs_f64());
        }
    }
}

/// One labelled family of gauges (or counters), a sample per upstream
/// that has the figure.
fn family(
    e: &mut DescriptorEncoder,
    (name, help, unit, kind): (&str, &str, Option<Unit>, MetricType),
    all: &[Figures],
    value: impl Fn(&Figures) -> Option<u64>,
) -> Result<(), std::fmt::Error> {
    if all.iter().all(|f| value(f).is_none()) {
        return Ok(());
    }
    let mut metric = e.encode_descriptor(name, help, unit.as_ref(), kind)?;
    for f in all.iter().take(MAX_LABELLED_UPSTREAMS) {
        let Some(v) = value(f) else { continue };
        let labels = [("upstream", f.url.as_str())];
        let sample = metric.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(v).encode(sample)?,
            _ => ConstGauge::new(v as i64).encode(sample)?,
        }
    }
    Ok(())
}

impl Collector for Read {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = (self.0)();
        let gauge = MetricType::Gauge;
        family(
            &mut e,
            (
                "upstream_last_success_timestamp",
                "Unix time of each upstream calendar's last accepted answer",
                Some(Unit::Seconds),
                gauge,
            ),
            &all,
            |f| f.last_success,
        )?;
        family(
            &mut e,
            (
                "upstream_last_error_timestamp",
                "Unix time of each upstream calendar's last failure",
                Some(Unit::Seconds),
                gauge,
            ),
            &all,
            |f| f.last_error_at,
        )?;
        family(
            &mut e,
            (
                "upstream_backlog",
                "Journal commitments each upstream calendar has not answered yet (submitted again until it does)",
                None,
                gauge,
            ),
            &all,
            |f| f.backlog,
        )?;
        family(
            &mut e,
            (
                "upstream_open",
                "Commitments each upstream calendar answered that it has not completed in Bitcoin yet",
                None,
                gauge,
            ),
            &all,
            |f| f.open,
        )?;
        family(
            &mut e,
            (
                "upstream_completions",
                "Commitments each upstream calendar completed in Bitcoin since start-up",
                None,
                MetricType::Counter,
            ),
            &all,
            |f| f.completed,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_labelled_by_upstream_and_unknown_figures_have_no_sample() {
        let metrics = Metrics::bare();
        let urls = vec!["http://a.test".to_string(), "http://b.test".to_string()];
        let counted = UpstreamMetrics::register(&metrics, &urls, || {
            vec![
                Figures {
                    url: "http://a.test".into(),
                    last_success: Some(1_700_000_000),
                    backlog: Some(2),
                    ..Figures::default()
                },
                Figures {
                    url: "http://b.test".into(),
                    last_error_at: Some(1_700_000_001),
                    backlog: Some(0),
                    ..Figures::default()
                },
            ]
        });
        counted.request(0, Outcome::Accepted, Some(Duration::from_millis(3)));
        counted.request(1, Outcome::Failed, None);
        counted.request(1, Outcome::Refused, Some(Duration::from_millis(1)));
        // Past the configured list: not counted, no panic.
        counted.request(64, Outcome::Failed, None);
        let text = metrics.encode(false);
        for line in [
            r#"otsd_upstream_submissions_total{upstream="http://a.test",result="accepted"} 1"#,
            r#"otsd_upstream_submissions_total{upstream="http://a.test",result="failed"} 0"#,
            r#"otsd_upstream_submissions_total{upstream="http://b.test",result="failed"} 1"#,
            r#"otsd_upstream_submissions_total{upstream="http://b.test",result="refused"} 1"#,
            r#"otsd_upstream_request_duration_seconds_count{upstream="http://a.test"} 1"#,
            r#"otsd_upstream_request_duration_seconds_count{upstream="http://b.test"} 1"#,
            r#"otsd_upstream_last_success_timestamp_seconds{upstream="http://a.test"} 1700000000"#,
            r#"otsd_upstream_last_error_timestamp_seconds{upstream="http://b.test"} 1700000001"#,
            r#"otsd_upstream_backlog{upstream="http://a.test"} 2"#,
            r#"otsd_upstream_backlog{upstream="http://b.test"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        // Unknown figures: no sample; none known at all: no family.
        assert!(!text
            .contains(r#"otsd_upstream_last_success_timestamp_seconds{upstream="http://b.test"}"#));
        assert!(!text.contains("otsd_upstream_open"), "{text}");
        // A bare registry: none of the calendar's families.
        assert!(!text.contains("otsd_rounds"), "{text}");
        assert!(text.contains("otsd_http_open_connections"), "{text}");
    }

    #[test]
    fn a_reply_that_came_but_does_not_fit_is_refused() {
        use ots_calendar::CalendarError as E;
        let url = || "http://a.test".to_string();
        assert_eq!(
            Outcome::of_error(&E::TooLarge { url: url() }),
            Outcome::Refused
        );
        assert_eq!(
            Outcome::of_error(&E::Timeout { url: url() }),
            Outcome::Failed
        );
        let down = E::Unreachable {
            url: url(),
            message: "refused".into(),
        };
        assert_eq!(Outcome::of_error(&down), Outcome::Failed);
    }
}
