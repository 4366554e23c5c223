//! Mirrors (issue 14) end to end: bad chunks refused whole while other
//! calendars go on, two branches kept through a chain of mirrors, the
//! reference's node records mirrored and served as the reference serves
//! them, `kill -9` during chunks (every chunk held exactly once after
//! restarts), and a calendar on devchain with more than 2,000 completed
//! commitments, a mirror of it and a mirror of that mirror serving
//! byte-identical proofs, plus a calendar mirroring with `--mirror`.

mod common;
mod mirror_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{get, Log};
use mirror_support::{chunk_of, synthetic, Fake, Reply};
use ots_proof::{Attestation, Op, Timestamp};
use otsd::mirror::sync::MirrorConfig;
use serde_json::Value;

/// A calendar mirroring without a Bitcoin node checks no attestation of
/// what it mirrors: a mirrored calendar's chunk claiming one of our own
/// pending commitments complete (a made-up Bitcoin attestation) must not
/// be served for it, as complete and cached for a year; the mirrored
/// calendar's other proofs still are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchecked_mirror_never_answers_for_our_own_pending_commitments() {
    let fake = Arc::new(Fake::default());
    let fake_addr = mirror_support::serve(fake.clone()).await;
    let server = common::TestServer::start(otsd::config::Settings {
        aggregation_interval: Duration::from_millis(50),
        backend: otsd::config::Backend::None,
        mirror: Some(config(vec![url(fake_addr)], None)),
        ..otsd::config::Settings::default()
    })
    .await;
    let digest = common::random_digest();
    let ours = common::check_proof(
        &digest,
        &common::post_digest(server.addr, &digest).await.body,
    );
    let claimed = |msg: &[u8]| {
        let mut ts = Timestamp::new(msg.to_vec()).unwrap();
        ts.add_op(Op::Sha256)
            .unwrap()
            .add_attestation(Attestation::Bitcoin { height: 1 });
        ts
    };
    let theirs = claimed(&[9u8; 44]);
    fake.set_bytes(0, chunk_of([&claimed(&ours), &theirs]));
    until_held(server.addr, &url(fake_addr), 1).await;
    let r = timestamp(server.addr, &ours).await;
    assert_eq!(r.status, 404, "{:?}", r.header("cache-control"));
    assert!(r.text().contains("Pending"), "{}", r.text());
    let r = timestamp(server.addr, theirs.msg()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, theirs.serialize().unwrap());
    server.stop().await.unwrap();
}

/// The other host a calendar of `bad_chunks_are_refused_whole_and_the_mirror_goes_on`
/// redirects to (the cases are plain functions).
static ELSEWHERE: std::sync::OnceLock<(Arc<Fake>, SocketAddr)> = std::sync::OnceLock::new();

