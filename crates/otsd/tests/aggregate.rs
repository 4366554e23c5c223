//! `otsd aggregate`, as real processes: an aggregator in front of two real
//! calendars stamping into one shared chain (devchain, in this process),
//! stamped through by our calendar client (and the reference client when
//! `OTS_REFERENCE_CLIENT` is set), upgraded at the calendars and verified
//! against the chain's headers; and its faults: an upstream down, both
//! down, and small fake upstreams (axum on 127.0.0.1:0) that answer
//! garbage, too much, a proof of another message, or nothing.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use common::node::{Backend, TestNode, WALLET};
use common::{get, post_digest, random_digest, spawn_otsd_logged, Log, Resp};
use ots_proof::{Attestation, DetachedTimestampFile, Op, Timestamp};
use otsd::calendar::Calendar;
use otsd::journal::JournalReader;
use serde_json::{json, Value};

/// Polls 250 ms apart, this many times at most.
const POLLS: usize = 480;
const POLL: Duration = Duration::from_millis(250);

/// The aggregator's round in these tests, milliseconds.
const INTERVAL_MS: &str = "200";
/// The aggregator's upstream timeout in these tests (but those of the
/// timeout), milliseconds.
const UPSTREAM_TIMEOUT_MS: &str = "20000";

async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..POLLS {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("timed out waiting for {what}");
}

/// A child process (killed on drop) with its address and log.
struct Proc {
    child: tokio::process::Child,
    addr: SocketAddr,
    log: Log,
}

impl Proc {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn info(&self) -> Value {
        let reply = get(self.addr, "/", "Accept: application/json\r\n").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        serde_json::from_slice(&reply.body).unwrap()
    }

