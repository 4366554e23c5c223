//! Issue 12, part 1: a private calendar with upstream calendars. End to
//! end, real `otsd` processes: two calendars stamping into one devchain
//! (each with its own wallet) are the upstreams of a private calendar
//! without a wallet; every digest stamped through it ends in a complete
//! proof that verifies against the chain's headers (with our verification
//! and, when `OTS_REFERENCE_CLIENT` is set, the reference client's). Each
//! fault is its own test, with small fake upstreams on 127.0.0.1: one down
//! for the whole test (the wallet takes over after the deadline), garbage,
//! an oversized reply, a proof of another message, one that never answers,
//! and `kill -9` of the private calendar while its submission is held
//! unanswered (submitted again after the restart, and completed).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get as get_route, post};
use axum::Router;
use common::node::{Backend, TestNode, WALLET};
use common::{check_proof, get, init_calendar, post_digest, random_digest, Log, TestServer};
use ots_bitcoin::{Auth, RpcClient, RpcConfig};
use ots_proof::{Attestation, Op, Timestamp};
use otsd::config::{Bitcoin, Settings};
use otsd::upstream::UpstreamConfig;
use serde_json::{json, Value};

/// Waits poll every 200 ms, at most two minutes.
const POLL: Duration = Duration::from_millis(200);
const POLLS: usize = 600;
const FOREVER: &str = "public, max-age=31536000";
const INCOMPLETE: &str = "public, max-age=30";

/// Polls `f` until it gives a value; panics after [`POLLS`] tries.
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

/// `GET /timestamp/<commitment>`.
async fn timestamp(addr: SocketAddr, commitment: &[u8]) -> common::Resp {
    get(addr, &format!("/timestamp/{}", hex::encode(commitment)), "").await
}

/// A client of `node`'s wallet `name`.
fn wallet(node: &TestNode, name: &str) -> RpcClient {
    let mut config = RpcConfig::new(node.url(), Auth::None);
    config.wallet = Some(name.into());
    RpcClient::new(config).unwrap()
}

/// Creates wallet `name` on `node` and funds it from [`WALLET`].
async fn funded_wallet(node: &TestNode, name: &str) {
    let _: Value = node
        .call("createwallet", json!({"wallet_name": name}))
        .await;
    let to = wallet(node, name).new_address().await.unwrap();
    for _ in 0..3 {
        let _: Value = wallet(node, WALLET)
            .wallet_call("sendtoaddress", json!([to, 1.0]))
            .await
            .unwrap();
    }
    node.mine(1).await;
}

/// A calendar process.
struct Proc {
    child: tokio::process::Child,
    addr: SocketAddr,
    /// Its log lines (for a failing test's output).
    _log: Log,
}