/// The two tests that run processes for minutes take turns: side by side
/// on a loaded machine they starve each other's calendar and mirror.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Polls every 100 ms, at most three minutes.
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A mirror running in this process.
struct InProc {
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProc {
    async fn start(config: MirrorConfig) -> InProc {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let path = dir.path().to_path_buf();
        let task = tokio::spawn(async move {
            otsd::mirror::run(listener, &path, &config, async {
                let _ = rx.await;
            })
            .await
        });
        InProc {
            addr,
            _dir: dir,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("the mirror stops")
            .unwrap()
            .unwrap();
    }
}

fn config(calendars: Vec<String>, node: Option<SocketAddr>) -> MirrorConfig {
    MirrorConfig {
        calendars,
        fetch_timeout: Duration::from_secs(1),
        max_chunk_bytes: 1 << 20,
        poll_interval: Duration::from_millis(300),
        bitcoin: node
            .map(|a| ots_bitcoin::RpcConfig::new(Fake::rpc_url(a), ots_bitcoin::Auth::None)),
        ..MirrorConfig::default()
    }
}

async fn info(addr: SocketAddr) -> Value {
    let r = get(addr, "/", "Accept: application/json\r\n").await;
    assert_eq!(r.status, 200);
    serde_json::from_slice(&r.body).unwrap()
}

/// The status of the mirrored calendar at `url`.
fn status<'a>(info: &'a Value, url: &str) -> &'a Value {
    info["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["url"] == url)
        .unwrap_or_else(|| panic!("{url} in {info}"))
}

async fn until_held(addr: SocketAddr, url: &str, n: u64) -> Value {
    until(&format!("{url} to hold {n} chunks"), || async move {
        let i = info(addr).await;
        (status(&i, url)["chunks_held"] == n).then_some(i)
    })
    .await
}

async fn timestamp(addr: SocketAddr, c: &[u8]) -> common::Resp {
    get(addr, &format!("/timestamp/{}", hex::encode(c)), "").await
}

/// Synthetic chunk `n` at `height` with `count` commitments: its proofs
/// and bytes; the fake node learns its header.
fn synth(node: &Fake, n: u64, count: u64, height: u64) -> (Vec<Timestamp>, Vec<u8>) {
    let (proofs, root) = synthetic(n, count, height);
    node.add_header(height, root);
    let bytes = chunk_of(&proofs);
    (proofs, bytes)
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// Each bad case: a fake calendar whose chunk 1 is bad in that way, in one
/// mirror with a good calendar. Each bad chunk is refused whole and named
/// with its chunk number and why; chunk 0 is served and nothing of chunk 1;
/// the good calendar goes on to its end. Once the bad chunks are fixed,
/// the mirror takes them on its next try and goes on to chunk 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chunks_are_refused_whole_and_the_mirror_goes_on() {
    let node = Arc::new(Fake::default());
    let node_addr = mirror_support::serve(node.clone()).await;
    let elsewhere = Arc::new(Fake::default());
    let elsewhere_addr = mirror_support::serve(elsewhere.clone()).await;
    let _ = ELSEWHERE.set((elsewhere.clone(), elsewhere_addr));
    // (name, what the error says, how chunk 1 is broken)
    type Break = fn(&Fake, &[Timestamp], Vec<u8>) -> Reply;
    let cases: Vec<(&str, &str, Break)> = vec![
        ("truncated", "truncated or malformed", |_, _, b| {
            Reply::Bytes(Arc::new(b[..b.len() - 3].to_vec()))
        }),
        ("bad node", "node record", |_, _, mut b| {
            ots_proof::codec::write_varbytes(&mut b, &[0xff; 32]);
            ots_proof::codec::write_varbytes(&mut b, &[0, 1, 0x77]);
            Reply::Bytes(Arc::new(b))
        }),
        (
            "no attestation",
            "without an attestation",
            |_, proofs, _| {
                // The tree's root keeps its path but loses its attestation.
                let mut ps = proofs.to_vec();
                for p in &mut ps {
                    strip_bitcoin(p);
                }
                Reply::Bytes(Arc::new(chunk_of(&ps)))
            },
        ),
        (
            "missing node",
            "which is not in the chunk",
            |_, proofs, _| {
                let mut map = BTreeMap::new();
                for p in proofs {
                    mirror_support::collect(p, &mut map);
                }
                let leaf = ots_proof::op::sha256(proofs[0].msg()).to_vec();
                map.remove(&leaf);
                let mut out = Vec::new();
                for (m, n) in &map {
                    ots_proof::codec::write_varbytes(&mut out, m);
                    ots_proof::codec::write_varbytes(&mut out, &otsd::backup::node_record(n));
                }
                Reply::Bytes(Arc::new(out))
            },
        ),
        (
            "header mismatch",
            "not the block's merkle root",
            |node, _, _| {
                // A chunk attested at a height whose header has another root.
                let (proofs, _) = synthetic(1, 10, 9_999);
                node.add_header(9_999, [7; 32]);
                Reply::Bytes(Arc::new(chunk_of(&proofs)))
            },
        ),
        ("too large", "limit", |_, _, _| {
            Reply::Bytes(Arc::new(vec![0; 2 << 20]))
        }),
        ("hang", "no complete reply within", |_, _, _| Reply::Hang),
        ("trickle", "no complete reply within", |_, _, _| {
            Reply::Trickle
        }),
        ("endless", "over the 1048576-byte limit", |_, _, _| {
            Reply::Endless
        }),
        ("redirect", "HTTP status 307", |_, _, b| {
            // Another host holds the good chunk: it must not be asked.
            let (elsewhere, addr) = ELSEWHERE.get().unwrap();
            elsewhere.set_bytes(1, b);
            Reply::Redirect(format!("{}/experimental/backup/1", url(*addr)))
        }),
    ];
    let mut fakes = Vec::new();
    let mut height = 100;
    for (name, want, broken) in &cases {
        let fake = Arc::new(Fake::default());
        let addr = mirror_support::serve(fake.clone()).await;
        let mut good = Vec::new();
        for n in 0..3 {
            let (proofs, bytes) = synth(&node, n, 20, height);
            height += 1;
            if n == 1 {
                fake.set(1, broken(&node, &proofs, bytes.clone()));
            } else {
                fake.set_bytes(n, bytes.clone());
            }
            good.push((proofs, bytes));
        }
        fakes.push((*name, *want, fake, addr, good));
    }
    let good_fake = Arc::new(Fake::default());
    let good_addr = mirror_support::serve(good_fake.clone()).await;
    for n in 0..3 {
        let (_, bytes) = synth(&node, n, 20, height);
        height += 1;
        good_fake.set_bytes(n, bytes);
    }
    let mut urls: Vec<String> = fakes.iter().map(|f| url(f.3)).collect();
    urls.push(url(good_addr));
    let mirror = InProc::start(config(urls, Some(node_addr))).await;
    until_held(mirror.addr, &url(good_addr), 3).await;
    for (name, want, _, addr, good) in &fakes {
        let i = until(&format!("{name}: chunk 1 refused"), || async {
            let i = info(mirror.addr).await;
            let s = status(&i, &url(*addr)).clone();
            s["last_error"]
                .as_str()
                .is_some_and(|e| e.starts_with("chunk 1:"))
                .then_some(s)
        })
        .await;
        let err = i["last_error"].as_str().unwrap();
        assert!(err.contains(want), "{name}: {err}");
        assert_eq!(i["chunks_held"], 1, "{name}");
        assert_eq!(i["last_chunk"], 0, "{name}");
        // Chunk 0 served, nothing of chunk 1 stored.
        for p in &good[0].0 {
            let r = timestamp(mirror.addr, p.msg()).await;
            assert_eq!(r.status, 200, "{name}");
            assert_eq!(r.body, p.serialize().unwrap());
        }
        for p in &good[1].0 {
            assert_eq!(timestamp(mirror.addr, p.msg()).await.status, 404, "{name}");
        }
    }
    // Refused chunks were retried: fixed, they are taken, then chunk 2.
    for (_, _, fake, _, good) in &fakes {
        fake.set_bytes(1, good[1].1.clone());
    }
    for (name, _, _, addr, good) in &fakes {
        until_held(mirror.addr, &url(*addr), 3).await;
        for p in good[1].0.iter().chain(&good[2].0) {
            let r = timestamp(mirror.addr, p.msg()).await;
            assert_eq!(r.body, p.serialize().unwrap(), "{name}");
        }
    }
    let i = info(mirror.addr).await;
    assert_eq!(i["own_chunks"], 3 * (cases.len() as u64 + 1));
    assert_eq!(
        elsewhere
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "a redirect to another host was followed"
    );
    // The HTML page names every calendar.
    let html = get(mirror.addr, "/", "").await.text();
    assert!(html.contains("Mirrored calendars") && html.contains(&url(good_addr)));
    mirror.stop().await;
}

/// Drops every Bitcoin attestation of `ts`.
fn strip_bitcoin(ts: &mut Timestamp) {
    let atts: Vec<Attestation> = ts.attestations().iter().cloned().collect();
    for a in atts {
        ts.remove_attestation(&a);
    }
    let ops: Vec<Op> = ts.ops().map(|(o, _)| o.clone()).collect();
    for o in ops {
        strip_bitcoin(ts.child_mut(&o).unwrap());
    }
}

/// A proof of two branches (the commitment stamped twice: two operations
/// from its node, each to a tree attested in its own block) is served
/// whole by a mirror and by a mirror of that mirror, whose chunks are the
/// calendar's byte for byte; and the same commitment held by two
/// calendars, one branch each, is served with both branches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_with_two_branches_keeps_both_through_two_mirrors() {
    let node = Arc::new(Fake::default());
    let node_addr = mirror_support::serve(node.clone()).await;
    let (first, root1) = synthetic(0, 50, 10);
    node.add_header(10, root1);
    // The second stamping: append a byte, then a tree of its own.
    let second_leaves: Vec<[u8; 32]> = first
        .iter()
        .map(|p| ots_proof::op::sha256(&[p.msg(), b"2"].concat()))
        .collect();
    let tree2 = ots_proof::MerkleTree::new(second_leaves).unwrap();
    node.add_header(11, tree2.root());
    let mut second = Vec::new();
    let mut both = Vec::new();
    for (i, p) in first.iter().enumerate() {
        let mut b = Timestamp::new(p.msg().to_vec()).unwrap();
        b.add_op(Op::append(b"2".to_vec()).unwrap())
            .unwrap()
            .add_op(Op::Sha256)
            .unwrap()
            .add_path(tree2.path(i).unwrap())
            .unwrap()
            .add_attestation(Attestation::Bitcoin { height: 11 });
        let mut m = p.clone();
        m.merge(b.clone()).unwrap();
        assert_eq!(m.all_attestations().len(), 2);
        second.push(b);
        both.push(m);
    }
    let cal = Arc::new(Fake::default());
    let cal_addr = mirror_support::serve(cal.clone()).await;
    let chunk = chunk_of(&both);
    cal.set_bytes(0, chunk.clone());
    let m1 = InProc::start(config(vec![url(cal_addr)], Some(node_addr))).await;
    let m2 = InProc::start(config(vec![url(m1.addr)], Some(node_addr))).await;
    until_held(m2.addr, &url(m1.addr), 1).await;
    for p in &both {
        let want = p.serialize().unwrap();
        for m in [m1.addr, m2.addr] {
            let r = timestamp(m, p.msg()).await;
            assert_eq!(r.status, 200);
            assert_eq!(r.body, want, "both branches");
            assert_eq!(r.header("cache-control"), Some("public, max-age=31536000"));
            assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        }
    }
    for m in [m1.addr, m2.addr] {
        let r = get(m, "/experimental/backup/0", "").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, chunk, "the calendar's chunk, byte for byte");
        assert_eq!(get(m, "/experimental/backup/1", "").await.status, 404);
    }
    // Two calendars, one branch each: the mirror merges them.
    let (a, b) = (Arc::new(Fake::default()), Arc::new(Fake::default()));
    let (a_addr, b_addr) = (
        mirror_support::serve(a.clone()).await,
        mirror_support::serve(b.clone()).await,
    );
    a.set_bytes(0, chunk_of(&first));
    b.set_bytes(0, chunk_of(&second));
    let m3 = InProc::start(config(vec![url(a_addr), url(b_addr)], Some(node_addr))).await;
    until_held(m3.addr, &url(a_addr), 1).await;
    until_held(m3.addr, &url(b_addr), 1).await;
    for p in &both {
        assert_eq!(
            timestamp(m3.addr, p.msg()).await.body,
            p.serialize().unwrap()
        );
    }
    let r = timestamp(m3.addr, b"unknown").await;
    assert_eq!((r.status, r.text().as_str()), (404, "Not found"));
    assert_eq!(get(m3.addr, "/timestamp/zz", "").await.status, 400);
    for m in [m3, m2, m1] {
        m.stop().await;
    }
}