    fn dump_log(&self) {
        for l in self.log.lock().unwrap().iter() {
            eprintln!("{l}");
        }
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `otsd aggregate` in front of `upstreams`, on 127.0.0.1 port 0, with a
/// short round and one HTTP thread, and `extra` flags.
async fn aggregator(upstreams: &[String], extra: &[&str]) -> Proc {
    let mut args: Vec<String> = ["aggregate", "--rpc-address", "127.0.0.1", "--rpc-port", "0"]
        .into_iter()
        .chain(["--interval", INTERVAL_MS, "--http-threads", "1"])
        .map(String::from)
        .collect();
    for u in upstreams {
        args.push("--upstream".into());
        args.push(u.clone());
    }
    // Generous unless the test is about the timeout: the machine running
    // the tests may be loaded, and a slow answer is not the point.
    if !extra.contains(&"--upstream-timeout") {
        args.extend(["--upstream-timeout".into(), UPSTREAM_TIMEOUT_MS.into()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let (child, addr, log) = spawn_otsd_logged(args).await;
    Proc { child, addr, log }
}

/// Our client as `ots stamp` sets it up, with a timeout over the
/// aggregator's upstream timeout.
fn client() -> ots_calendar::Client {
    ots_calendar::Client::new(&ots_calendar::ClientConfig {
        timeout: Duration::from_secs(60),
        ..ots_calendar::ClientConfig::default()
    })
    .unwrap()
}

/// A calendar process in `dir` (initialised with `uri`); with `node`, it
/// stamps from `wallet` on it, else `--no-bitcoin`.
async fn calendar(dir: &Path, uri: &str, node: Option<(&TestNode, &str)>) -> Proc {
    Calendar::init(dir, uri, "bcrt1qdonation").unwrap();
    let mut args: Vec<String> = vec!["-c".into(), dir.display().to_string()];
    args.extend(
        ["--rpc-address", "127.0.0.1", "--rpc-port", "0"]
            .into_iter()
            .chain(["--aggregation-interval", "50"])
            .map(String::from),
    );
    match node {
        Some((node, wallet)) => args.extend(
            ["--btc-regtest", "--btc-wallet", wallet]
                .into_iter()
                .chain(["--btc-min-confirmations", "2", "--btc-min-tx-interval", "0"])
                .chain(["--btc-poll-interval", "0.1", "--bitcoin-node", &node.url()])
                .map(String::from),
        ),
        None => args.push("--no-bitcoin".into()),
    }
    let (child, addr, log) = spawn_otsd_logged(args).await;
    Proc { child, addr, log }
}

/// The commitments in a calendar's journal.
fn journal(dir: &Path) -> Vec<Vec<u8>> {
    JournalReader::open(dir)
        .unwrap()
        .read_range(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|c| c.to_vec())
        .collect()
}

/// A URL nothing listens on (a port bound a moment ago, then closed).
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

/// Our calendar client (the one `ots stamp` uses) submitting `digest`.
async fn submit(aggregator: &Proc, digest: &[u8]) -> Timestamp {
    client()
        .calendar(&aggregator.url())
        .unwrap()
        .submit(digest)
        .await
        .unwrap_or_else(|e| {
            aggregator.dump_log();
            panic!("submission through the aggregator: {e}")
        })
}

/// The pending attestations of a proof: (calendar URI, commitment).
fn pendings(ts: &Timestamp) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = ts
        .all_attestations()
        .into_iter()
        .filter_map(|(msg, a)| match a {
            Attestation::Pending { uri } => Some((uri.clone(), msg.to_vec())),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// Merges `reply` into `ts` at every node whose message is `msg`.
fn merge_at(ts: &mut Timestamp, msg: &[u8], reply: &Timestamp) {
    if ts.msg() == msg {
        ts.merge(reply.clone()).unwrap();
        return;
    }
    let ops: Vec<Op> = ts.ops().map(|(op, _)| op.clone()).collect();
    for op in ops {
        merge_at(ts.child_mut(&op).unwrap(), msg, reply);
    }
}

/// GET /timestamp of `commitment` at `cal`: the proof once complete.
async fn completed(cal: SocketAddr, commitment: &[u8]) -> Option<Timestamp> {
    let r = get(cal, &format!("/timestamp/{}", hex::encode(commitment)), "").await;
    (r.status == 200).then(|| Timestamp::deserialize(&r.body, commitment).unwrap())
}

/// Every Bitcoin attestation of `ts` verifies against `node`'s headers;
/// returns how many there are.
async fn verify_all(node: &TestNode, ts: &Timestamp) -> usize {
    let rpc = node.node();
    let mut n = 0;
    for (msg, a) in ts.all_attestations() {
        if let Attestation::Bitcoin { height } = a {
            let hash = rpc.block_hash(*height).await.unwrap().expect("the block");
            let header = rpc.block_header(&hash).await.unwrap().unwrap();
            ots_proof::verify::verify_bitcoin_header(msg, &header)
                .expect("the attestation verifies against the chain");
            n += 1;
        }
    }
    n
}

/// The end to end path: digests stamped through the aggregator get both
/// calendars' pending attestations under one tip per round; each calendar
/// journals one commitment per aggregator round; once mined, the proofs
/// completed at each calendar make the whole proof verify on the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_aggregator_to_two_calendars_on_one_chain() {
    let node = TestNode::start(Backend::Dev).await;
    // The second calendar spends from a wallet of its own, funded by the
    // first's: two stampers on one wallet would spend the same coins.
    let wallet_b = "ots-b";
    let _: Value = node.call("createwallet", json!([wallet_b])).await;
    let mut config = ots_bitcoin::RpcConfig::new(node.url(), ots_bitcoin::Auth::None);
    config.wallet = Some(wallet_b.into());
    let to_b = ots_bitcoin::RpcClient::new(config)
        .unwrap()
        .new_address()
        .await
        .unwrap();
    let _: Value = node
        .wallet()
        .wallet_call("sendtoaddress", json!([to_b, 10.0]))
        .await
        .unwrap();
    node.mine(1).await;

    let tmp = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (uri_a, uri_b) = ("http://calendar-a.test", "http://calendar-b.test");
    let cal_a = calendar(&dir_a, uri_a, Some((&node, WALLET))).await;
    let cal_b = calendar(&dir_b, uri_b, Some((&node, wallet_b))).await;
    let agg = aggregator(&[cal_a.url(), cal_b.url()], &["--upstream-min", "2"]).await;

    // Several digests at once (one round, or two if they straddle a
    // tick), then one alone.
    let digests: Vec<Vec<u8>> = (0..4).map(|_| random_digest()).collect();
    let mut proofs: Vec<(Vec<u8>, Timestamp)> = Vec::new();
    let first = futures_join(&agg, &digests[..3]).await;
    proofs.extend(digests[..3].iter().cloned().zip(first));
    proofs.push((digests[3].clone(), submit(&agg, &digests[3]).await));

    // The reference client stamps a file through the aggregator too.
    let work = tempfile::tempdir().unwrap();
    let reference = common_reference();
    if let Some(client) = &reference {
        std::fs::write(work.path().join("hello.txt"), b"through an aggregator\n").unwrap();
        let out = std::process::Command::new(client)
            .args([
                "--no-cache",
                "stamp",
                "-c",
                &agg.url(),
                "-m",
                "1",
                "hello.txt",
            ])
            .current_dir(work.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "reference stamp: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let file = std::fs::read(work.path().join("hello.txt.ots")).unwrap();
        let detached = DetachedTimestampFile::deserialize(&file).unwrap();
        proofs.push((
            detached.file_digest().to_vec(),
            detached.timestamp().clone(),
        ));
    } else {
        eprintln!("reference client part skipped: set OTS_REFERENCE_CLIENT to run it");
    }

    // Each proof: both calendars' pending attestations, on 44-byte
    // commitments, under the same tip per round.
    let mut commitments_a = std::collections::BTreeSet::new();
    let mut commitments_b = std::collections::BTreeSet::new();
    for (digest, ts) in &proofs {
        assert_eq!(ts.msg(), digest.as_slice());
        let p = pendings(ts);
        let uris: Vec<&str> = p.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(uris, [uri_a, uri_b], "one attestation per calendar");
        for (uri, c) in &p {
            assert_eq!(c.len(), 44, "a calendar commitment");
            if uri == uri_a {
                commitments_a.insert(c.clone());
            } else {
                commitments_b.insert(c.clone());
            }
        }
    }
    // One commitment per aggregator round at each calendar, and no other.
    let rounds = agg.info().await["rounds"].as_u64().unwrap() as usize;
    assert!(rounds >= 2, "at least the two rounds");
    let journal_a: std::collections::BTreeSet<_> = journal(&dir_a).into_iter().collect();
    let journal_b: std::collections::BTreeSet<_> = journal(&dir_b).into_iter().collect();
    assert_eq!(
        journal_a.len(),
        rounds,
        "calendar A: one commitment per round"
    );
    assert_eq!(
        journal_b.len(),
        rounds,
        "calendar B: one commitment per round"
    );
    assert_eq!(commitments_a, journal_a);
    assert_eq!(commitments_b, journal_b);

    // Mined: each calendar completes its commitments.
    let wanted: Vec<(SocketAddr, Vec<u8>)> = commitments_a
        .iter()
        .map(|c| (cal_a.addr, c.clone()))
        .chain(commitments_b.iter().map(|c| (cal_b.addr, c.clone())))
        .collect();
    let replies = until("both calendars to complete every commitment", || {
        let (node, wanted) = (&node, &wanted);
        async move {
            node.mine(1).await;
            let mut out = Vec::new();
            for (addr, c) in wanted {
                out.push((c.clone(), completed(*addr, c).await?));
            }
            Some(out)
        }
    })
    .await;

    // Upgraded here: each pending attestation asked at its own calendar
    // and merged where it is (what `ots upgrade` does for every pending
    // attestation it finds), then verified on the chain.
    for (digest, ts) in &mut proofs {
        for (c, reply) in &replies {
            merge_at(ts, c, reply);
        }
        let bitcoin = verify_all(&node, ts).await;
        assert!(
            bitcoin >= 2,
            "{}: one Bitcoin attestation per calendar",
            hex::encode(digest)
        );
    }
    if let Some(client) = &reference {
        // The reference verifies the upgraded file on the chain.
        // The reference upgrades its own file through the fork, asking
        // both calendars (`-c` overrides the attestations' URIs, which
        // name no real host here; it stops once one branch is complete,
        // as it always does), then verifies it on the chain.
        let out = std::process::Command::new(client)
            .args([
                "--no-cache",
                "upgrade",
                "-c",
                &cal_a.url(),
                "-c",
                &cal_b.url(),
            ])
            .arg("hello.txt.ots")
            .current_dir(work.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "reference upgrade: {err}");
        let file = std::fs::read(work.path().join("hello.txt.ots")).unwrap();
        let upgraded = DetachedTimestampFile::deserialize(&file).unwrap();
        let bitcoin = verify_all(&node, upgraded.timestamp()).await;
        eprintln!("the reference's upgrade: {bitcoin} Bitcoin attestation(s)");
        assert!(
            bitcoin >= 1,
            "the reference's upgrade reaches Bitcoin: {err}"
        );
        let out = std::process::Command::new(client)
            .args(["--no-cache", "--btc-regtest", "--bitcoin-node", &node.url()])
            .args(["verify", "hello.txt.ots"])
            .current_dir(work.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "reference verify: {err}");
        assert!(
            err.contains("Success! Bitcoin block"),
            "reference verify: {err}"
        );
    }
    agg.stop().await;
    cal_a.stop().await;
    cal_b.stop().await;
}

/// The reference client, if `OTS_REFERENCE_CLIENT` names it.
fn common_reference() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("OTS_REFERENCE_CLIENT")?);
    assert!(
        path.is_file(),
        "OTS_REFERENCE_CLIENT={} is not a file",
        path.display()
    );
    Some(path)
}

/// Submits `digests` at once; their proofs, in order.
async fn futures_join(agg: &Proc, digests: &[Vec<u8>]) -> Vec<Timestamp> {
    let url = agg.url();
    let tasks: Vec<_> = digests
        .iter()
        .cloned()
        .map(|d| {
            let url = url.clone();
            tokio::spawn(async move { client().calendar(&url).unwrap().submit(&d).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(ts) => out.push(ts),
            Err(e) => {
                agg.dump_log();
                panic!("submission through the aggregator: {e}");
            }
        }
    }
    out
}

/// One upstream down for the whole test: with `--upstream-min 1` every
/// client gets the other's attestation; the calendar journals one
/// commitment per round; the info page names the failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_upstream_down_the_other_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cal");
    let uri = "http://calendar-up.test";
    let cal = calendar(&dir, uri, None).await;
    let dead = dead_url();
    let agg = aggregator(&[dead.clone(), cal.url()], &[]).await;
    for round in 0..2 {
        let digests: Vec<Vec<u8>> = (0..3).map(|_| random_digest()).collect();
        for (d, ts) in digests.iter().zip(futures_join(&agg, &digests).await) {
            assert_eq!(ts.msg(), d.as_slice());
            let p = pendings(&ts);
            assert_eq!(
                p.len(),
                1,
                "round {round}: the live calendar's attestation only"
            );
            assert_eq!(p[0].0, uri);
        }
    }
    let info = agg.info().await;
    let rounds = info["rounds"].as_u64().unwrap() as usize;
    assert_eq!(journal(&dir).len(), rounds, "one commitment per round");
    assert_eq!(info["rounds_unavailable"], 0);
    assert_eq!(info["upstream_min"], 1);
    let ups = info["upstreams"].as_array().unwrap();
    assert_eq!(ups.len(), 2);
    assert_eq!(ups[0]["answered"], 0);
    assert_eq!(ups[0]["failed"].as_u64().unwrap() as usize, rounds);
    let err = ups[0]["last_error"].as_str().unwrap();
    assert!(err.contains("unreachable"), "{err}");
    assert!(ups[0]["last_success"].is_null());
    assert_eq!(ups[1]["answered"].as_u64().unwrap() as usize, rounds);
    // Warned about once, not every round.
    let warned = agg
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("upstream reply not used"))
        .count();
    assert!(rounds >= 2);
    assert_eq!(warned, 1, "the same failure is warned about once");
    assert!(ups[1]["last_success"].is_u64());
    // The HTML page names both upstreams.
    let html = get(agg.addr, "/", "").await;
    assert!(html
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(html.text().contains(&cal.url()), "{}", html.text());
    assert!(html.text().contains(dead.trim_start_matches("http://")));
    agg.stop().await;
    cal.stop().await;
}

/// Both upstreams down: a 503 whose body names both failures.
#[tokio::test]
async fn both_upstreams_down_is_a_503_naming_both() {
    let (a, b) = (dead_url(), dead_url());
    let agg = aggregator(&[a.clone(), b.clone()], &[]).await;
    let r = post_digest(agg.addr, &random_digest()).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    let body = r.text();
    assert!(
        body.starts_with("upstream calendars unavailable: 0 of 2 answered, at least 1 needed"),
        "{body}"
    );
    for url in [&a, &b] {
        assert!(
            body.contains(&format!("calendar {url}/: unreachable")),
            "{body}"
        );
    }
    let info = agg.info().await;
    assert_eq!(info["rounds_unavailable"], 1);
    assert_eq!(info["digests"], 0);
    agg.stop().await;
}

/// How a fake upstream answers `POST /digest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fake {
    /// As a calendar: `prepend(time) append(mac)` and its pending
    /// attestation.
    Good,
    /// Bytes that are no timestamp.
    Garbage,
    /// A valid timestamp of the digest, 10,001 bytes or more.
    Oversized,
    /// A valid timestamp of another (1-byte) message, which does not
    /// decode rooted at the submitted tip.
    OtherRoot,
    /// Never answers.
    Hang,
    /// A valid timestamp of the digest just under 10,000 bytes: no room
    /// left for the client's path.
    Bulky,
    /// A valid timestamp of the digest 256 nodes deep (the format's
    /// limit): no depth left for the client's path.
    Deep,
    /// `307` to another host (`localhost` for `127.0.0.1`), which would
    /// answer as a calendar naming [`fake_uri`]`(Redirect)`.
    Redirect,
    /// A calendar's reply with, beside its pending attestation, a branch
    /// claiming a Bitcoin attestation already (no calendar can have one
    /// for a digest it was just sent).
    ClaimsBitcoin,
    /// Only a Bitcoin attestation, nothing pending.
    OnlyBitcoin,
    /// Under 10,000 bytes that decode to megabytes of messages: chains of
    /// `reverse` on 4001-byte messages.
    Bomb,
}

/// The URI a fake's attestations name.
fn fake_uri(kind: Fake) -> String {
    format!("http://fake-{kind:?}.test").to_lowercase()
}

/// A timestamp of `msg` that fills more than 10,000 bytes.
fn oversized(msg: &[u8]) -> Vec<u8> {
    let mut ts = Timestamp::new(msg.to_vec()).unwrap();
    for i in 0..12 {
        let uri = format!("http://{}.test/{i}", "x".repeat(900));
        ts.add_attestation(Attestation::pending(uri).unwrap());
    }
    let bytes = ts.serialize().unwrap();
    assert!(bytes.len() > ots_calendar::MAX_REPLY_LEN);
    bytes
}

/// A timestamp of `msg` of 9,995 bytes: within a client's 10,000, but
/// not with a Merkle path before it.
fn bulky(msg: &[u8]) -> Vec<u8> {
    let mut ts = Timestamp::new(msg.to_vec()).unwrap();
    let uri = |i: usize, len: usize| {
        let head = format!("http://{i}.test/");
        format!("{head}{}", "x".repeat(len - head.len()))
    };
    for i in 0..9 {
        ts.add_attestation(Attestation::pending(uri(i, 1000)).unwrap());
    }
    // One more item: a 0xff, 0x00, the tag, two 2-byte lengths, the URI.
    let len = 9995 - ts.serialize().unwrap().len() - 14;
    ts.add_attestation(Attestation::pending(uri(9, len)).unwrap());
    let bytes = ts.serialize().unwrap();
    assert_eq!(bytes.len(), 9995);
    bytes
}

/// A proof valid for the 1-byte message `[0]` only: `append(4095 bytes)`
/// on a 32-byte tip exceeds the 4096-byte result limit.
fn other_root() -> Vec<u8> {
    let mut ts = Timestamp::new(vec![0u8]).unwrap();
    ts.add_path([Op::Append(vec![7; 4095]), Op::Sha256])
        .unwrap()
        .add_attestation(Attestation::pending(fake_uri(Fake::OtherRoot)).unwrap());
    let bytes = ts.serialize().unwrap();
    assert!(Timestamp::deserialize(&bytes, &[0u8]).is_ok());
    assert!(Timestamp::deserialize(&bytes, &[0u8; 32]).is_err());
    bytes
}

/// A timestamp of `msg` 256 nodes deep: 255 `reverse`s, then a pending
/// attestation.
fn deep(msg: &[u8]) -> Vec<u8> {
    let mut ts = Timestamp::new(msg.to_vec()).unwrap();
    ts.add_path(std::iter::repeat_n(Op::Reverse, 255))
        .unwrap()
        .add_attestation(Attestation::pending(fake_uri(Fake::Deep)).unwrap());
    let bytes = ts.serialize().unwrap();
    assert!(Timestamp::deserialize(&bytes, msg).is_ok());
    bytes
}

/// A calendar's reply to `msg`, naming `kind`'s URI.
fn calendar_reply(msg: &[u8], kind: Fake) -> Vec<u8> {
    let mut ts = Timestamp::new(msg.to_vec()).unwrap();
    let t = otsd::aggregator::unix_time().to_be_bytes().to_vec();
    ts.add_path([
        Op::Prepend(t),
        Op::Append(rand::random::<[u8; 8]>().to_vec()),
    ])
    .unwrap()
    .add_attestation(Attestation::pending(fake_uri(kind)).unwrap());
    ts.serialize().unwrap()
}

/// Starts a fake upstream; returns its URL and how many submissions it
/// received.
async fn fake(kind: Fake) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let elsewhere = format!("http://localhost:{}/elsewhere", addr.port());
    let app = axum::Router::new()
        .route(
            "/digest",
            axum::routing::post(move |body: Bytes| {
                let hits = counted.clone();
                let elsewhere = elsewhere.clone();
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let ok = |b: Vec<u8>| (StatusCode::OK, b).into_response();
                    match kind {
                        Fake::Good => ok(calendar_reply(&body, kind)),
                        Fake::Garbage => ok(b"\x00\x01 this is not a timestamp".to_vec()),
                        Fake::Oversized => ok(oversized(&body)),
                        Fake::OtherRoot => ok(other_root()),
                        Fake::Hang => std::future::pending().await,
                        Fake::Bulky => ok(bulky(&body)),
                        Fake::Deep => ok(deep(&body)),
                        Fake::ClaimsBitcoin => {
                            let mut ts =
                                Timestamp::deserialize(&calendar_reply(&body, kind), &body)
                                    .unwrap();
                            ts.add_op(Op::Sha256)
                                .unwrap()
                                .add_attestation(Attestation::Bitcoin { height: 1 });
                            ok(ts.serialize().unwrap())
                        }
                        Fake::Bomb => {
                            let ts = common::decoding_bomb(&body, &fake_uri(kind), 20);
                            ok(ts.serialize().unwrap())
                        }
                        Fake::OnlyBitcoin => {
                            let mut ts = Timestamp::new(body.to_vec()).unwrap();
                            ts.add_op(Op::Sha256)
                                .unwrap()
                                .add_attestation(Attestation::Bitcoin { height: 1 });
                            ok(ts.serialize().unwrap())
                        }
                        Fake::Redirect => {
                            (StatusCode::TEMPORARY_REDIRECT, [("location", elsewhere)])
                                .into_response()
                        }
                    }
                }
            }),
        )
        .route(
            "/elsewhere",
            axum::routing::post(|body: Bytes| async move { calendar_reply(&body, Fake::Redirect) }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), hits)
}

/// A good fake and a `bad` one: with `--upstream-min 1` the clients get
/// the good one's attestation only and the info page names the bad one's
/// error (`expected`); with `--upstream-min 2`, a 503 naming it. Each
/// upstream gets one submission per round.
async fn bad_upstream(bad: Fake, expected: &str, extra: &[&str]) {
    bad_upstream_as(bad, expected, expected, extra).await
}

/// [`bad_upstream`], with the error expected under `--upstream-min 2`.
async fn bad_upstream_as(bad: Fake, expected: &str, strict_expected: &str, extra: &[&str]) {
    let (good_url, good_hits) = fake(Fake::Good).await;
    let (bad_url, bad_hits) = fake(bad).await;
    let upstreams = [good_url, bad_url.clone()];
    let agg = aggregator(&upstreams, extra).await;
    let digests: Vec<Vec<u8>> = (0..3).map(|_| random_digest()).collect();
    for (d, ts) in digests.iter().zip(futures_join(&agg, &digests).await) {
        assert_eq!(ts.msg(), d.as_slice());
        let p = pendings(&ts);
        assert_eq!(p.len(), 1, "{bad:?}: the good upstream's attestation only");
        assert_eq!(p[0].0, fake_uri(Fake::Good));
    }
    let info = agg.info().await;
    let rounds = info["rounds"].as_u64().unwrap() as usize;
    assert_eq!(
        good_hits.load(Ordering::SeqCst),
        rounds,
        "one submission per round"
    );
    assert_eq!(
        bad_hits.load(Ordering::SeqCst),
        rounds,
        "one submission per round"
    );
    let bad_status = &info["upstreams"][1];
    assert_eq!(bad_status["answered"], 0);
    let err = bad_status["last_error"].as_str().unwrap();
    assert!(err.contains(expected), "{bad:?}: {err}");
    assert!(
        agg.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("upstream reply not used") && l.contains(expected)),
        "{bad:?}: the refused reply is logged"
    );
    agg.stop().await;

    let mut strict: Vec<&str> = vec!["--upstream-min", "2"];
    strict.extend_from_slice(extra);
    let agg = aggregator(&upstreams, &strict).await;
    let r: Resp = post_digest(agg.addr, &random_digest()).await;
    assert_eq!(r.status, 503, "{bad:?}");
    let body = r.text();
    assert!(
        body.starts_with("upstream calendars unavailable: 1 of 2 answered, at least 2 needed"),
        "{bad:?}: {body}"
    );
    assert!(
        body.contains(&format!("calendar {bad_url}/")),
        "{bad:?}: {body}"
    );
    assert!(body.contains(strict_expected), "{bad:?}: {body}");
    agg.stop().await;
}

#[tokio::test]
async fn an_upstream_answering_garbage_is_dropped() {
    bad_upstream(Fake::Garbage, "malformed reply", &[]).await;
}

#[tokio::test]
async fn an_oversized_upstream_reply_is_dropped() {
    bad_upstream(Fake::Oversized, "reply exceeds 10000 bytes", &[]).await;
}

#[tokio::test]
async fn a_proof_rooted_at_another_message_is_dropped() {
    bad_upstream(Fake::OtherRoot, "malformed reply", &[]).await;
}

#[tokio::test]
async fn a_reply_leaving_no_room_for_the_path_is_dropped() {
    bad_upstream(Fake::Bulky, "leaves no room in a 10000-byte proof", &[]).await;
}

#[tokio::test]
async fn a_reply_leaving_no_depth_for_the_path_is_dropped() {
    bad_upstream(Fake::Deep, "nodes deep", &[]).await;
}

#[tokio::test]
async fn a_reply_decoding_to_megabytes_is_dropped() {
    bad_upstream(Fake::Bomb, "bytes once decoded", &[]).await;
}

#[tokio::test]
async fn a_reply_with_nothing_pending_is_dropped() {
    bad_upstream(Fake::OnlyBitcoin, "no pending attestation", &[]).await;
}

/// What an upstream claims beyond its pending attestations is not passed
/// on: a client given a Bitcoin attestation with its reply would take its
/// proof for complete and never upgrade it.
#[tokio::test]
async fn only_the_pending_paths_of_a_reply_reach_the_clients() {
    let (url, hits) = fake(Fake::ClaimsBitcoin).await;
    let agg = aggregator(&[url], &[]).await;
    let digest = random_digest();
    let ts = submit(&agg, &digest).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let atts = ts.all_attestations();
    assert!(
        atts.iter()
            .all(|(_, a)| matches!(a, Attestation::Pending { .. })),
        "{atts:?}"
    );
    assert_eq!(pendings(&ts).len(), 1);
    agg.stop().await;
}

#[tokio::test]
async fn a_redirect_to_another_host_is_not_followed() {
    bad_upstream(Fake::Redirect, "unexpected HTTP status 307", &[]).await;
}

#[tokio::test]
async fn an_upstream_that_never_answers_times_out() {
    // The grace (after the good one answered) ends the wait with min 1
    // ("within 300ms of the others'"); the timeout with min 2 ("within
    // 5000ms").
    bad_upstream_as(
        Fake::Hang,
        "no answer within 300ms of the others' (--upstream-grace)",
        "no answer within 5000ms (--upstream-timeout)",
        &["--upstream-timeout", "5000", "--upstream-grace", "300"],
    )
    .await;
}

/// Only upstreams that never answer: a 503 once the timeout has passed.
#[tokio::test]
async fn upstreams_that_never_answer_are_a_503_after_the_timeout() {
    let (a, _) = fake(Fake::Hang).await;
    let (b, _) = fake(Fake::Hang).await;
    let agg = aggregator(&[a, b], &["--upstream-timeout", "500"]).await;
    let r = post_digest(agg.addr, &random_digest()).await;
    assert_eq!(r.status, 503);
    let body = r.text();
    assert!(
        body.starts_with("upstream calendars unavailable: 0 of 2 answered"),
        "{body}"
    );
    assert_eq!(
        body.matches("no answer within 500ms (--upstream-timeout)")
            .count(),
        2,
        "{body}"
    );
    agg.stop().await;
}

/// The calendar's body rules, the `GET /timestamp` 404 and anything else.
#[tokio::test]
async fn http_rules_and_no_timestamps() {
    let (good, hits) = fake(Fake::Good).await;
    let agg = aggregator(&[good], &[]).await;
    let r = post_digest(agg.addr, &[0u8; 65]).await;
    assert_eq!((r.status, r.text().as_str()), (400, "digest too long"));
    let r = common::raw(
        agg.addr,
        b"POST /digest HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "invalid Content-Length")
    );
    let r = get(agg.addr, "/timestamp/00", "").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.text(),
        "Not served by an aggregator; upgrade at the calendars named in the proof"
    );
    // Shown by clients as is: nothing their sanitising would change.
    assert_eq!(ots_calendar::sanitise_reason(&r.body), r.text());
    let r = get(agg.addr, "/tip", "").await;
    assert_eq!((r.status, r.text().as_str()), (404, "Not found"));
    // Nothing was submitted upstream for refused requests.
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    // A digest of 64 bytes (the most) and of 1 byte are served.
    for len in [64, 1] {
        let d = vec![9u8; len];
        let r = post_digest(agg.addr, &d).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        let ts = Timestamp::deserialize(&r.body, &d).unwrap();
        assert_eq!(pendings(&ts).len(), 1);
    }
    agg.stop().await;
}

/// Every response on `stream` until the server closes it.
async fn responses_until_eof(stream: &mut tokio::net::TcpStream) -> Vec<Resp> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut buf))
        .await
        .expect("the server closes the connection")
        .unwrap();
    let mut out = Vec::new();
    let mut rest = &buf[..];
    while let Some((r, used)) = common::parse_response(rest) {
        out.push(r);
        rest = &rest[used..];
    }
    assert!(
        rest.is_empty(),
        "trailing bytes: {:?}",
        String::from_utf8_lossy(rest)
    );
    out
}