impl Proc {
    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

/// `otsd` on `dir` with `args` (127.0.0.1, any port, 50 ms rounds).
async fn otsd(dir: &Path, args: &[String]) -> Proc {
    let mut all: Vec<String> = vec!["-c".into(), dir.display().to_string()];
    all.extend(
        ["--rpc-address", "127.0.0.1", "--aggregation-interval", "50"]
            .iter()
            .map(|s| s.to_string()),
    );
    if !args.iter().any(|a| a == "--rpc-port") {
        all.extend(["--rpc-port".to_string(), "0".to_string()]);
    }
    all.extend(args.iter().cloned());
    let (child, addr, log) = common::spawn_otsd_logged(all).await;
    Proc {
        child,
        addr,
        _log: log,
    }
}

/// A calendar stamping into `node` with wallet `wallet_name`.
async fn upstream_calendar(root: &Path, node: &TestNode, wallet_name: &str) -> Proc {
    let dir = init_calendar(&root.join(wallet_name));
    let args: Vec<String> = [
        "--btc-regtest",
        "--btc-wallet",
        wallet_name,
        "--btc-min-confirmations",
        "2",
        "--btc-min-tx-interval",
        "0",
        "--btc-poll-interval",
        "0.1",
        "--bitcoin-node",
        &node.url(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    otsd(&dir, &args).await
}

/// The private calendar's flags: no wallet, these upstreams, fast polls.
fn private_args(upstreams: &[String]) -> Vec<String> {
    let mut args: Vec<String> = ["--no-bitcoin", "--upstream-poll-interval", "0.2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for u in upstreams {
        args.extend(["--upstream".to_string(), u.clone()]);
    }
    args
}

/// Mines a block every few polls until `addr` serves a complete proof of
/// `commitment`; checks it against `node` and returns it.
async fn mine_until_complete(node: &TestNode, addr: SocketAddr, commitment: &[u8]) -> Timestamp {
    let mut polls = 0;
    let body = until("a complete proof", || {
        polls += 1;
        let mine = polls % 3 == 0;
        async move {
            let r = timestamp(addr, commitment).await;
            if r.status == 200 && r.header("cache-control") == Some(FOREVER) {
                return Some(r.body);
            }
            if mine {
                node.mine(1).await;
            }
            None
        }
    })
    .await;
    let (proof, _) = common::verify_on_node(&node.node(), commitment, &body).await;
    proof
}

fn pending_uris(ts: &Timestamp) -> Vec<String> {
    ts.all_attestations()
        .into_iter()
        .filter_map(|(_, a)| match a {
            Attestation::Pending { uri } => Some(uri.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_through_a_private_calendar_end_in_complete_proofs_on_the_shared_chain() {
    let node = TestNode::start(Backend::Dev).await;
    funded_wallet(&node, "up1").await;
    funded_wallet(&node, "up2").await;
    let root = tempfile::tempdir().unwrap();
    let up1 = upstream_calendar(root.path(), &node, "up1").await;
    let up2 = upstream_calendar(root.path(), &node, "up2").await;
    let private_dir = init_calendar(&root.path().join("private"));
    let private = otsd(&private_dir, &private_args(&[up1.url(), up2.url()])).await;

    let mut commitments = Vec::new();
    for _ in 0..3 {
        let digest = random_digest();
        let reply = post_digest(private.addr, &digest).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        commitments.push(check_proof(&digest, &reply.body));
    }
    // Both upstreams replied: an incomplete proof, short-lived, through
    // the commitment's sha256 to each upstream's pending attestation.
    for c in &commitments {
        let body = until("both upstream replies", || async {
            let r = timestamp(private.addr, c).await;
            if r.status != 200 {
                return None;
            }
            assert_eq!(r.header("cache-control"), Some(INCOMPLETE));
            let ts = Timestamp::deserialize(&r.body, c).unwrap();
            let leaf = ts
                .child(&Op::Sha256)
                .expect("sha256 first, as our own proofs");
            assert_eq!(leaf.msg(), ots_proof::op::sha256(c));
            (pending_uris(&ts).len() == 2).then_some(r.body)
        })
        .await;
        let ts = Timestamp::deserialize(&body, c).unwrap();
        let commitments: Vec<_> = ts
            .all_attestations()
            .into_iter()
            .map(|(m, _)| m.to_vec())
            .collect();
        assert_ne!(
            commitments[0], commitments[1],
            "one commitment per upstream"
        );
    }
    for c in &commitments {
        let proof = mine_until_complete(&node, private.addr, c).await;
        assert!(pending_uris(&proof).is_empty(), "complete: Bitcoin only");
    }
    // The info page shows both upstreams, each without a backlog.
    let info = get(private.addr, "/", "Accept: application/json\r\n").await;
    let info: Value = serde_json::from_slice(&info.body).unwrap();
    let ups = info["upstreams"].as_array().expect("upstreams in the JSON");
    assert_eq!(ups.len(), 2);
    for u in ups {
        assert_eq!(u["backlog"], 0, "{u}");
        assert!(u["last_success"].is_u64(), "{u}");
    }
    drop((up1, up2, private));
}

/// The reference client stamps through the private calendar, upgrades
/// and verifies (when `OTS_REFERENCE_CLIENT` names its `ots`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_client_stamps_upgrades_and_verifies_through_a_private_calendar() {
    let Some(client) = std::env::var_os("OTS_REFERENCE_CLIENT").map(PathBuf::from) else {
        eprintln!(
            "skipped: set OTS_REFERENCE_CLIENT to the reference client's `ots` to run this test"
        );
        return;
    };
    let node = TestNode::start(Backend::Dev).await;
    funded_wallet(&node, "up1").await;
    let root = tempfile::tempdir().unwrap();
    let up1 = upstream_calendar(root.path(), &node, "up1").await;
    // The client asks the URI of the pending attestation: the private
    // calendar's own address, so it must be known before it starts.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let private_dir = root.path().join("private/calendar");
    otsd::calendar::Calendar::init(&private_dir, &url, "").unwrap();
    let mut args = private_args(&[up1.url()]);
    args.extend(["--rpc-port".to_string(), port.to_string()]);
    let private = otsd(&private_dir, &args).await;
    let work = root.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("file.txt"), b"stamped through a private calendar").unwrap();
    let ots = |args: &[&str]| {
        std::process::Command::new(&client)
            .arg("--no-cache")
            .args(args)
            .current_dir(&work)
            .output()
            .unwrap()
    };
    let out = ots(&["stamp", "-c", &url, "-m", "1", "file.txt"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut upgraded = false;
    let mut last = String::new();
    for _ in 0..POLLS / 4 {
        // The client keeps one backup and will not overwrite it: the
        // incomplete proof it merged first left one.
        let _ = std::fs::remove_file(work.join("file.txt.ots.bak"));
        let out = ots(&["-l", &url, "upgrade", "file.txt.ots"]);
        if out.status.success() {
            upgraded = true;
            break;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        node.mine(1).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let info = ots(&["info", "file.txt.ots"]);
    assert!(
        upgraded,
        "the reference client upgraded its proof: {last}\n{}\n{}",
        String::from_utf8_lossy(&info.stdout),
        private._log.lock().unwrap().join("\n")
    );
    let out = ots(&[
        "--btc-regtest",
        "--bitcoin-node",
        &node.url(),
        "verify",
        "file.txt.ots",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Success! Bitcoin block"), "{stderr}");
    drop((up1, private));
}

/// How a fake upstream answers.
#[derive(Clone)]
enum Mode {
    /// Bytes that are no timestamp.
    Garbage,
    /// A well-formed pending reply (attestation `uri`), never completed.
    Pending(String),
    /// A reply over 10,000 bytes.
    Oversized,
    /// A well-formed pending reply (attestation `uri`), and on upgrade a
    /// "complete" proof whose Bitcoin attestation is of another message
    /// than the block's merkle root.
    PendingThenWrongBitcoin(String),
    /// A well-formed pending reply (attestation `uri`), and on upgrade a
    /// "complete" proof: `sha256` then a Bitcoin attestation at `height`
    /// (a shape that holds without a node).
    PendingThenComplete(String, u64),
    /// Holds every request without answering.
    Hang,
    /// A pending reply (attestation `uri`) of exactly this many bytes.
    Sized(String, usize),
    /// A pending reply (attestation `uri`) as deep as a calendar reply may
    /// be: 256 nodes from the leaf, so 257 from the commitment.
    Deep(String),
    /// `307` to this URL (plus the path asked), which keeps the method and
    /// the body.
    Redirect(String),
    /// 200, chunked, 1 KB pieces as fast as they are taken, without end.
    Endless,
    /// A pending reply under 10,000 bytes that decodes to megabytes of
    /// messages (chains of `reverse` on 4001-byte messages).
    Bomb(String),
    /// 200, then a byte every 50 ms, without end (slow loris: 10,000
    /// bytes would take longer than the test waits).
    Trickle,
    /// Passes everything on to a real calendar.
    Forward(ots_calendar::Calendar),
    /// As `PendingThenComplete`, except that the upstream commitments
    /// listed stay pending.
    CompleteExcept(String, u64, Vec<Vec<u8>>),
}

/// A fake upstream: what it was sent, and how it answers.
#[derive(Clone)]
struct Fake {
    mode: Arc<Mutex<Mode>>,
    posts: Arc<Mutex<Vec<Vec<u8>>>>,
    gets: Arc<AtomicUsize>,
}

impl Fake {
    async fn start(mode: Mode) -> (Fake, String) {
        Self::start_on(mode, "127.0.0.1:0").await
    }

    async fn start_on(mode: Mode, bind: &str) -> (Fake, String) {
        let fake = Fake {
            mode: Arc::new(Mutex::new(mode)),
            posts: Arc::default(),
            gets: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/digest", post(fake_post))
            .route("/timestamp/{hex}", get_route(fake_get))
            .with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (fake, url)
    }

    fn mode(&self) -> Mode {
        self.mode.lock().unwrap().clone()
    }

    fn posts(&self) -> Vec<Vec<u8>> {
        self.posts.lock().unwrap().clone()
    }
}

/// A pending reply for `msg`: a nonce, sha256, then `uri`'s attestation.
fn pending_reply(msg: &[u8], uri: &str) -> Vec<u8> {
    let mut ts = Timestamp::new(msg.to_vec()).unwrap();
    ts.add_path([Op::Append(b"fake upstream".to_vec()), Op::Sha256])
        .unwrap()
        .add_attestation(Attestation::pending(uri).unwrap());
    ts.serialize().unwrap()
}

/// A pending reply for `msg` (attestation `uri`) of exactly `len` bytes:
/// branches of appends, the last one's argument sized to fit.
fn sized_reply(msg: &[u8], uri: &str, len: usize) -> Vec<u8> {
    let build = |args: &[usize]| {
        let mut ts = Timestamp::new(msg.to_vec()).unwrap();
        for (i, n) in args.iter().enumerate() {
            let mut arg = vec![i as u8; *n];
            arg[0] = 0xa0 + i as u8;
            ts.add_path([Op::Append(arg), Op::Sha256])
                .unwrap()
                .add_attestation(Attestation::pending(uri).unwrap());
        }
        ts.serialize().unwrap()
    };
    let mut args = vec![4000; len / 4000];
    args.push(1);
    for _ in 0..16 {
        let got = build(&args).len();
        if got == len {
            return build(&args);
        }
        let last = args.last_mut().unwrap();
        *last = (*last as i64 + len as i64 - got as i64).clamp(1, 4064) as usize;
    }
    panic!("no {len}-byte reply");
}

/// A body that never ends: a byte every interval.
struct Trickle(tokio::time::Interval);

impl hyper::body::Body for Trickle {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_tick(cx)
            .map(|_| Some(Ok(hyper::body::Frame::data(Bytes::from_static(b"\xf0")))))
    }
}

/// A body that never ends and never waits: 1 KB pieces.
struct Endless;

impl hyper::body::Body for Endless {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let piece = Bytes::from_static(&[0xf2; 1024]);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(piece))))
    }
}

/// A pending reply for `msg` 256 nodes deep: 255 `reverse`s, then `uri`.
fn deep_reply(msg: &[u8], uri: &str) -> Vec<u8> {
    let mut ts = Timestamp::new(msg.to_vec()).unwrap();
    ts.add_path(std::iter::repeat_n(Op::Reverse, 255))
        .unwrap()
        .add_attestation(Attestation::pending(uri).unwrap());
    ts.serialize().unwrap()
}

async fn fake_post(State(fake): State<Fake>, body: Bytes) -> Response {
    fake.posts.lock().unwrap().push(body.to_vec());
    match fake.mode() {
        Mode::Garbage => (StatusCode::OK, b"\xfe not a timestamp".to_vec()).into_response(),
        Mode::Oversized => (StatusCode::OK, vec![0u8; 10_001]).into_response(),
        Mode::PendingThenWrongBitcoin(uri)
        | Mode::Pending(uri)
        | Mode::PendingThenComplete(uri, _)
        | Mode::CompleteExcept(uri, _, _) => {
            (StatusCode::OK, pending_reply(&body, &uri)).into_response()
        }
        Mode::Hang => std::future::pending().await,
        Mode::Sized(uri, len) => (StatusCode::OK, sized_reply(&body, &uri, len)).into_response(),
        Mode::Deep(uri) => (StatusCode::OK, deep_reply(&body, &uri)).into_response(),
        Mode::Endless => (StatusCode::OK, axum::body::Body::new(Endless)).into_response(),
        Mode::Bomb(uri) => {
            // 16 chains: no more commitments than a reply may have.
            let ts = common::decoding_bomb(&body, &uri, 16);
            (StatusCode::OK, ts.serialize().unwrap()).into_response()
        }
        Mode::Trickle => {
            let every = tokio::time::interval(Duration::from_millis(50));
            (StatusCode::OK, axum::body::Body::new(Trickle(every))).into_response()
        }
        Mode::Redirect(to) => (
            StatusCode::TEMPORARY_REDIRECT,
            [("location", format!("{to}digest"))],
        )
            .into_response(),
        Mode::Forward(cal) => match cal.submit(&body).await {
            Ok(ts) => (StatusCode::OK, ts.serialize().unwrap()).into_response(),
            Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        },
    }
}

async fn fake_get(State(fake): State<Fake>, UrlPath(hex_str): UrlPath<String>) -> Response {
    fake.gets.fetch_add(1, Ordering::SeqCst);
    let Ok(commitment) = hex::decode(hex_str) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match fake.mode() {
        Mode::CompleteExcept(_, height, ref except) if !except.contains(&commitment) => {
            let mut ts = Timestamp::new(commitment).unwrap();
            ts.add_op(Op::Sha256)
                .unwrap()
                .add_attestation(Attestation::Bitcoin { height });
            (StatusCode::OK, ts.serialize().unwrap()).into_response()
        }
        Mode::PendingThenComplete(_, height) => {
            let mut ts = Timestamp::new(commitment).unwrap();
            ts.add_op(Op::Sha256)
                .unwrap()
                .add_attestation(Attestation::Bitcoin { height });
            (StatusCode::OK, ts.serialize().unwrap()).into_response()
        }
        Mode::PendingThenWrongBitcoin(_) => {
            let mut ts = Timestamp::new(commitment).unwrap();
            ts.add_op(Op::Sha256)
                .unwrap()
                .add_attestation(Attestation::Bitcoin { height: 1 });
            (StatusCode::OK, ts.serialize().unwrap()).into_response()
        }
        Mode::Hang => std::future::pending().await,
        Mode::Forward(cal) => match cal.get_timestamp(&commitment).await {
            Ok(ts) => (StatusCode::OK, ts.serialize().unwrap()).into_response(),
            Err(e) => (StatusCode::NOT_FOUND, e.to_string()).into_response(),
        },
        _ => (
            StatusCode::NOT_FOUND,
            "Pending confirmation in Bitcoin blockchain",
        )
            .into_response(),
    }
}

/// An in-process private calendar on `upstreams` (no wallet unless
/// `backend` says so).
async fn private_in_process(upstreams: Vec<String>, backend: otsd::config::Backend) -> TestServer {
    TestServer::start(Settings {
        aggregation_interval: Duration::from_millis(50),
        backend,
        upstream: UpstreamConfig {
            urls: upstreams,
            timeout: Duration::from_millis(500),
            poll: Duration::from_millis(100),
            ..UpstreamConfig::default()
        },
        ..Settings::default()
    })
    .await
}

/// Runs a private calendar on a bad upstream and a good one: the bad
/// one's answers are refused (and asked for again), the good one's
/// served. Returns the bad fake.
async fn a_bad_upstream_is_dropped(bad: Mode) -> Fake {
    let (bad, bad_url) = Fake::start(bad).await;
    let good_uri = "https://good.upstream.test";
    let (_good, good_url) = Fake::start(Mode::Pending(good_uri.into())).await;
    let server = private_in_process(vec![bad_url, good_url], otsd::config::Backend::None).await;
    let digest = random_digest();
    let reply = post_digest(server.addr, &digest).await;
    assert_eq!(
        reply.status, 200,
        "the client's reply does not wait on upstreams"
    );
    let c = check_proof(&digest, &reply.body);
    let leaf = ots_proof::op::sha256(&c);
    let body = until("the good upstream's reply", || async {
        let r = timestamp(server.addr, &c).await;
        (r.status == 200).then_some(r.body)
    })
    .await;
    let ts = Timestamp::deserialize(&body, &c).unwrap();
    assert_eq!(
        pending_uris(&ts),
        vec![good_uri.to_string()],
        "only the good one's"
    );
    // The bad one was sent the leaf, and again after its failure.
    until("a retry of the bad upstream", || async {
        let posts = bad.posts();
        assert!(
            posts.iter().all(|p| p == &leaf),
            "the leaf sha256(commitment)"
        );
        (posts.len() >= 2).then_some(())
    })
    .await;
    let r = timestamp(server.addr, &c).await;
    assert_eq!(
        pending_uris(&Timestamp::deserialize(&r.body, &c).unwrap()).len(),
        1
    );
    server.stop().await.unwrap();
    bad
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_answering_garbage_is_dropped() {
    a_bad_upstream_is_dropped(Mode::Garbage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_upstream_reply_is_dropped() {
    a_bad_upstream_is_dropped(Mode::Oversized).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_answers_times_out_and_is_dropped() {
    a_bad_upstream_is_dropped(Mode::Hang).await;
}

/// A reply that would hold megabytes in memory at every `GET` of the
/// commitment is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_reply_decoding_to_megabytes_is_dropped() {
    a_bad_upstream_is_dropped(Mode::Bomb("https://bomb.test".into())).await;
}

/// An endless chunked reply (no Content-Length to refuse it by) is cut
/// at 10,000 bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_upstream_reply_is_cut_and_dropped() {
    a_bad_upstream_is_dropped(Mode::Endless).await;
}

/// An upstream that sends its reply a byte at a time without end costs a
/// request timeout, not the submitter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_trickling_its_reply_without_end_times_out_and_is_dropped() {
    a_bad_upstream_is_dropped(Mode::Trickle).await;
}

/// A reply that a client could read (10,000 bytes) but that no served
/// proof could hold (the commitment's `sha256` comes first): refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_reply_too_large_to_serve_is_dropped() {
    a_bad_upstream_is_dropped(Mode::Sized("https://bloat.test".into(), 10_000)).await;
}

/// A reply at the format's depth limit makes every proof served through
/// it too deep for a client to read: refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_reply_too_deep_to_serve_is_dropped() {
    a_bad_upstream_is_dropped(Mode::Deep("https://deep.test".into())).await;
}

/// An upstream that redirects elsewhere is not followed there: the other
/// host is never asked, and the upstream counts as failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_redirecting_to_another_host_is_not_followed() {
    let (elsewhere, elsewhere_url) =
        Fake::start(Mode::Pending("https://elsewhere.test".into())).await;
    a_bad_upstream_is_dropped(Mode::Redirect(elsewhere_url)).await;
    assert!(elsewhere.posts().is_empty(), "the other host was asked");
    assert_eq!(elsewhere.gets.load(Ordering::SeqCst), 0);
}

/// Two upstreams whose replies each fit a served proof but not together:
/// the proof served stays within what a client reads (10,000 bytes), and
/// the smaller reply is the one kept, so that an upstream padding its
/// replies cannot crowd out the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_upstream_replies_are_served_within_what_a_client_reads() {
    let (_big, big_url) = Fake::start(Mode::Sized("https://bloat.test".into(), 9_990)).await;
    let good_uri = "https://good.upstream.test";
    let (_good, good_url) = Fake::start(Mode::Pending(good_uri.into())).await;
    let server = private_in_process(vec![big_url, good_url], otsd::config::Backend::None).await;
    let digest = random_digest();
    let c = check_proof(&digest, &post_digest(server.addr, &digest).await.body);
    let leaf = ots_proof::op::sha256(&c);
    // Both replies are in once the database holds two rows for the leaf;
    // the info page's open counts show it.
    until("both upstreams' replies", || async {
        let r = get(server.addr, "/", "Accept: application/json\r\n").await;
        let v: Value = serde_json::from_slice(&r.body).ok()?;
        let open: Vec<u64> = v["upstreams"]
            .as_array()?
            .iter()
            .map(|u| u["open"].as_u64().unwrap_or(0))
            .collect();
        (open == [1, 1]).then_some(())
    })
    .await;
    let r = timestamp(server.addr, &c).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.len() <= ots_calendar::MAX_REPLY_LEN,
        "{} bytes served",
        r.body.len()
    );
    let ts = Timestamp::deserialize(&r.body, &c).unwrap();
    assert_eq!(pending_uris(&ts), vec![good_uri.to_string()]);
    assert_eq!(ts.child(&Op::Sha256).unwrap().msg(), leaf);
    server.stop().await.unwrap();
}

/// Pending attestations naming other hosts, in an upstream's replies, are
/// never followed: the upgrade asks the upstream the reply came from, and
/// no one else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_attestations_to_other_hosts_are_never_polled() {
    let (elsewhere, elsewhere_url) = Fake::start(Mode::Pending("https://x.test".into())).await;
    let (up, up_url) = Fake::start(Mode::Pending(elsewhere_url.clone())).await;
    let server = private_in_process(vec![up_url], otsd::config::Backend::None).await;
    let digest = random_digest();
    let c = check_proof(&digest, &post_digest(server.addr, &digest).await.body);
    until("two upgrade polls of the upstream", || async {
        (up.gets.load(Ordering::SeqCst) >= 2).then_some(())
    })
    .await;
    let r = timestamp(server.addr, &c).await;
    let ts = Timestamp::deserialize(&r.body, &c).unwrap();
    assert_eq!(pending_uris(&ts), vec![elsewhere_url]);
    assert_eq!(elsewhere.gets.load(Ordering::SeqCst), 0, "polled elsewhere");
    assert!(elsewhere.posts().is_empty());
    server.stop().await.unwrap();
}

/// Once complete, a commitment's proof stays what it was: the upstream is
/// not asked again, and what it answers afterwards (pending again, or
/// another proof) changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_proof_is_not_replaced_by_what_the_upstream_says_later() {
    let uri = "https://flip.test".to_string();
    let (fake, url) = Fake::start(Mode::PendingThenComplete(uri.clone(), 1)).await;
    let server = private_in_process(vec![url], otsd::config::Backend::None).await;
    let digest = random_digest();
    let c = check_proof(&digest, &post_digest(server.addr, &digest).await.body);
    let complete = until("the complete proof", || async {
        let r = timestamp(server.addr, &c).await;
        (r.status == 200 && r.header("cache-control") == Some(FOREVER)).then_some(r.body)
    })
    .await;
    // From now on the upstream says "pending" of it, then offers another
    // complete proof.
    *fake.mode.lock().unwrap() = Mode::Pending(uri.clone());
    let asked = fake.gets.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    *fake.mode.lock().unwrap() = Mode::PendingThenComplete(uri, 2);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fake.gets.load(Ordering::SeqCst), asked, "asked again");
    let r = timestamp(server.addr, &c).await;
    assert_eq!(r.header("cache-control"), Some(FOREVER));
    assert_eq!(r.body, complete);
    let ts = Timestamp::deserialize(&r.body, &c).unwrap();
    assert!(ts
        .all_attestations()
        .iter()
        .all(|(_, a)| matches!(a, Attestation::Bitcoin { height: 1 })));
    server.stop().await.unwrap();
}