const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/reference-calendar");

/// Every node record of the reference calendar's LevelDB, as one chunk
/// (the reference's backup format: its keys and values, sorted): the
/// mirror takes it, checks it against the regtest chain's headers, and
/// serves each completed commitment byte for byte as the reference does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_calendars_node_records_are_mirrored_and_served_as_it_serves_them() {
    let db_dir = Path::new(REFERENCE).join("calendar/db");
    let mut records = Vec::new();
    {
        use rusty_leveldb::LdbIterator;
        // Read in place: the overlay keeps LevelDB's writes in memory.
        let opt = rusty_leveldb::Options {
            create_if_missing: false,
            env: std::rc::Rc::new(Box::new(otsd::refstore::env::OverlayEnv::new())),
            ..Default::default()
        };
        let mut db = rusty_leveldb::DB::open(&db_dir, opt).unwrap();
        let mut it = db.new_iter().unwrap();
        while let Some((k, v)) = it.next() {
            records.push((k.to_vec(), v.to_vec()));
        }
    }
    records.sort();
    let mut chunk = Vec::new();
    for (k, v) in &records {
        ots_proof::codec::write_varbytes(&mut chunk, k);
        ots_proof::codec::write_varbytes(&mut chunk, v);
    }
    let fake = Arc::new(Fake::default());
    let addr = mirror_support::serve(fake.clone()).await;
    let headers = std::fs::read_to_string(Path::new(REFERENCE).join("headers.txt")).unwrap();
    for line in headers.lines() {
        let (h, hex_header) = line.split_once(' ').unwrap();
        let header: bitcoin::block::Header =
            bitcoin::consensus::deserialize(&hex::decode(hex_header).unwrap()).unwrap();
        use bitcoin::hashes::Hash;
        fake.add_header(h.parse().unwrap(), header.merkle_root.to_byte_array());
    }
    fake.set_bytes(0, chunk.clone());
    let mirror = InProc::start(config(vec![url(addr)], Some(addr))).await;
    until_held(mirror.addr, &url(addr), 1).await;
    let completed = std::fs::read_to_string(Path::new(REFERENCE).join("completed.txt")).unwrap();
    let mut n = 0;
    for line in completed.lines() {
        let (c, ts) = line.split_once(' ').unwrap();
        let r = timestamp(mirror.addr, &hex::decode(c).unwrap()).await;
        assert_eq!(r.status, 200, "{c}");
        assert_eq!(hex::encode(&r.body), ts, "{c}: the reference's bytes");
        n += 1;
    }
    assert_eq!(n, 302);
    // Its own chunk 0 is the reference's records, byte for byte.
    assert_eq!(
        get(mirror.addr, "/experimental/backup/0", "").await.body,
        chunk
    );
    mirror.stop().await;
}

