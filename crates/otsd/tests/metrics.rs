//! Issue 17, the Prometheus metrics: `otsd --dev --metrics-address
//! 127.0.0.1:0` serves `GET /metrics` on a listener of its own (learnt from
//! its "metrics listening on" log line), never on the public port. Digests
//! are submitted, devchain mines on request (an empty block first, for a
//! fee bump), a proof completes, and the scrape, parsed as the text format,
//! has every metric of the issue with values that agree with what was done.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{get, post_digest, random_digest, raw, spawn_otsd_logged, Log, TestServer};
use ots_bitcoin::{Auth, RpcClient, RpcConfig};
use ots_proof::Timestamp;
use otsd::config::Settings;
use serde_json::{json, Value};

/// Bounded waits: polls 250 ms apart (two minutes).
const POLLS: usize = 480;
const POLL: Duration = Duration::from_millis(250);
/// Digests submitted.
const DIGESTS: usize = 5;
/// Asks for the OpenMetrics format, as Prometheus does.
const ACCEPT_OPENMETRICS: &str = "Accept: application/openmetrics-text; version=1.0.0\r\n";

/// One scrape, parsed: `# TYPE` lines by family, samples by series.
#[derive(Debug, Default)]
struct Scrape {
    types: BTreeMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
    text: String,
}

impl Scrape {
    /// Parses the text format (OpenMetrics or Prometheus 0.0.4); panics on
    /// a line that is neither a comment nor a well-formed sample.
    fn parse(text: &str) -> Scrape {
        let mut s = Scrape {
            text: text.to_owned(),
            ..Scrape::default()
        };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
                s.types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            s.samples.push(parse_sample(line));
        }
        s
    }

    /// The value of `name` with (at least) `labels`; the only one expected.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?}: several samples");
        found.first().copied()
    }

    fn must(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in\n{}", self.text))
    }
}

/// `name{k="v",...} value [timestamp]`, with the format's escapes in
/// label values (`\\`, `\"`, `\n`).
fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let name_end = line.find(['{', ' ']).expect("a sample has a value");
    let name = line[..name_end].to_owned();
    assert!(
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "metric name {name:?}"
    );
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let end = loop {
            let (start, c) = chars.next().expect("unterminated labels");
            if c == '}' {
                break start;
            }
            if c == ',' {
                continue;
            }
            let mut key = String::from(c);
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            assert_eq!(chars.next().map(|c| c.1), Some('"'), "{line}");
            let mut value = String::new();
            loop {
                match chars.next().expect("unterminated label value").1 {
                    '"' => break,
                    '\\' => match chars.next().expect("escape").1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    c => value.push(c),
                }
            }
            labels.insert(key, value);
        };
        rest = &after[end + 1..];
    }
    let value = rest
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("no value: {line}"));
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("value {v:?}: {line}")),
    };
    (name, labels, value)
}