/// An upstream whose "complete" proof attests another message than the
/// block's merkle root: checked against our node, refused, never served
/// as complete; the incomplete proof stays served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_proof_of_another_message_is_refused() {
    let node = TestNode::start(Backend::Dev).await;
    let (fake, url) = Fake::start(Mode::PendingThenWrongBitcoin("https://liar.test".into())).await;
    let server = private_in_process(vec![url], bitcoin_backend(&node)).await;
    let digest = random_digest();
    let c = check_proof(&digest, &post_digest(server.addr, &digest).await.body);
    until("the upstream asked for the upgrade, twice", || async {
        (fake.gets.load(Ordering::SeqCst) >= 2).then_some(())
    })
    .await;
    let r = timestamp(server.addr, &c).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("cache-control"),
        Some(INCOMPLETE),
        "never complete"
    );
    let ts = Timestamp::deserialize(&r.body, &c).unwrap();
    assert!(ts
        .all_attestations()
        .iter()
        .all(|(_, a)| matches!(a, Attestation::Pending { .. })));
    server.stop().await.unwrap();
}

/// Our own wallet on `node` (fast stamping); the upstream deadline is the
/// caller's.
fn bitcoin_backend(node: &TestNode) -> otsd::config::Backend {
    let mut rpc = RpcConfig::new(node.url(), Auth::None);
    rpc.wallet = Some(WALLET.into());
    otsd::config::Backend::Bitcoin(Bitcoin {
        rpc,
        stamper: ots_stamper::Config {
            min_confirmations: 2,
            min_tx_interval_secs: 0,
            relay_feerate: 1_000,
            max_fee: bitcoin::Amount::from_sat(100_000),
            max_pending: 100_000,
        },
        conf_target: 2,
        poll: Duration::from_millis(100),
    })
}