/// The `otsd mirror` binary with `args` on calendar `cal`.
async fn spawn_mirror(
    dir: &Path,
    cal: &str,
    extra: &[String],
) -> (tokio::process::Child, SocketAddr, Log) {
    let mut args: Vec<String> = vec![
        "mirror".into(),
        "-p".into(),
        dir.display().to_string(),
        "-c".into(),
        cal.into(),
        "--rpc-address".into(),
        "127.0.0.1".into(),
        "--rpc-port".into(),
        "0".into(),
        "--poll-interval".into(),
        "0.3".into(),
        "--btc-regtest".into(),
    ];
    args.extend(extra.iter().cloned());
    common::spawn_otsd_logged(args).await
}

/// `kill -9` of the mirror process while it takes chunks, three times:
/// after the last restart it holds every chunk of the calendar exactly
/// once, in order (its own chunk k is the calendar's chunk k, byte for
/// byte, and it has as many as the calendar).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_chunks_then_every_chunk_is_held_exactly_once() {
    const CHUNKS: u64 = 24;
    const PER_CHUNK: u64 = 1000;
    let _turn = HEAVY.lock().await;
    let fake = Arc::new(Fake::default());
    let addr = mirror_support::serve(fake.clone()).await;
    let mut chunks = Vec::new();
    for n in 0..CHUNKS {
        let (_, bytes) = synth(&fake, n, PER_CHUNK, 1000 + n);
        fake.set_bytes(n, bytes.clone());
        chunks.push(bytes);
    }
    let dir = tempfile::tempdir().unwrap();
    let extra = vec!["--bitcoin-node".to_string(), Fake::rpc_url(addr)];
    for kill_at in [2u64, 9, 16] {
        let (mut child, maddr, log) = spawn_mirror(dir.path(), &url(addr), &extra).await;
        until(&format!("{kill_at} chunks stored"), || async {
            let i = info(maddr).await;
            (status(&i, &url(addr))["chunks_held"].as_u64().unwrap() >= kill_at).then_some(())
        })
        .await;
        child.kill().await.unwrap();
        let stored = log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("chunk stored"))
            .count();
        assert!(stored >= 1, "the mirror stored chunks before the kill");
    }
    let (mut child, maddr, _log) = spawn_mirror(dir.path(), &url(addr), &extra).await;
    let i = until_held(maddr, &url(addr), CHUNKS).await;
    assert_eq!(i["own_chunks"], CHUNKS, "each chunk once");
    for (n, want) in chunks.iter().enumerate() {
        let r = get(maddr, &format!("/experimental/backup/{n}"), "").await;
        assert_eq!(r.status, 200);
        assert!(r.body == *want, "own chunk {n} is the calendar's chunk {n}");
    }
    assert_eq!(
        get(maddr, &format!("/experimental/backup/{CHUNKS}"), "")
            .await
            .status,
        404
    );
    for n in [0, CHUNKS / 2, CHUNKS - 1] {
        let c = mirror_support::commitment(n, PER_CHUNK - 1, 1000 + n);
        assert_eq!(timestamp(maddr, &c).await.status, 200);
    }
    child.kill().await.unwrap();
}