fn digest_request(digest: &[u8], extra: &str) -> Vec<u8> {
    let mut req = format!(
        "POST /digest HTTP/1.1\r\nHost: a.test\r\nContent-Length: {}\r\n{extra}\r\n",
        digest.len()
    )
    .into_bytes();
    req.extend_from_slice(digest);
    req
}

/// The plain `POST /digest` path (the listener's fast path) on one
/// connection: pipelined requests each get their own proof in order, a
/// body sent after its head is waited for, a request for another route
/// on the same connection is answered by the router (it takes over with
/// the bytes read so far), and `Connection: close` closes after the
/// answer. A chunked body, which the fast path leaves to the router, gets
/// the router's 400 (a Content-Length is required, as by the calendar),
/// and a body that never comes a 408.
#[tokio::test]
async fn plain_digests_pipelined_then_another_route_on_one_connection() {
    use tokio::io::AsyncWriteExt;
    let (good, _hits) = fake(Fake::Good).await;
    let agg = aggregator(&[good], &["--body-timeout", "1"]).await;
    let digests: Vec<Vec<u8>> = (0..3).map(|_| random_digest().to_vec()).collect();
    let mut s = tokio::net::TcpStream::connect(agg.addr).await.unwrap();
    // Two pipelined in one write, then a head whose body comes later.
    let mut first = digest_request(&digests[0], "");
    first.extend(digest_request(&digests[1], ""));
    let third = digest_request(&digests[2], "");
    let (head, body) = third.split_at(third.len() - 32);
    first.extend_from_slice(head);
    s.write_all(&first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(body).await.unwrap();
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: a.test\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let answers = responses_until_eof(&mut s).await;
    assert_eq!(
        answers.len(),
        4,
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for (r, d) in answers.iter().zip(&digests) {
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        assert!(r.header("date").is_some());
        let ts = Timestamp::deserialize(&r.body, d).unwrap();
        assert_eq!(pendings(&ts).len(), 1);
    }
    let info: Value = serde_json::from_slice(&answers[3].body).unwrap();
    assert_eq!(info["role"], "aggregator");
    assert_eq!(answers[3].header("connection"), Some("close"));

    // `Connection: close` on the fast path.
    let mut s = tokio::net::TcpStream::connect(agg.addr).await.unwrap();
    s.write_all(&digest_request(&digests[0], "Connection: close\r\n"))
        .await
        .unwrap();
    let answers = responses_until_eof(&mut s).await;
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].status, 200);
    assert_eq!(answers[0].header("connection"), Some("close"));

    // Chunked: the router's path, the same proof shape.
    let chunked = format!(
        "POST /digest HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n20\r\n{}\r\n0\r\n\r\n",
        "z".repeat(32)
    );
    let r = common::raw(agg.addr, chunked.as_bytes()).await;
    let r = r.expect("an answer to a chunked body");
    // The router requires a Content-Length, as the calendar does.
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "invalid Content-Length")
    );

    // A head whose body never comes: 408 after the body timeout.
    let mut s = tokio::net::TcpStream::connect(agg.addr).await.unwrap();
    s.write_all(b"POST /digest HTTP/1.1\r\nHost: a.test\r\nContent-Length: 32\r\n\r\n")
        .await
        .unwrap();
    let answers = responses_until_eof(&mut s).await;
    assert_eq!(answers.len(), 1);
    assert_eq!(
        (answers[0].status, answers[0].text().as_str()),
        (408, "body read timeout")
    );
    agg.stop().await;
}

