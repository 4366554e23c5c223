//! The metrics as scraped: names, labels and values of what was counted,
//! in both text formats, and the stamper's figures read from its view.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::Method;
use bitcoin::hashes::Hash;
use bitcoin::{Amount, BlockHash, Txid};

use super::*;
use crate::calendar::HmacKey;
use crate::journal::{Journal, Verify};
use crate::stamping::{Pause, Stamping, View};
use crate::status::{NoStamper, PendingIndex, StamperView};

/// The value of the sample `series` (name and labels as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn counted_events_are_scraped_with_their_labels() {
    let m = Metrics::new();
    m.digests_accepted(3);
    m.digest_refused(Refusal::TooLong);
    m.digest_refused(Refusal::TooLong);
    m.digest_refused(Refusal::Unavailable);
    m.round(3, Duration::from_millis(5));
    m.request(Route::Digest, 200);
    m.request(Route::Digest, 200);
    m.request(Route::Timestamp, 404);
    m.request(Route::Other, 418);
    m.fsync_histogram().observe(0.002);
    m.open_connections().inc();
    let om = m.encode(true);
    assert!(om.ends_with("# EOF\n"), "{om}");
    for (series, value) in [
        ("otsd_digests_accepted_total", 3.0),
        ("otsd_digests_refused_total{reason=\"too_long\"}", 2.0),
        ("otsd_digests_refused_total{reason=\"unavailable\"}", 1.0),
        ("otsd_digests_refused_total{reason=\"body_timeout\"}", 0.0),
        ("otsd_rounds_total", 1.0),
        ("otsd_round_digests_count", 1.0),
        ("otsd_round_digests_sum", 3.0),
        ("otsd_round_duration_seconds_count", 1.0),
        ("otsd_journal_fsync_duration_seconds_count", 1.0),
        ("otsd_journal_fsync_duration_seconds_sum", 0.002),
        ("otsd_http_open_connections", 1.0),
        (
            "otsd_http_requests_total{route=\"POST /digest\",status=\"200\"}",
            2.0,
        ),
        (
            "otsd_http_requests_total{route=\"GET /timestamp/{commitment}\",status=\"404\"}",
            1.0,
        ),
        (
            "otsd_http_requests_total{route=\"other\",status=\"other\"}",
            1.0,
        ),
        (
            "otsd_http_requests_total{route=\"GET /\",status=\"200\"}",
            0.0,
        ),
        (
            &format!(
                "otsd_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        ),
    ] {
        assert_eq!(sample(&om, series), Some(value), "{series} in\n{om}");
    }
    // The 0.0.4 text format: the same samples, no EOF marker.
    let text = m.encode(false);
    assert!(!text.contains("# EOF"));
    assert_eq!(sample(&text, "otsd_digests_accepted_total"), Some(3.0));
    assert_eq!(
        sample(
            &text,
            "otsd_http_requests_total{route=\"POST /digest\",status=\"200\"}"
        ),
        Some(2.0)
    );
}

#[test]
fn routes_are_a_fixed_set_never_the_raw_path() {
    let cases = [
        (Method::GET, "/", Route::Info),
        (Method::POST, "/digest", Route::Digest),
        (Method::GET, "/digest", Route::Other),
        (Method::GET, "/timestamp/00ff", Route::Timestamp),
        (Method::GET, "/tip", Route::Tip),
        (Method::GET, "/experimental/backup/7", Route::Backup),
        (Method::GET, "/metrics", Route::Other),
        (Method::OPTIONS, "/digest", Route::Other),
        (Method::GET, "/../etc/passwd", Route::Other),
    ];
    for (method, path, route) in cases {
        assert_eq!(Route::of(&method, path), route, "{method} {path}");
    }
}

#[test]
fn more_metrics_register_through_the_handle() {
    let m = Metrics::new();
    let backlog = prometheus_client::metrics::gauge::Gauge::<i64>::default();
    m.register(|r| {
        r.sub_registry_with_prefix("upstream")
            .register("backlog", "test", backlog.clone())
    });
    backlog.set(7);
    assert_eq!(sample(&m.encode(true), "otsd_upstream_backlog"), Some(7.0));
}

fn sources(dir: &std::path::Path, stamper: Arc<dyn StamperView>) -> Sources {
    let key = HmacKey::new(vec![1; 32]);
    let (mut journal, reader, _) = Journal::open(dir, &key, Verify::All).unwrap();
    let mut d = crate::calendar::KeyDeriver::new(key);
    let (a, b) = (d.commitment(1, &[2; 32]), d.commitment(2, &[3; 32]));
    journal.append(&[a, b]).unwrap();
    let pending = Arc::new(PendingIndex::new(reader.clone()));
    pending.insert(&b, 1);
    Sources {
        dir: dir.to_path_buf(),
        pending,
        journal: reader,
        stamper,
    }
}

#[test]
fn calendar_and_stamper_figures_are_read_when_scraped() {
    let dir = tempfile::tempdir().unwrap();
    let txid = Txid::from_byte_array([4; 32]);
    let mut view = View {
        best: Some((321, BlockHash::from_byte_array([9; 32]))),
        balance: Some(Amount::from_sat(123_456)),
        unconfirmed: Some((txid, 2)),
        ..View::default()
    };
    view.note_round(Some(txid), Some((Amount::from_sat(3_000), 150)), 1_000);
    // Noted again later: the age still counts from the first sighting.
    view.note_round(Some(txid), Some((Amount::from_sat(4_500), 150)), 5_000);
    let view = Arc::new(RwLock::new(view));
    let stamper: Arc<dyn StamperView> = Arc::new(Stamping { view: view.clone() });
    let m = Metrics::new();
    m.watch(sources(dir.path(), stamper));
    let text = m.encode(true);
    let now = crate::aggregator::unix_time() as f64;
    for (series, value) in [
        ("otsd_pending_commitments", 1.0),
        ("otsd_journal_records", 2.0),
        ("otsd_journal_size_bytes", 88.0),
        ("otsd_bitcoin_block_height", 321.0),
        ("otsd_bitcoin_node_up", 1.0),
        ("otsd_wallet_balance_satoshis", 123_456.0),
        ("otsd_stamper_unconfirmed_fee_satoshis", 4_500.0),
        ("otsd_stamper_unconfirmed_fee_rate_sat_per_vbyte", 30.0),
        ("otsd_stamper_unconfirmed_bumps", 2.0),
        ("otsd_stamper_warnings", 0.0),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    let age = sample(&text, "otsd_stamper_unconfirmed_age_seconds").unwrap();
    assert!((now - 1_000.0 - age).abs() < 5.0, "age {age}");
    // No store file yet: described, no sample.
    assert!(text.contains("# TYPE otsd_store_size_bytes gauge"));
    assert_eq!(sample(&text, "otsd_store_size_bytes"), None);

    // The node goes away: reachability drops, a warning is listed.
    view.write().unwrap().paused = Some((Pause::Node, "connection refused".into()));
    let text = m.encode(true);
    assert_eq!(sample(&text, "otsd_bitcoin_node_up"), Some(0.0));
    assert_eq!(sample(&text, "otsd_stamper_warnings"), Some(1.0));
    // The round is mined: no unconfirmed transaction, no age.
    view.write().unwrap().note_round(None, None, 6_000);
    view.write().unwrap().unconfirmed = None;
    let text = m.encode(true);
    assert_eq!(sample(&text, "otsd_stamper_unconfirmed_age_seconds"), None);
    assert!(text.contains("# TYPE otsd_stamper_unconfirmed_age_seconds gauge"));
}

#[test]
fn without_a_stamper_chain_figures_are_absent() {
    let dir = tempfile::tempdir().unwrap();
    let m = Metrics::new();
    m.watch(sources(dir.path(), Arc::new(NoStamper)));
    let text = m.encode(true);
    assert_eq!(sample(&text, "otsd_pending_commitments"), Some(1.0));
    for name in [
        "otsd_bitcoin_block_height",
        "otsd_bitcoin_node_up",
        "otsd_wallet_balance_satoshis",
        "otsd_stamper_unconfirmed_fee_satoshis",
    ] {
        assert_eq!(sample(&text, name), None, "{name}");
        assert!(text.contains(&format!("# TYPE {name} gauge")), "{name}");
    }
}