/// An upstream down for the whole test: after `--upstream-fallback-after`
/// the calendar's own wallet stamps the commitment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_down_for_the_whole_test_is_replaced_by_the_wallet_after_the_deadline() {
    let node = TestNode::start(Backend::Dev).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", l.local_addr().unwrap())
    };
    let server = TestServer::start(Settings {
        aggregation_interval: Duration::from_millis(50),
        backend: bitcoin_backend(&node),
        upstream: UpstreamConfig {
            urls: vec![closed],
            fallback_after: Duration::from_secs(2),
            timeout: Duration::from_millis(500),
            poll: Duration::from_millis(100),
            ..UpstreamConfig::default()
        },
        ..Settings::default()
    })
    .await;
    let digest = random_digest();
    let c = check_proof(&digest, &post_digest(server.addr, &digest).await.body);
    assert_eq!(timestamp(server.addr, &c).await.status, 404, "nothing yet");
    mine_until_complete(&node, server.addr, &c).await;
    server.stop().await.unwrap();
}

/// `kill -9` of the private calendar while its upstream holds the
/// submission unanswered (the commitment is in the journal, no reply is
/// recorded); restarted with the upstream answering, it submits the
/// commitment again and the proof completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_the_fsync_and_the_upstream_reply_resubmits_after_the_restart() {
    let node = TestNode::start(Backend::Dev).await;
    funded_wallet(&node, "up1").await;
    let root = tempfile::tempdir().unwrap();
    let up1 = upstream_calendar(root.path(), &node, "up1").await;
    let (fake, fake_url) = Fake::start(Mode::Hang).await;
    let private_dir = init_calendar(&root.path().join("private"));
    let args = private_args(&[fake_url]);
    let mut private = otsd(&private_dir, &args).await;
    let digest = random_digest();
    let c = check_proof(&digest, &post_digest(private.addr, &digest).await.body);
    let leaf = ots_proof::op::sha256(&c).to_vec();
    until("the submission, held", || async {
        fake.posts().contains(&leaf).then_some(())
    })
    .await;
    // kill -9 by PID.
    let pid = private.child.id().expect("running") as i32;
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let _ = private.child.wait().await;
    let sent_before = fake.posts().len();
    *fake.mode.lock().unwrap() = Mode::Forward(
        ots_calendar::Calendar::new(&up1.url(), &ots_calendar::ClientConfig::default()).unwrap(),
    );
    let private = otsd(&private_dir, &args).await;
    until("the submission after the restart", || async {
        (fake.posts()[sent_before..].contains(&leaf)).then_some(())
    })
    .await;
    mine_until_complete(&node, private.addr, &c).await;
    // Answered and complete: a restart sends nothing again.
    let sent = fake.posts().len();
    let mut old = private;
    old.child.kill().await.unwrap();
    let private = otsd(&private_dir, &args).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(fake.posts().len(), sent, "nothing submitted twice");
    let r = timestamp(private.addr, &c).await;
    assert_eq!(r.header("cache-control"), Some(FOREVER));
    drop((up1, private));
}