/// Prints a child's log if the test fails.
struct DumpOnPanic(Log);

impl Drop for DumpOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let lines = self.0.lock().unwrap();
            eprintln!("--- calendar log (last 200 lines) ---");
            for l in lines.iter().rev().take(200).rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// Posts `n` digests to the calendar at `addr`, one after the other: with
/// a short aggregation interval each gets a round, so a commitment, of its
/// own (a round's digests share one). Returns the commitments, distinct.
async fn post_many(addr: SocketAddr, n: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for _ in 0..n {
        let digest = common::random_digest();
        let reply = common::post_digest(addr, &digest).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let c = common::check_proof(&digest, &reply.body);
        if out.last() != Some(&c) {
            out.push(c);
        }
    }
    out
}

/// A calendar on devchain with more than 2,000 completed commitments (in
/// three rounds of posting and mining, a commitment per digest), a mirror of it, a mirror of that
/// mirror (both checking every Bitcoin attestation against devchain's
/// headers), and a second calendar mirroring the first with `--mirror`:
/// every commitment of the two complete chunks gets the same bytes from
/// all four, the others none from the mirrors; the mirrors' chunks are the
/// calendar's byte for byte; the second calendar's info page shows what it
/// mirrors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calendar_its_mirror_and_a_mirror_of_that_serve_identical_proofs() {
    use common::node::{Backend, TestNode, WALLET};
    let _turn = HEAVY.lock().await;
    let node = TestNode::start(Backend::Dev).await;
    let dir = tempfile::tempdir().unwrap();
    let cal_dir = common::init_calendar(dir.path());
    let calendar_args = |cal_dir: &Path| -> Vec<String> {
        let mut a: Vec<String> = vec!["-c".into(), cal_dir.display().to_string()];
        a.extend(
            ["--rpc-address", "127.0.0.1", "--rpc-port", "0"]
                .into_iter()
                .chain(["--aggregation-interval", "2", "--btc-regtest"])
                .chain(["--btc-wallet", WALLET, "--btc-min-confirmations", "2"])
                .chain(["--btc-min-tx-interval", "0", "--btc-poll-interval", "0.1"])
                .map(String::from),
        );
        a.push("--bitcoin-node".into());
        a.push(node.url());
        a
    };
    let (mut cal, cal_addr, cal_log) = common::spawn_otsd_logged(calendar_args(&cal_dir)).await;
    let _dump = DumpOnPanic(cal_log);
    let mut all = Vec::new();
    for _round in 0..3 {
        let round = post_many(cal_addr, 750).await;
        let deadline = Instant::now() + Duration::from_secs(600);
        // Blocks a second apart, the first after the stamper has sent the
        // round's transaction: a block mined while it signs a replacement
        // can pause it ("Input not found or already spent", seen once on
        // a loaded machine; a stamper matter, not the mirror's).
        tokio::time::sleep(Duration::from_secs(2)).await;
        loop {
            let mut done = true;
            for c in [&round[0], &round[round.len() / 2], &round[round.len() - 1]] {
                if timestamp(cal_addr, c).await.status != 200 {
                    done = false;
                }
            }
            if done {
                break;
            }
            assert!(Instant::now() < deadline, "the round did not complete");
            node.mine(1).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        all.extend(round);
    }
    all.sort();
    all.dedup();
    assert!(all.len() > 2000, "{} commitments", all.len());
    // Every commitment complete, each checked against the node.
    let mut proofs = Vec::new();
    for c in &all {
        let body = until("a complete proof", || async {
            let r = timestamp(cal_addr, c).await;
            (r.status == 200).then_some(r.body)
        })
        .await;
        common::verify_on_node(&node.node(), c, &body).await;
        proofs.push(body);
    }
    for n in 0..2 {
        let r = get(cal_addr, &format!("/experimental/backup/{n}"), "").await;
        assert_eq!(r.status, 200, "calendar chunk {n}: {}", r.text());
    }
    let check = vec!["--bitcoin-node".to_string(), node.url()];
    let m1_dir = tempfile::tempdir().unwrap();
    let (mut m1, m1_addr, _m1_log) = spawn_mirror(m1_dir.path(), &url(cal_addr), &check).await;
    let m2_dir = tempfile::tempdir().unwrap();
    let (mut m2, m2_addr, _m2_log) = spawn_mirror(m2_dir.path(), &url(m1_addr), &check).await;
    // A second calendar mirroring the first beside its own proofs.
    let cal2_dir = common::init_calendar(&dir.path().join("second"));
    let mut args = calendar_args(&cal2_dir);
    args.extend([
        "--mirror".into(),
        url(cal_addr),
        "--mirror-poll-interval".into(),
        "0.3".into(),
    ]);
    let (mut cal2, cal2_addr, _cal2_log) = common::spawn_otsd_logged(args).await;
    until_held(m1_addr, &url(cal_addr), 2).await;
    until_held(m2_addr, &url(m1_addr), 2).await;
    let i = until("the second calendar to mirror two chunks", || async {
        let r = get(cal2_addr, "/", "Accept: application/json\r\n").await;
        let i: Value = serde_json::from_slice(&r.body).unwrap();
        (i["mirrors"][0]["chunks_held"] == 2).then_some(i)
    })
    .await;
    assert_eq!(i["mirrors"][0]["url"], url(cal_addr));
    assert_eq!(i["mirrors"][0]["last_chunk"], 1);
    assert!(i["mirrors"][0]["last_error"].is_null(), "{i}");
    assert!(get(cal2_addr, "/", "")
        .await
        .text()
        .contains("Mirrored calendars"));
    let mut mirrored = 0;
    for (c, want) in all.iter().zip(&proofs) {
        let r1 = timestamp(m1_addr, c).await;
        if r1.status == 404 {
            assert_eq!(timestamp(m2_addr, c).await.status, 404);
            assert_eq!(timestamp(cal2_addr, c).await.status, 404);
            continue;
        }
        mirrored += 1;
        assert_eq!(r1.status, 200);
        assert!(r1.body == *want, "the mirror's proof is the calendar's");
        let r2 = timestamp(m2_addr, c).await;
        assert!(
            r2.status == 200 && r2.body == *want,
            "the mirror of the mirror's too"
        );
        let r3 = timestamp(cal2_addr, c).await;
        assert!(r3.status == 200 && r3.body == *want, "--mirror's too");
        assert_eq!(r3.header("cache-control"), Some("public, max-age=31536000"));
    }
    assert_eq!(mirrored, 2000, "the two complete chunks, every commitment");
    assert!(
        all.len() > mirrored,
        "commitments past the last complete chunk"
    );
    for n in 0..2 {
        let want = get(cal_addr, &format!("/experimental/backup/{n}"), "")
            .await
            .body;
        for m in [m1_addr, m2_addr] {
            assert!(
                get(m, &format!("/experimental/backup/{n}"), "").await.body == want,
                "chunk {n}, byte for byte"
            );
        }
    }
    for child in [&mut m2, &mut m1, &mut cal2, &mut cal] {
        child.kill().await.unwrap();
    }
}