/// Starts `otsd --dev` mining only on request, with metrics; returns the
/// process, the public and the metrics address, and the log.
async fn start(cal: &std::path::Path) -> (tokio::process::Child, SocketAddr, SocketAddr, Log) {
    let mut args = vec![std::ffi::OsString::from("--dev"), "-c".into(), cal.into()];
    args.extend(
        ["--rpc-address", "127.0.0.1", "--rpc-port", "0"]
            .into_iter()
            .chain(["--dev-rpc-port", "0", "--dev-block-interval", "100000"])
            .chain(["--aggregation-interval", "50"])
            .chain(["--metrics-address", "127.0.0.1:0"])
            .map(Into::into),
    );
    let (child, addr, log) = spawn_otsd_logged(args).await;
    let mut metrics = None;
    for _ in 0..POLLS {
        metrics = log.lock().unwrap().iter().find_map(|l| {
            let rest = l.split("metrics listening on ").nth(1)?;
            rest.trim().parse::<SocketAddr>().ok()
        });
        if metrics.is_some() {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let metrics = metrics.expect("a \"metrics listening on\" log line");
    (child, addr, metrics, log)
}

async fn scrape(metrics: SocketAddr) -> Scrape {
    let r = get(metrics, "/metrics", ACCEPT_OPENMETRICS).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = r.text();
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    Scrape::parse(&text)
}

/// Scrapes until `until` holds of a scrape (bounded); returns it.
async fn scrape_until(metrics: SocketAddr, what: &str, until: impl Fn(&Scrape) -> bool) -> Scrape {
    for _ in 0..POLLS {
        let s = scrape(metrics).await;
        if until(&s) {
            return s;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("waited in vain for {what}:\n{}", scrape(metrics).await.text);
}

/// A regtest address nobody holds (a P2WSH of a random script), to mine to.
fn nobodys_address() -> String {
    let mut script = vec![0x04];
    script.extend(rand::random::<[u8; 4]>());
    script.extend([0x75, 0x51]);
    let script = bitcoin::ScriptBuf::from_bytes(script);
    bitcoin::Address::p2wsh(&script, bitcoin::Network::Regtest).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_on_their_own_listener_with_every_family() {
    let dir = tempfile::tempdir().unwrap();
    let cal = dir.path().join("dev");
    let (mut child, addr, metrics, _log) = start(&cal).await;
    assert_ne!(addr, metrics);
    let rpc_url = std::fs::read_to_string(cal.join("dev-rpc-url")).unwrap();
    let node = RpcClient::new(RpcConfig::new(rpc_url.trim(), Auth::None)).unwrap();

    // Not on the public port, whatever it is asked with.
    let public = get(addr, "/metrics", ACCEPT_OPENMETRICS).await;
    assert_eq!(public.status, 404);
    assert!(!public.text().contains("otsd_"), "{}", public.text());
    // Only /metrics on the metrics port.
    assert_eq!(get(metrics, "/", "").await.status, 404);

    let mut commitments = Vec::new();
    for _ in 0..DIGESTS {
        let digest = random_digest();
        let reply = post_digest(addr, &digest).await;
        assert_eq!(reply.status, 200);
        let proof = Timestamp::deserialize(&reply.body, &digest).unwrap();
        commitments.push(proof.all_attestations()[0].0.to_vec());
    }
    let too_long = raw(addr, &common::post_request(&[7u8; 65])).await.unwrap();
    assert_eq!(too_long.status, 400);

    // The stamper sends its transaction: the unconfirmed gauges appear.
    let name = "otsd_stamper_unconfirmed_fee_satoshis";
    let sent = scrape_until(metrics, "a timestamp transaction", |s| {
        s.value(name, &[]).is_some()
    })
    .await;
    assert!(sent.must(name, &[]) > 0.0);
    let rate = sent.must("otsd_stamper_unconfirmed_fee_rate_sat_per_vbyte", &[]);
    assert!(rate >= 1.0, "at least the relay fee rate: {rate}");
    assert_eq!(sent.must("otsd_stamper_unconfirmed_bumps", &[]), 0.0);
    let age = sent.must("otsd_stamper_unconfirmed_age_seconds", &[]);
    assert!((0.0..120.0).contains(&age), "age {age}");

    // A block without it: the stamper bumps the fee.
    let _: Value = node
        .call("generateblock", json!([nobodys_address(), []]))
        .await
        .unwrap();
    let bumped = scrape_until(metrics, "a fee bump", |s| {
        s.value("otsd_stamper_unconfirmed_bumps", &[]) >= Some(1.0)
    })
    .await;
    assert!(
        bumped.must(name, &[]) > sent.must(name, &[]),
        "a bump pays more"
    );

    // Mined and confirmed: the proofs complete.
    let _: Value = node
        .call("generatetoaddress", json!([2, nobodys_address()]))
        .await
        .unwrap();
    let mut last = Vec::new();
    for c in &commitments {
        let path = format!("/timestamp/{}", hex::encode(c));
        let mut reply = get(addr, &path, "").await;
        for _ in 0..POLLS {
            if reply.status == 200 {
                break;
            }
            tokio::time::sleep(POLL).await;
            reply = get(addr, &path, "").await;
        }
        assert_eq!(reply.status, 200, "last reason: {}", reply.text());
        last = reply.body;
    }
    let (_, header) = common::verify_on_node(&node, commitments.last().unwrap(), &last).await;
    let height = node.block_count().await.unwrap();

    let s = scrape_until(metrics, "the confirmation at the node's height", |s| {
        s.value("otsd_stamper_last_confirmation_timestamp_seconds", &[])
            .is_some()
            && s.value("otsd_stamper_unconfirmed_fee_satoshis", &[])
                .is_none()
            && s.value("otsd_bitcoin_block_height", &[]) == Some(height as f64)
    })
    .await;
    check_every_family(&s);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(s.must("otsd_build_info", &[("version", version)]), 1.0);
    assert!(s.must("otsd_digests_accepted_total", &[]) >= DIGESTS as f64);
    assert!(s.must("otsd_digests_refused_total", &[("reason", "too_long")]) >= 1.0);
    assert_eq!(
        s.must("otsd_digests_refused_total", &[("reason", "unavailable")]),
        0.0
    );
    let rounds = s.must("otsd_rounds_total", &[]);
    assert!(rounds >= 1.0);
    // One journal record per round, in a new calendar.
    assert_eq!(s.must("otsd_journal_records", &[]), rounds);
    assert_eq!(s.must("otsd_journal_size_bytes", &[]), rounds * 44.0);
    assert_eq!(s.must("otsd_round_digests_count", &[]), rounds);
    assert!(s.must("otsd_round_digests_sum", &[]) >= DIGESTS as f64);
    assert_eq!(s.must("otsd_round_duration_seconds_count", &[]), rounds);
    assert_eq!(
        s.must("otsd_journal_fsync_duration_seconds_count", &[]),
        rounds
    );
    assert_eq!(
        s.must(
            "otsd_journal_fsync_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        rounds
    );
    assert_eq!(s.must("otsd_pending_commitments", &[]), 0.0);
    let route = |route, status| {
        s.must(
            "otsd_http_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert!(route("POST /digest", "200") >= DIGESTS as f64);
    assert!(route("POST /digest", "400") >= 1.0);
    assert!(route("GET /timestamp/{commitment}", "200") >= DIGESTS as f64);
    assert!(route("other", "404") >= 1.0, "the public /metrics");
    assert!(s.must("otsd_http_open_connections", &[]) >= 0.0);
    assert_eq!(s.must("otsd_bitcoin_block_height", &[]), height as f64);
    assert_eq!(s.must("otsd_bitcoin_node_up", &[]), 1.0);
    assert!(s.must("otsd_wallet_balance_satoshis", &[]) > 0.0);
    assert_eq!(s.must("otsd_stamper_waiting_transactions", &[]), 0.0);
    assert_eq!(
        s.must("otsd_stamper_last_confirmation_timestamp_seconds", &[]),
        f64::from(header.time)
    );
    assert_eq!(s.must("otsd_stamper_warnings", &[]), 0.0);
    assert_eq!(s.must("otsd_stamper_reorged_transactions_total", &[]), 0.0);
    assert!(s.must("otsd_store_size_bytes", &[]) > 0.0);

    // Without asking for OpenMetrics: the Prometheus text format.
    let r = get(metrics, "/metrics", "").await;
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let plain = Scrape::parse(&r.text());
    assert!(!r.text().contains("# EOF"));
    assert_eq!(
        plain.types.get("otsd_rounds_total").map(String::as_str),
        Some("counter")
    );
    assert!(plain.must("otsd_digests_accepted_total", &[]) >= DIGESTS as f64);
    child.kill().await.unwrap();
}

/// Every family the issue names is described, with its type.
fn check_every_family(s: &Scrape) {
    for (family, kind) in [
        ("otsd_build", "info"),
        ("otsd_digests_accepted", "counter"),
        ("otsd_digests_refused", "counter"),
        ("otsd_rounds", "counter"),
        ("otsd_round_digests", "histogram"),
        ("otsd_round_duration_seconds", "histogram"),
        ("otsd_journal_fsync_duration_seconds", "histogram"),
        ("otsd_pending_commitments", "gauge"),
        ("otsd_journal_records", "gauge"),
        ("otsd_http_requests", "counter"),
        ("otsd_http_open_connections", "gauge"),
        ("otsd_stamper_unconfirmed_age_seconds", "gauge"),
        ("otsd_stamper_unconfirmed_fee_satoshis", "gauge"),
        ("otsd_stamper_unconfirmed_fee_rate_sat_per_vbyte", "gauge"),
        ("otsd_stamper_unconfirmed_bumps", "gauge"),
        ("otsd_stamper_waiting_transactions", "gauge"),
        ("otsd_stamper_last_confirmation_timestamp_seconds", "gauge"),
        ("otsd_stamper_warnings", "gauge"),
        ("otsd_stamper_reorged_transactions", "counter"),
        ("otsd_wallet_balance_satoshis", "gauge"),
        ("otsd_bitcoin_block_height", "gauge"),
        ("otsd_bitcoin_node_up", "gauge"),
        ("otsd_store_size_bytes", "gauge"),
        ("otsd_journal_size_bytes", "gauge"),
    ] {
        assert_eq!(
            s.types.get(family).map(String::as_str),
            Some(kind),
            "# TYPE {family} {kind} in\n{}",
            s.text
        );
    }
    // Every sample belongs to a described family, under the otsd_ prefix.
    for (name, _, _) in &s.samples {
        assert!(name.starts_with("otsd_"), "{name}");
        assert!(
            s.types.keys().any(|f| name.starts_with(f.as_str())),
            "{name} has no # TYPE"
        );
    }
}

/// Without `--metrics-address` nothing listens for metrics, and the public
/// port answers `/metrics` like any unknown path.
#[tokio::test]
async fn the_public_port_never_serves_metrics() {
    let server = TestServer::start(Settings::default()).await;
    let r = get(server.addr, "/metrics", ACCEPT_OPENMETRICS).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "Not found");
    server.stop().await.unwrap();
}

/// An address that cannot be bound stops start-up, naming it.
#[tokio::test]
async fn an_unusable_metrics_address_is_refused_at_start_up() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let server = TestServer::start(Settings {
        metrics_address: Some(address.clone()),
        ..Settings::default()
    })
    .await;
    let err = server.stop().await.expect_err("start-up refused");
    assert!(err.to_string().contains(&address), "{err}");
    assert!(matches!(err, otsd::server::ServeError::Metrics { .. }));
}

/// The metrics address of an `otsd` whose log is `log` (its "metrics
/// listening on" line).
async fn metrics_address(log: &Log) -> SocketAddr {
    for _ in 0..POLLS {
        let found = log.lock().unwrap().iter().find_map(|l| {
            let rest = l.split("metrics listening on ").nth(1)?;
            rest.trim().parse::<SocketAddr>().ok()
        });
        if let Some(a) = found {
            return a;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("no \"metrics listening on\" log line")
}

/// The labels of `upstream`'s submissions that ended in `result`.
fn result<'a>(upstream: &'a str, result: &'a str) -> [(&'a str, &'a str); 2] {
    [("upstream", upstream), ("result", result)]
}

fn accepted(upstream: &str) -> [(&str, &str); 2] {
    result(upstream, "accepted")
}

fn failed(upstream: &str) -> [(&str, &str); 2] {
    result(upstream, "failed")
}

/// Unix time now, seconds.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Issue 17's "each upstream's success, latency and backlog", for both
/// kinds of server with upstreams: a private calendar P (`otsd
/// --upstream`) and an aggregator G (`otsd aggregate`) in front of it,
/// each with a working upstream and one that is down. The scrapes parse,
/// name every `otsd_upstream_*` family, label the configured URLs, and
/// agree with what was submitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_and_aggregator_metrics_follow_each_upstream() {
    // The working upstream: a calendar without Bitcoin (it replies with
    // its pending attestation; that is all P asks of it here).
    let upstream = TestServer::start(Settings::default()).await;
    let up_url = format!("http://{}", upstream.addr);
    let down_url = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let root = tempfile::tempdir().unwrap();
    let cal = common::init_calendar(root.path());
    let cal_arg = cal.display().to_string();
    let (_p, p_addr, p_log) = spawn_otsd_logged([
        "-c",
        &cal_arg,
        "--rpc-address",
        "127.0.0.1",
        "--rpc-port",
        "0",
        "--aggregation-interval",
        "50",
        "--no-bitcoin",
        "--upstream",
        &up_url,
        "--upstream",
        &down_url,
        "--upstream-poll-interval",
        "0.2",
        "--metrics-address",
        "127.0.0.1:0",
    ])
    .await;
    let p_metrics = metrics_address(&p_log).await;
    let p_url = format!("http://{p_addr}");
    let (_g, g_addr, g_log) = spawn_otsd_logged([
        "aggregate",
        "--upstream",
        &p_url,
        "--upstream",
        &down_url,
        "--rpc-address",
        "127.0.0.1",
        "--rpc-port",
        "0",
        "--interval",
        "100",
        "--upstream-timeout",
        "2000",
        "--metrics-address",
        "127.0.0.1:0",
    ])
    .await;
    let g_metrics = metrics_address(&g_log).await;

    // Three digests through G (each a round of its own: one after the
    // other), two straight to P.
    for _ in 0..3 {
        let r = post_digest(g_addr, &random_digest()).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for _ in 0..2 {
        let r = post_digest(p_addr, &random_digest()).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let before = unix_now();

    // P: every journal commitment accepted by the working upstream, none
    // by the one that is down (its backlog is all of them).
    let up = [("upstream", up_url.as_str())];
    let down = [("upstream", down_url.as_str())];
    let s = scrape_until(p_metrics, "P's upstream submissions", |s| {
        let records = s.value("otsd_journal_records", &[]).unwrap_or(0.0);
        records >= 5.0
            && s.value("otsd_upstream_submissions_total", &accepted(&up_url)) == Some(records)
            && s.value("otsd_upstream_backlog", &up) == Some(0.0)
            && s.value("otsd_upstream_submissions_total", &failed(&down_url)) >= Some(1.0)
    })
    .await;
    check_upstream_families(&s, true);
    let records = s.must("otsd_journal_records", &[]);
    assert_eq!(records, 5.0, "3 round tips from G and 2 digests");
    assert_eq!(s.must("otsd_upstream_backlog", &down), records);
    assert_eq!(
        s.must("otsd_upstream_submissions_total", &accepted(&down_url)),
        0.0
    );
    assert_eq!(
        s.must(
            "otsd_upstream_submissions_total",
            &result(&up_url, "refused")
        ),
        0.0
    );
    // Each accepted reply's duration observed, none of the failures'.
    assert_eq!(
        s.must("otsd_upstream_request_duration_seconds_count", &up),
        records
    );
    assert_eq!(
        s.must("otsd_upstream_request_duration_seconds_count", &down),
        0.0
    );
    assert!(s.must("otsd_upstream_request_duration_seconds_sum", &up) > 0.0);
    // No Bitcoin upstream: all open, none completed.
    assert_eq!(s.must("otsd_upstream_open", &up), records);
    assert_eq!(s.must("otsd_upstream_completions_total", &up), 0.0);
    let last = s.must("otsd_upstream_last_success_timestamp_seconds", &up);
    assert!(last <= unix_now() && last >= before - 120.0, "{last}");
    assert_eq!(
        s.value("otsd_upstream_last_success_timestamp_seconds", &down),
        None,
        "never succeeded: no sample"
    );
    assert!(s.must("otsd_upstream_last_error_timestamp_seconds", &down) >= before - 120.0);
    assert_eq!(
        s.value("otsd_upstream_last_error_timestamp_seconds", &up),
        None
    );

    // G: three rounds, each accepted by P and failed by the one down.
    let p_up = [("upstream", p_url.as_str())];
    let s = scrape(g_metrics).await;
    check_upstream_families(&s, false);
    for (family, kind) in [
        ("otsd_aggregate_rounds", "counter"),
        ("otsd_aggregate_rounds_unavailable", "counter"),
        ("otsd_aggregate_digests", "counter"),
        ("otsd_aggregate_last_round_digests", "gauge"),
        ("otsd_http_open_connections", "gauge"),
        ("otsd_build", "info"),
    ] {
        assert_eq!(
            s.types.get(family).map(String::as_str),
            Some(kind),
            "{family}\n{}",
            s.text
        );
    }
    // None of the calendar's own families: an aggregator journals nothing.
    for absent in [
        "otsd_digests_accepted",
        "otsd_rounds",
        "otsd_journal_records",
        "otsd_upstream_backlog",
    ] {
        assert!(!s.types.contains_key(absent), "{absent} in\n{}", s.text);
    }
    assert_eq!(s.must("otsd_aggregate_rounds_total", &[]), 3.0);
    assert_eq!(s.must("otsd_aggregate_digests_total", &[]), 3.0);
    assert_eq!(s.must("otsd_aggregate_rounds_unavailable_total", &[]), 0.0);
    assert_eq!(s.must("otsd_aggregate_last_round_digests", &[]), 1.0);
    assert_eq!(
        s.must("otsd_upstream_submissions_total", &accepted(&p_url)),
        3.0
    );
    assert_eq!(
        s.must("otsd_upstream_submissions_total", &failed(&down_url)),
        3.0
    );
    assert_eq!(
        s.must("otsd_upstream_request_duration_seconds_count", &p_up),
        3.0
    );
    assert_eq!(
        s.must("otsd_upstream_request_duration_seconds_count", &down),
        0.0
    );
    assert!(s.must("otsd_upstream_last_success_timestamp_seconds", &p_up) >= before - 120.0);
    assert!(s.must("otsd_upstream_last_error_timestamp_seconds", &down) >= before - 120.0);
    upstream.stop().await.unwrap();
}

/// The `otsd_upstream_*` families are described with their types, and
/// every sample of them is labelled with an upstream (`backlog`: only a
/// calendar's upstreams have one).
fn check_upstream_families(s: &Scrape, calendar: bool) {
    let mut families = vec![
        ("otsd_upstream_submissions", "counter"),
        ("otsd_upstream_request_duration_seconds", "histogram"),
        ("otsd_upstream_last_success_timestamp_seconds", "gauge"),
        ("otsd_upstream_last_error_timestamp_seconds", "gauge"),
    ];
    if calendar {
        families.extend([
            ("otsd_upstream_backlog", "gauge"),
            ("otsd_upstream_open", "gauge"),
            ("otsd_upstream_completions", "counter"),
        ]);
    }
    for (family, kind) in families {
        assert_eq!(
            s.types.get(family).map(String::as_str),
            Some(kind),
            "# TYPE {family} {kind} in\n{}",
            s.text
        );
    }
    for (name, labels, _) in &s.samples {
        assert!(name.starts_with("otsd_"), "{name}");
        if name.starts_with("otsd_upstream_") {
            assert!(labels.contains_key("upstream"), "{name} {labels:?}");
        }
    }
}