/// With a wallet too: a commitment an upstream accepted is left to it
/// until the deadline; the wallet sends nothing meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commitment_an_upstream_accepted_is_not_stamped_by_the_wallet_before_the_deadline() {
    let node = TestNode::start(Backend::Dev).await;
    let (_fake, url) = Fake::start(Mode::Pending("https://slow.test".into())).await;
    let server = TestServer::start(Settings {
        aggregation_interval: Duration::from_millis(50),
        backend: bitcoin_backend(&node),
        upstream: UpstreamConfig {
            urls: vec![url],
            fallback_after: Duration::from_secs(3600),
            timeout: Duration::from_millis(500),
            poll: Duration::from_millis(100),
            ..UpstreamConfig::default()
        },
        ..Settings::default()
    })
    .await;
    let digest = random_digest();
    let c = check_proof(&digest, &post_digest(server.addr, &digest).await.body);
    until("the upstream's reply", || async {
        (timestamp(server.addr, &c).await.status == 200).then_some(())
    })
    .await;
    // Twenty stamper polls and more: a stamper that took it would have
    // broadcast by now (it stamps at once: --btc-min-tx-interval 0).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        node.mempool().await.is_empty(),
        "nothing stamped by the wallet"
    );
    let r = timestamp(server.addr, &c).await;
    assert_eq!(r.header("cache-control"), Some(INCOMPLETE));
    server.stop().await.unwrap();
}