/// Flags that cannot work are refused at start-up, saying why.
#[tokio::test]
async fn impossible_flags_are_refused() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_otsd"))
            .arg("aggregate")
            .args(["--rpc-address", "127.0.0.1", "--rpc-port", "0"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--upstream", "http://127.0.0.1:1", "--upstream-min", "2"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--upstream-min 2: must be between 1 and the number of upstreams (1)"),
        "{err}"
    );
    let out = run(&[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--upstream"));
    let out = run(&["--upstream", "http://127.0.0.1:1", "-c", "/tmp/nowhere"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("keeps no calendar directory"), "{err}");
    let out = run(&["--upstream", "ftp://x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only http and https are supported"), "{err}");
}

/// An https upstream: trusted with `--ca-file`, refused (a TLS failure,
/// in the 503) without it.
#[tokio::test]
async fn https_upstreams_with_and_without_the_ca_file() {
    let (good, _) = fake(Fake::Good).await;
    let addr: SocketAddr = good.trim_start_matches("http://").parse().unwrap();
    let proxy = test_support::tls::TlsProxy::start(addr).unwrap();
    let ca = proxy.ca_file().display().to_string();
    let agg = aggregator(&[proxy.url()], &["--ca-file", &ca]).await;
    let d = random_digest();
    let ts = submit(&agg, &d).await;
    assert_eq!(pendings(&ts)[0].0, fake_uri(Fake::Good));
    agg.stop().await;
    let agg = aggregator(&[proxy.url()], &[]).await;
    let r = post_digest(agg.addr, &random_digest()).await;
    assert_eq!(r.status, 503);
    assert!(r.text().contains(": TLS: "), "{}", r.text());
    agg.stop().await;
}

/// SIGTERM while a round waits for its upstreams: the round is answered
/// (with the upstream that did answer) and the process exits cleanly.
#[tokio::test]
async fn sigterm_answers_the_round_under_way() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (good, good_hits) = fake(Fake::Good).await;
    let (hang, _) = fake(Fake::Hang).await;
    // The hung upstream holds the round for the grace after the good one.
    // A long header timeout: a connection that never sends a head must
    // not hold the shutdown until it.
    let mut agg = aggregator(
        &[good, hang],
        &["--upstream-grace", "3000", "--header-timeout", "60"],
    )
    .await;
    let addr = agg.addr;
    let d = random_digest();
    let pending = tokio::spawn({
        let d = d.clone();
        async move { post_digest(addr, &d).await }
    });
    // A keep-alive client in the same round, and one that sends nothing.
    let kept = random_digest();
    let mut keep_alive = tokio::net::TcpStream::connect(addr).await.unwrap();
    keep_alive
        .write_all(&digest_request(&kept, ""))
        .await
        .unwrap();
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Until the round is under way: the good upstream has been asked
    // (and the hung one holds the round for the grace).
    until("the round to start", || {
        let hits = good_hits.clone();
        async move { (hits.load(Ordering::SeqCst) > 0).then_some(()) }
    })
    .await;
    let pid = agg.child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let r = pending.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let ts = Timestamp::deserialize(&r.body, &d).unwrap();
    assert_eq!(pendings(&ts).len(), 1);
    // The keep-alive client is told the connection closes, then it does.
    let answers = responses_until_eof(&mut keep_alive).await;
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].status, 200);
    assert_eq!(answers[0].header("connection"), Some("close"));
    Timestamp::deserialize(&answers[0].body, &kept).unwrap();
    // The silent one is closed without an answer, and the aggregator
    // exits at once (well within the 10 s grace; before, it waited for
    // the silent connection's header timeout, or the grace).
    let status = tokio::time::timeout(Duration::from_secs(8), agg.child.wait())
        .await
        .expect("the aggregator exits without waiting for the silent connection")
        .unwrap();
    assert!(status.success(), "{status}");
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest).await;
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert!(agg
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("shutting down: answering the rounds under way")));
}