/// With a wallet and a working upstream both, a commitment past the
/// deadline is stamped by both: `GET` serves both Bitcoin attestations,
/// each matching the chain's header at its height.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commitment_stamped_by_the_wallet_and_an_upstream_is_served_with_both_attestations() {
    let node = TestNode::start(Backend::Dev).await;
    funded_wallet(&node, "up1").await;
    let root = tempfile::tempdir().unwrap();
    let up1 = upstream_calendar(root.path(), &node, "up1").await;
    let server = TestServer::start(Settings {
        aggregation_interval: Duration::from_millis(50),
        backend: bitcoin_backend(&node),
        upstream: UpstreamConfig {
            urls: vec![up1.url()],
            fallback_after: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            poll: Duration::from_millis(100),
            ..UpstreamConfig::default()
        },
        ..Settings::default()
    })
    .await;
    let digest = random_digest();
    let c = check_proof(&digest, &post_digest(server.addr, &digest).await.body);
    until("the upstream's reply", || async {
        (timestamp(server.addr, &c).await.status == 200).then_some(())
    })
    .await;
    // The upstream's transaction and, after the deadline, ours.
    until("two timestamp transactions", || async {
        (node.mempool().await.len() >= 2).then_some(())
    })
    .await;
    let proof = until("both Bitcoin attestations", || async {
        node.mine(1).await;
        let r = timestamp(server.addr, &c).await;
        if r.header("cache-control") != Some(FOREVER) {
            return None;
        }
        let ts = Timestamp::deserialize(&r.body, &c).unwrap();
        let n = ts
            .all_attestations()
            .iter()
            .filter(|(_, a)| matches!(a, Attestation::Bitcoin { .. }))
            .count();
        (n == 2).then_some(ts)
    })
    .await;
    let rpc = node.node();
    for (msg, a) in proof.all_attestations() {
        let Attestation::Bitcoin { height } = a else {
            panic!("only Bitcoin attestations in a complete proof: {a:?}");
        };
        let hash = rpc.block_hash(*height).await.unwrap().unwrap();
        let header = rpc.block_header(&hash).await.unwrap().unwrap();
        ots_proof::verify::verify_bitcoin_header(msg, &header).expect("matches the header");
    }
    server.stop().await.unwrap();
    drop(up1);
}

/// A calendar served in this process on `dir` (kept across restarts).
struct InProcess {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), otsd::server::ServeError>>,
}

impl InProcess {
    async fn start(dir: PathBuf, settings: Settings) -> InProcess {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            otsd::server::serve(listener, &dir, settings, async {
                let _ = rx.await;
            })
            .await
        });
        InProcess { addr, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("stops in time")
            .unwrap()
            .unwrap();
    }

    async fn pending(&self) -> Value {
        let r = get(self.addr, "/", "Accept: application/json\r\n").await;
        serde_json::from_slice::<Value>(&r.body).unwrap()["pending_commitments"].clone()
    }
}

/// A commitment an upstream completed is neither pending nor lost at the
/// next start-up: the wallet does not stamp it, even with the deadline
/// long past, and its proof is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_completed_commitment_is_not_stamped_again_after_a_restart() {
    let node = TestNode::start(Backend::Dev).await;
    funded_wallet(&node, "up1").await;
    let root = tempfile::tempdir().unwrap();
    let up1 = upstream_calendar(root.path(), &node, "up1").await;
    let dir = init_calendar(&root.path().join("private"));
    let settings = |fallback_after| Settings {
        aggregation_interval: Duration::from_millis(50),
        backend: bitcoin_backend(&node),
        upstream: UpstreamConfig {
            urls: vec![up1.url()],
            fallback_after,
            timeout: Duration::from_secs(5),
            poll: Duration::from_millis(100),
            ..UpstreamConfig::default()
        },
        ..Settings::default()
    };
    let private = InProcess::start(dir.clone(), settings(Duration::from_secs(3600))).await;
    let digest = random_digest();
    let c = check_proof(&digest, &post_digest(private.addr, &digest).await.body);
    mine_until_complete(&node, private.addr, &c).await;
    assert_eq!(
        private.pending().await,
        0,
        "completed upstream: not pending"
    );
    private.stop().await;
    assert!(node.mempool().await.is_empty());
    // Restarted with the deadline long past for it.
    let private = InProcess::start(dir, settings(Duration::ZERO)).await;
    assert_eq!(private.pending().await, 0, "not pending after the restart");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(node.mempool().await.is_empty(), "the wallet stamps nothing");
    let r = timestamp(private.addr, &c).await;
    assert_eq!(r.header("cache-control"), Some(FOREVER));
    common::verify_on_node(&node.node(), &c, &r.body).await;
    private.stop().await;
    drop(up1);
}

mod mirror_support;

/// A private calendar without a wallet on one fake upstream answering
/// `uri`'s pending attestation, and the 1000 commitments of its chunk 0:
/// one digest at a time, so a round, and a journal commitment, each.
async fn private_with_a_chunk_pending(uri: &str) -> (Fake, TestServer, Vec<Vec<u8>>) {
    let (fake, url) = Fake::start(Mode::Pending(uri.into())).await;
    let server = TestServer::start(Settings {
        aggregation_interval: Duration::from_millis(1),
        upstream: UpstreamConfig {
            urls: vec![url],
            timeout: Duration::from_millis(500),
            poll: Duration::from_millis(100),
            ..UpstreamConfig::default()
        },
        ..Settings::default()
    })
    .await;
    let mut commitments = Vec::new();
    for _ in 0..1000 {
        let digest = random_digest();
        commitments.push(check_proof(
            &digest,
            &post_digest(server.addr, &digest).await.body,
        ));
    }
    let distinct: std::collections::BTreeSet<_> = commitments.iter().collect();
    assert_eq!(distinct.len(), 1000);
    (fake, server, commitments)
}

/// A private calendar's backup chunks carry the proofs its upstream
/// completed (no wallet): 1000 commitments, each answered pending by a fake
/// upstream, are served 200 with a short max-age, and chunk 0 is a 404
/// (an incomplete proof never goes into a chunk, which is immutable). Once
/// the upstream completes them, chunk 0 is the chunk of the 1000 complete
/// proofs the calendar serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_chunks_carry_the_proofs_the_upstream_completed() {
    let uri = "https://up.test";
    let (fake, server, commitments) = private_with_a_chunk_pending(uri).await;
    let served = |want: &'static str| {
        let commitments = commitments.clone();
        let addr = server.addr;
        async move {
            let mut proofs = Vec::new();
            for c in &commitments {
                let r = timestamp(addr, c).await;
                if r.status != 200 || r.header("cache-control") != Some(want) {
                    return None;
                }
                proofs.push(Timestamp::deserialize(&r.body, c).unwrap());
            }
            Some(proofs)
        }
    };
    until("every upstream reply, pending", || served(INCOMPLETE)).await;
    let r = get(server.addr, "/experimental/backup/0", "").await;
    assert_eq!(r.status, 404, "no chunk of pending proofs");
    *fake.mode.lock().unwrap() = Mode::PendingThenComplete(uri.into(), 800_000);
    let proofs = until("every proof, complete", || served(FOREVER)).await;
    let r = get(server.addr, "/experimental/backup/0", "").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.body == mirror_support::chunk_of(&proofs),
        "chunk 0 is the chunk of the served proofs"
    );
    assert_eq!(
        get(server.addr, "/experimental/backup/1", "").await.status,
        404
    );
    server.stop().await.unwrap();
}

/// Review: the newest commitment of chunk 0 complete, one in its middle
/// still pending at the upstream (upstreams complete out of order): the
/// chunk is a 404, never a chunk carrying a pending proof (the check on the
/// newest commitment alone does not decide it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_chunk_with_a_pending_proof_in_its_middle_is_not_served() {
    let uri = "https://up.test";
    let (fake, server, commitments) = private_with_a_chunk_pending(uri).await;
    // What the fake upstream was asked of commitment 500: its leaf, then
    // the fake's nonce and sha256.
    let leaf = ots_proof::op::sha256(&commitments[500]);
    let upstream_commitment = ots_proof::op::sha256(&[&leaf[..], b"fake upstream"].concat());
    let served = |middle: &'static str| {
        let commitments = commitments.clone();
        let addr = server.addr;
        async move {
            for (i, c) in commitments.iter().enumerate() {
                let want = if i == 500 { middle } else { FOREVER };
                let r = timestamp(addr, c).await;
                if r.status != 200 || r.header("cache-control") != Some(want) {
                    return None;
                }
            }
            Some(())
        }
    };
    *fake.mode.lock().unwrap() =
        Mode::CompleteExcept(uri.into(), 800_000, vec![upstream_commitment.to_vec()]);
    until("every proof complete but commitment 500's", || {
        served(INCOMPLETE)
    })
    .await;
    let r = get(server.addr, "/experimental/backup/0", "").await;
    assert_eq!(
        r.status, 404,
        "a chunk with a pending proof in it was served"
    );
    server.stop().await.unwrap();
}
