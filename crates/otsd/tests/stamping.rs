//! The calendar end to end on a Bitcoin node: the `otsd` binary stamps
//! into devchain, and into a real Bitcoin Core too when `BITCOIND_EXE` is
//! set (the same scenarios, one after the other). Blocks are mined only
//! when a scenario says so, so every state of the stamper can be reached
//! on purpose: fee bumping up to the cap, reorgs of the timestamp
//! transaction before and after it is mined, `kill -9` restarts in each
//! state, and a 30-second node outage. Every acknowledged commitment must
//! end with a complete proof that verifies against the node's header.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::node::{Backend, TestNode, WALLET};
use common::{check_proof, get, init_calendar, post_digest, random_digest, Log};
use ots_proof::Attestation;
use serde_json::{json, Value};

/// Waits poll every 100 ms, at most a minute.
const POLL: Duration = Duration::from_millis(100);
const POLLS: usize = 600;
const PENDING: &str = "Pending confirmation in Bitcoin blockchain";

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

/// A calendar process on `node`.
struct Cal {
    dir: PathBuf,
    child: tokio::process::Child,
    addr: SocketAddr,
    log: Log,
}

impl Cal {
    async fn start(dir: &Path, node: &TestNode, extra: &[&str]) -> Cal {
        let mut args: Vec<std::ffi::OsString> = vec!["-c".into(), dir.into()];
        args.extend(
            ["--rpc-address", "127.0.0.1", "--rpc-port", "0"]
                .into_iter()
                .chain(["--aggregation-interval", "50", "--btc-regtest"])
                .chain(["--btc-wallet", WALLET, "--btc-min-confirmations", "2"])
                .chain(["--btc-min-tx-interval", "0", "--btc-poll-interval", "0.1"])
                .chain(extra.iter().copied())
                .map(Into::into),
        );
        args.push("--bitcoin-node".into());
        args.push(node.url().into());
        let (child, addr, log) = common::spawn_otsd_logged(args).await;
        Cal {
            dir: dir.to_path_buf(),
            child,
            addr,
            log,
        }
    }

    /// `kill -9`, then a fresh process on the same calendar.
    async fn crash_and_restart(self, node: &TestNode, extra: &[&str]) -> Cal {
        let dir = self.dir.clone();
        self.kill().await;
        Cal::start(&dir, node, extra).await
    }

    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    /// Posts `n` digests; returns their commitments.
    async fn post(&self, n: usize) -> Vec<Vec<u8>> {
        let mut commitments = Vec::new();
        for _ in 0..n {
            let digest = random_digest();
            let reply = post_digest(self.addr, &digest).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            commitments.push(check_proof(&digest, &reply.body));
        }
        commitments
    }

    /// GET /timestamp: status and body.
    async fn timestamp(&self, commitment: &[u8]) -> (u16, Vec<u8>) {
        let reply = get(
            self.addr,
            &format!("/timestamp/{}", hex::encode(commitment)),
            "",
        )
        .await;
        (reply.status, reply.body)
    }

    async fn reason(&self, commitment: &[u8]) -> String {
        let (status, body) = self.timestamp(commitment).await;
        assert_eq!(status, 404, "not complete yet");
        String::from_utf8_lossy(&body).trim().to_string()
    }

    async fn until_reason(&self, commitment: &[u8], want: &str) {
        until(&format!("the reason {want:?}"), || async move {
            (self.reason(commitment).await == want).then_some(())
        })
        .await;
    }

    /// Waits until the stamper has recorded `txid` as its latest version
    /// (its state is saved by then).
    async fn until_recorded(&self, txid: &str) {
        until("the calendar to record the transaction", || async {
            (self.info().await["most_recent_tx"] == json!(txid)).then_some(())
        })
        .await;
    }

    async fn info(&self) -> Value {
        let reply = get(self.addr, "/", "Accept: application/json\r\n").await;
        assert_eq!(reply.status, 200);
        serde_json::from_slice(&reply.body).unwrap()
    }

    /// Waits until the stamper has dealt with the node's best block.
    async fn until_synced(&self, node: &TestNode) {
        let height = node.height().await;
        until(&format!("the calendar at height {height}"), || async move {
            (self.info().await["block_height"] == json!(height)).then_some(())
        })
        .await;
        // Whatever the block set off (a bump, a completion) is done within
        // the pass that showed it; one more pass for good measure.
        tokio::time::sleep(POLL * 3).await;
    }

    fn log_count(&self, needle: &str) -> usize {
        let log = self.log.lock().unwrap();
        log.iter().filter(|l| l.contains(needle)).count()
    }

    fn state(&self) -> Value {
        let bytes = std::fs::read(self.dir.join("stamper.json")).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Waits for every commitment's complete proof and checks it against
    /// the node's best chain; returns the heights.
    async fn until_complete(&self, node: &TestNode, commitments: &[Vec<u8>]) -> Vec<u64> {
        let mut heights = Vec::new();
        for commitment in commitments {
            let body = until("a complete proof", || async move {
                let (status, body) = self.timestamp(commitment).await;
                (status == 200).then_some(body)
            })
            .await;
            let (proof, _) = common::verify_on_node(&node.node(), commitment, &body).await;
            let height = proof
                .all_attestations()
                .iter()
                .find_map(|(_, a)| match a {
                    Attestation::Bitcoin { height } => Some(*height),
                    _ => None,
                })
                .expect("a Bitcoin attestation");
            heights.push(height);
        }
        heights
    }
}

impl Drop for Cal {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- otsd log ---");
            for line in self.log.lock().unwrap().iter() {
                eprintln!("{line}");
            }
        }
    }
}

/// The one transaction in the mempool, once there is one.
async fn until_mempool_tx(node: &TestNode) -> String {
    until("a timestamp transaction in the mempool", || async move {
        let mempool = node.mempool().await;
        assert!(
            mempool.len() <= 1,
            "one timestamp transaction at a time: {mempool:?}"
        );
        mempool.into_iter().next()
    })
    .await
}

/// The txids of a block, coinbase first.
async fn block_txids(node: &TestNode, hash: &str) -> Vec<String> {
    let block: Value = node.call("getblock", json!([hash, 1])).await;
    serde_json::from_value(block["tx"].clone()).unwrap()
}

fn waiting(txid: &str, n: u32) -> String {
    format!("Timestamped by transaction {txid}; waiting for {n} confirmations")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fee_bumps_once_per_block_each_paying_more_up_to_the_cap() {
    for backend in Backend::all() {
        fee_bumping(backend).await;
    }
}

async fn fee_bumping(backend: Backend) {
    const MAX_FEE_SATS: u64 = 1_000;
    let node = TestNode::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let cal_dir = init_calendar(dir.path());
    let cal = Cal::start(&cal_dir, &node, &["--btc-max-fee", "0.00001"]).await;
    let commitments = cal.post(3).await;
    let mut txid = until_mempool_tx(&node).await;
    let outpoints = node.inputs(&txid).await;
    let mut fees = vec![node.mempool_fee(&txid).await];
    assert!(fees[0] <= MAX_FEE_SATS);

    // No block, no replacement.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(node.mempool().await, vec![txid.clone()]);

    // Each empty block: exactly one replacement, spending the same
    // outputs and paying more, until the next one would pass the cap.
    let mut capped = false;
    for _ in 0..20 {
        node.mine_empty().await;
        cal.until_synced(&node).await;
        let mempool = node.mempool().await;
        assert_eq!(mempool.len(), 1, "{mempool:?}");
        if mempool[0] == txid {
            capped = true;
            break;
        }
        txid = mempool[0].clone();
        assert_eq!(node.inputs(&txid).await, outpoints, "a replacement");
        let fee = node.mempool_fee(&txid).await;
        assert!(fee > *fees.last().unwrap(), "{fee} after {fees:?}");
        assert!(fee <= MAX_FEE_SATS, "{fee} over the cap");
        fees.push(fee);
        assert_eq!(
            cal.log_count("timestamp transaction sent"),
            fees.len(),
            "one broadcast per block"
        );
    }
    assert!(capped, "the cap stops bumping: {fees:?}");
    assert!(fees.len() >= 3, "several bumps before the cap: {fees:?}");
    assert_eq!(cal.log_count("fee bumping stopped"), 1);

    // More blocks: still capped, and said once.
    node.mine_empty().await;
    cal.until_synced(&node).await;
    assert_eq!(node.mempool().await, vec![txid.clone()]);
    assert_eq!(cal.log_count("fee bumping stopped"), 1);

    // Mined at last: complete proofs.
    let hashes = node.mine(2).await;
    assert_eq!(block_txids(&node, &hashes[0]).await[1..], [txid]);
    cal.until_complete(&node, &commitments).await;
    cal.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorgs_before_and_after_the_transaction_is_mined() {
    for backend in Backend::all() {
        reorgs(backend).await;
    }
}

async fn reorgs(backend: Backend) {
    let node = TestNode::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let cal_dir = init_calendar(dir.path());
    let cal = Cal::start(&cal_dir, &node, &[]).await;
    let commitments = cal.post(2).await;
    until_mempool_tx(&node).await;
    cal.until_synced(&node).await;

    // Before it is mined: the tip is replaced by a longer branch of empty
    // blocks; the transaction stays unconfirmed and its commitments pending.
    let tip: String = node.call("getbestblockhash", json!([])).await;
    let _: Value = node.call("invalidateblock", json!([tip])).await;
    node.mine_empty().await;
    node.mine_empty().await;
    cal.until_synced(&node).await;
    assert_eq!(cal.reason(&commitments[0]).await, PENDING);
    let txid = until_mempool_tx(&node).await;

    // Mined: one confirmation is not final.
    let mined_in = node.mine(1).await.remove(0);
    assert_eq!(
        &block_txids(&node, &mined_in).await[1..],
        std::slice::from_ref(&txid)
    );
    cal.until_reason(&commitments[0], &waiting(&txid, 1)).await;

    // After it is mined: its block is reorged out. The commitments are
    // pending again, and nothing completes on the abandoned branch.
    let _: Value = node.call("invalidateblock", json!([mined_in])).await;
    cal.until_reason(&commitments[0], PENDING).await;
    node.mine_empty().await;
    node.mine_empty().await;
    cal.until_synced(&node).await;
    for c in &commitments {
        assert_eq!(cal.reason(c).await, PENDING);
    }

    // Found again in the new branch (as it was, or bumped): complete, on
    // the new branch's blocks.
    let again = until_mempool_tx(&node).await;
    let hashes = node.mine(2).await;
    assert_eq!(block_txids(&node, &hashes[0]).await[1..], [again]);
    let heights = cal.until_complete(&node, &commitments).await;
    let client = node.node();
    for height in heights {
        let hash = client.block_hash(height).await.unwrap().unwrap();
        assert_eq!(hash.to_string(), hashes[0]);
    }
    cal.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_in_each_stamper_state_lose_nothing_and_spend_once() {
    for backend in Backend::all() {
        restarts(backend).await;
    }
}

/// `journal_end` and the ranges of the open round's latest version, from
/// the persisted state.
fn cursor(state: &Value) -> (u64, Value) {
    let end = state["journal_end"].as_u64().unwrap();
    let versions = state["round"]["versions"].as_array().cloned();
    let ranges = versions.and_then(|v| v.last().map(|l| l["ranges"].clone()));
    (end, ranges.unwrap_or(Value::Null))
}

async fn restarts(backend: Backend) {
    let node = TestNode::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let cal_dir = init_calendar(dir.path());
    let mut cal = Cal::start(&cal_dir, &node, &[]).await;

    // Killed with its transaction unconfirmed: after the restart the same
    // transaction (or a replacement of it) is the only one; new digests
    // wait for the next round.
    let a = cal.post(2).await;
    let tx_a = until_mempool_tx(&node).await;
    let outpoints = node.inputs(&tx_a).await;
    // Whether a's second digest made it into the first round depends on
    // how quickly the stamper picked up the first (a loaded machine is
    // slower): the state, saved before the broadcast, says where it ends.
    let (a_end, _) = cursor(&cal.state());
    assert!((1..=2).contains(&a_end), "{a_end}");
    // What tx_a covers, and what waits for the next round with b.
    let a_in_tx = a[..a_end as usize].to_vec();
    let a_later = a[a_end as usize..].to_vec();
    cal = cal.crash_and_restart(&node, &[]).await;
    let b = cal.post(2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mempool = node.mempool().await;
    assert_eq!(mempool.len(), 1, "no second transaction: {mempool:?}");
    assert_eq!(node.inputs(&mempool[0]).await, outpoints, "no double spend");

    // Mined: the next round (b) starts at once. Killed with a waiting for
    // confirmations and b unconfirmed: after the restart a is still known
    // as mined, and b's transaction (or a replacement) is the only one.
    let hash = node.mine(1).await.remove(0);
    assert_eq!(block_txids(&node, &hash).await[1..], [mempool[0].clone()]);
    let mined_a = mempool[0].clone();
    cal.until_reason(&a[0], &waiting(&mined_a, 1)).await;
    let tx_b = until_mempool_tx(&node).await;
    let outpoints = node.inputs(&tx_b).await;
    cal.until_recorded(&tx_b).await;
    assert_eq!(
        cursor(&cal.state()),
        (4, json!([{"start": a_end, "end": 4}]))
    );
    cal = cal.crash_and_restart(&node, &[]).await;
    cal.until_reason(&a[0], &waiting(&mined_a, 1)).await;
    cal.until_reason(&b[0], PENDING).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mempool = node.mempool().await;
    assert_eq!(mempool.len(), 1, "no second transaction: {mempool:?}");
    assert_eq!(node.inputs(&mempool[0]).await, outpoints, "no double spend");

    // a complete, b mined: killed again; a's proofs stay served, b is
    // still known as mined and completes at the next block.
    let hash = node.mine(1).await.remove(0);
    let mined_b = block_txids(&node, &hash).await[1].clone();
    cal.until_complete(&node, &a_in_tx).await;
    cal.until_reason(&b[0], &waiting(&mined_b, 1)).await;
    cal = cal.crash_and_restart(&node, &[]).await;
    cal.until_complete(&node, &a_in_tx).await;
    cal.until_reason(&b[0], &waiting(&mined_b, 1)).await;
    node.mine(1).await;
    cal.until_complete(&node, &[a_later, b.clone()].concat())
        .await;

    // Killed with nothing in flight: nothing is sent again, and a new
    // digest's round starts at the journal's end, not from zero.
    cal = cal.crash_and_restart(&node, &[]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(node.mempool().await.is_empty(), "nothing resent");
    let c = cal.post(1).await;
    let tx_c = until_mempool_tx(&node).await;
    cal.until_recorded(&tx_c).await;
    let (end, ranges) = cursor(&cal.state());
    assert_eq!(end, 5);
    assert_eq!(ranges, json!([{"start": 4, "end": 5}]));
    node.mine(2).await;
    for done in [&a, &b, &c] {
        cal.until_complete(&node, done).await;
    }
    cal.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_outage_of_30_seconds_pauses_stamping_only() {
    for backend in Backend::all() {
        outage(backend).await;
    }
}

async fn outage(backend: Backend) {
    const OUTAGE: Duration = Duration::from_secs(30);
    let mut node = TestNode::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let cal_dir = init_calendar(dir.path());
    let cal = Cal::start(&cal_dir, &node, &[]).await;
    let mut commitments = cal.post(2).await;
    let txid = until_mempool_tx(&node).await;
    cal.until_recorded(&txid).await;

    // The node goes away with the transaction unconfirmed. Digests are
    // still accepted and the info page still answers; the stamper says so
    // once.
    node.stop().await;
    let start = Instant::now();
    while start.elapsed() < OUTAGE {
        commitments.extend(cal.post(1).await);
        let _ = cal.info().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_eq!(cal.log_count("stamper paused"), 1, "logged once per outage");

    // Back: stamping resumes. (Bitcoin Core was killed and lost its
    // mempool; the stamper sends the transaction again, before any block.)
    node.restart().await;
    until("the stamper to resume", || async {
        (cal.log_count("reachable again") == 1).then_some(())
    })
    .await;
    let again = until_mempool_tx(&node).await;
    assert_eq!(
        again, txid,
        "the same transaction, sent again if the node forgot it"
    );
    for _ in 0..6 {
        node.mine(1).await;
        cal.until_synced(&node).await;
    }
    cal.until_complete(&node, &commitments).await;
    cal.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_wallet_is_reported_once_and_digests_are_still_accepted() {
    for backend in Backend::all() {
        empty_wallet(backend).await;
    }
}

async fn empty_wallet(backend: Backend) {
    const SAID: &str = "the wallet has no confirmed output";
    let node = TestNode::start_unfunded(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let cal_dir = init_calendar(dir.path());
    let cal = Cal::start(&cal_dir, &node, &[]).await;
    let mut commitments = cal.post(2).await;
    let warnings = until("the info page's warning", || async {
        let warnings = cal.info().await["warnings"].clone();
        (warnings.to_string().contains(SAID)).then_some(warnings)
    })
    .await;
    assert_eq!(warnings.as_array().unwrap().len(), 1, "{warnings}");

    // Still accepting digests; said once, nothing sent.
    commitments.extend(cal.post(2).await);
    node.mine_empty().await;
    cal.until_synced(&node).await;
    assert!(node.mempool().await.is_empty());
    assert_eq!(cal.log_count(SAID), 1, "logged once");

    // Funded: the first of these blocks' coinbase matures (101
    // confirmations, as Core's wallet counts) with the last one, so the
    // round cannot start, and be mined, halfway through.
    node.mine(101).await;
    let txid = until_mempool_tx(&node).await;
    cal.until_recorded(&txid).await;
    assert_eq!(cal.info().await["warnings"], json!([]));
    node.mine(2).await;
    cal.until_complete(&node, &commitments).await;
    cal.kill().await;
}

/// Mines a block at a time until every one of `commitments` has its
/// complete proof (which is then checked against the node); bounded (two
/// minutes: the calendar needs a poll or two to react to each block, which
/// a loaded machine stretches).
async fn mine_until_complete(cal: &Cal, node: &TestNode, commitments: &[Vec<u8>]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let mut done = true;
        for c in commitments {
            if cal.timestamp(c).await.0 != 200 {
                done = false;
                break;
            }
        }
        if done {
            cal.until_complete(node, commitments).await;
            return;
        }
        // A block for a transaction the calendar has sent, or for the
        // confirmations of a mined one.
        node.mine(1).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the commitments did not complete");
}

/// A calendar of 40 journal records, 35 with complete proofs and 5 still
/// waiting; killed. Returns the node, the temp dir, the calendar directory
/// and the commitments.
async fn calendar_with_history(
    backend: Backend,
) -> (
    TestNode,
    tempfile::TempDir,
    PathBuf,
    Vec<Vec<u8>>,
    Vec<Vec<u8>>,
) {
    let node = TestNode::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let cal_dir = init_calendar(dir.path());
    let cal = Cal::start(&cal_dir, &node, &[]).await;
    let done = cal.post(35).await;
    mine_until_complete(&cal, &node, &done).await;
    let waiting = cal.post(5).await;
    cal.kill().await;
    (node, dir, cal_dir, done, waiting)
}

/// Runs the `otsd` binary on `dir` as [`Cal::start`] does, expecting it to
/// refuse to start: returns its stderr.
async fn refused(dir: &Path, node: &TestNode) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_otsd"))
            .arg("-c")
            .arg(dir)
            .args(["--rpc-address", "127.0.0.1", "--rpc-port", "0"])
            .args(["--btc-regtest", "--btc-wallet", WALLET])
            .args(["--bitcoin-node", &node.url()])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("otsd exits in time")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "otsd started: {stderr}");
    stderr
}

/// Issue 16, case 1: a journal cut to 30 records (or deleted) under a
/// calendar with completed and pending proofs is refused at start-up,
/// naming the files and the way on, instead of serving new commitments at
/// old positions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shortened_or_deleted_journal_is_refused() {
    let (node, _dir, cal_dir, _, _) = calendar_with_history(Backend::Dev).await;
    let journal = cal_dir.join("journal");
    let full = std::fs::read(&journal).unwrap();
    assert_eq!(full.len(), 40 * 44);
    std::fs::write(&journal, &full[..30 * 44]).unwrap();
    let stderr = refused(&cal_dir, &node).await;
    assert!(stderr.contains("holds only 30 records"), "{stderr}");
    assert!(stderr.contains("store.redb"), "{stderr}");
    assert!(
        stderr.contains("Restore the journal from a backup"),
        "{stderr}"
    );
    // Deleted: the same refusal, with no records.
    std::fs::remove_file(&journal).unwrap();
    let stderr = refused(&cal_dir, &node).await;
    assert!(stderr.contains("holds only 0 records"), "{stderr}");
    // The stamper's state alone says so too (a store that lost its proofs
    // as well): stamper.json is named.
    std::fs::write(&journal, &full[..30 * 44]).unwrap();
    std::fs::remove_file(cal_dir.join("store.redb")).unwrap();
    let stderr = refused(&cal_dir, &node).await;
    assert!(stderr.contains("stamper.json"), "{stderr}");
    assert!(stderr.contains("holds only 30 records"), "{stderr}");
    // Put back, it serves again.
    std::fs::write(&journal, &full).unwrap();
    let cal = Cal::start(&cal_dir, &node, &[]).await;
    cal.kill().await;
}

/// Issue 16, case 2: a deleted `store.redb` is noticed at start-up: the
/// commitments it held proofs for are pending again (a log line says so),
/// stamped again and served complete; an empty (0-byte) store is refused
/// with the way on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_store_is_stamped_again_and_an_empty_one_refused() {
    let (node, _dir, cal_dir, done, waiting) = calendar_with_history(Backend::Dev).await;
    std::fs::remove_file(cal_dir.join("store.redb")).unwrap();
    let cal = Cal::start(&cal_dir, &node, &[]).await;
    assert_eq!(
        cal.log_count("pending again and will be stamped again"),
        1,
        "the repair is logged"
    );
    assert_eq!(cal.reason(&done[0]).await, PENDING);
    let all: Vec<Vec<u8>> = done.iter().chain(&waiting).cloned().collect();
    mine_until_complete(&cal, &node, &all).await;
    cal.kill().await;

    let store = cal_dir.join("store.redb");
    std::fs::write(&store, []).unwrap();
    let stderr = refused(&cal_dir, &node).await;
    assert!(stderr.contains("store.redb"), "{stderr}");
    assert!(stderr.contains("move"), "{stderr}");
}

/// Issue 16, case 6: with `--journal-verify-last 1`, a flipped bit in a
/// record of a mined batch no longer stops all stamping: the batch is set
/// aside (logged, and on the info page), its intact commitments are
/// stamped again and complete, and so does every newer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_record_in_a_mined_batch_is_set_aside_and_stamping_goes_on() {
    let node = TestNode::start(Backend::Dev).await;
    let dir = tempfile::tempdir().unwrap();
    let cal_dir = init_calendar(dir.path());
    let cal = Cal::start(&cal_dir, &node, &[]).await;
    let first = cal.post(1).await;
    until_mempool_tx(&node).await;
    let batch = cal.post(3).await; // journal records 1..4, the next round
    node.mine(1).await;
    let tx = until_mempool_tx(&node).await;
    cal.until_recorded(&tx).await;
    node.mine(1).await; // the batch's transaction mined, one confirmation
    cal.until_complete(&node, &first).await;
    cal.until_reason(&batch[0], &waiting(&tx, 1)).await;
    cal.kill().await;

    // One bit of record 1's tip, which only a full check would catch.
    let journal = cal_dir.join("journal");
    let mut bytes = std::fs::read(&journal).unwrap();
    assert_eq!(bytes.len(), 4 * 44);
    bytes[44 + 10] ^= 0x01;
    std::fs::write(&journal, &bytes).unwrap();

    let cal = Cal::start(&cal_dir, &node, &["--journal-verify-last", "1"]).await;
    node.mine(1).await; // final: the completion finds the record changed
    until("the batch set aside", || async {
        (cal.log_count("the batch is set aside") == 1).then_some(())
    })
    .await;
    // On the info page once its view is refreshed (it is built at most
    // every 5 s).
    let warnings = until("the set-aside batch on the info page", || async {
        let warnings = cal.info().await["warnings"].to_string();
        warnings.contains("could not be stored").then_some(warnings)
    })
    .await;
    assert!(warnings.contains(&tx), "{warnings}");
    // Stamping goes on: the batch's intact commitments and a new one.
    let newer = cal.post(1).await;
    let mut rest: Vec<Vec<u8>> = batch[1..].to_vec();
    rest.extend(newer);
    mine_until_complete(&cal, &node, &rest).await;
    // The damaged record's commitment is not the journal's any more: it
    // gets no proof, and certainly no wrong one.
    assert_ne!(cal.timestamp(&batch[0]).await.0, 200);
    cal.kill().await;
}

/// Issue 17, market fees: devchain's fee estimate rises to 25 sat/vB and
/// the bump at the next block pays at least that rate (the mempool's own
/// figures), far above the BIP125 minimum; the info page says why. Then
/// the estimate falls below the minimum: the next bump pays the minimum,
/// still more than before. Mined, every proof completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rising_fee_estimate_is_paid_by_the_next_bump() {
    const RISEN_SAT_PER_KVB: u64 = 25_000;
    let node = TestNode::start(Backend::Dev).await;
    let dir = tempfile::tempdir().unwrap();
    let cal_dir = init_calendar(dir.path());
    let cal = Cal::start(&cal_dir, &node, &[]).await;
    let commitments = cal.post(2).await;
    let first = until_mempool_tx(&node).await;
    cal.until_recorded(&first).await;
    let first_rate = node.mempool_rate(&first).await;
    assert!(first_rate < 5.0, "a quiet market first: {first_rate}");
    let outpoints = node.inputs(&first).await;

    node.set_fee_estimate(RISEN_SAT_PER_KVB);
    node.mine_empty().await;
    cal.until_synced(&node).await;
    let risen = until_mempool_tx(&node).await;
    assert_ne!(risen, first, "replaced at the block");
    assert_eq!(node.inputs(&risen).await, outpoints, "a replacement");
    let rate = node.mempool_rate(&risen).await;
    assert!(
        rate >= RISEN_SAT_PER_KVB as f64 / 1000.0,
        "the bump pays the new estimate: {rate} sat/vB"
    );
    cal.until_recorded(&risen).await;
    let info = cal.info().await;
    assert_eq!(info["fee_rule"], "estimate", "{info}");
    assert!(info["fee_rate"].as_f64().unwrap() >= 25.0, "{info}");
    assert!(
        info["fee_reason"].as_str().unwrap().contains("25.0 sat/vB"),
        "{info}"
    );

    // The market falls: the BIP125 minimum, above the new estimate.
    let risen_fee = node.mempool_fee(&risen).await;
    node.set_fee_estimate(1_000);
    node.mine_empty().await;
    cal.until_synced(&node).await;
    let after = until_mempool_tx(&node).await;
    assert_ne!(after, risen);
    assert!(node.mempool_fee(&after).await > risen_fee);
    cal.until_recorded(&after).await;
    assert_eq!(cal.info().await["fee_rule"], "minimum");

    node.mine(2).await;
    cal.until_complete(&node, &commitments).await;
    cal.kill().await;
}

/// Whether `body` is a proof of `commitment` whose Bitcoin attestation
/// verifies against `node`'s best chain now.
async fn verifies_on_best_chain(
    node: &ots_bitcoin::RpcClient,
    commitment: &[u8],
    body: &[u8],
) -> bool {
    let Ok(proof) = ots_proof::Timestamp::deserialize(body, commitment) else {
        return false;
    };
    let attested = proof
        .all_attestations()
        .into_iter()
        .find_map(|(msg, a)| match a {
            Attestation::Bitcoin { height } => Some((msg.to_vec(), *height)),
            _ => None,
        });
    let Some((msg, height)) = attested else {
        return false;
    };
    let Ok(Some(hash)) = node.block_hash(height).await else {
        return false;
    };
    let Ok(Some(header)) = node.block_header(&hash).await else {
        return false;
    };
    ots_proof::verify::verify_bitcoin_header(&msg, &header).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_deeper_than_the_confirmations_restamps_the_completed_proofs() {
    for backend in Backend::all() {
        deep_reorg(backend).await;
    }
}

/// Issue 17: proofs completed at 2 confirmations, then a reorg of depth
/// 2 + 2 replaces their block. Once the calendar has seen it, no GET
/// answers a proof that fails against the best chain (polled all along);
/// the commitments are pending, the reorg is on the info page and counted,
/// and every commitment (those of the reorged batch, one of the round in
/// flight and one posted after) ends with a proof verifying against the
/// new best chain.
async fn deep_reorg(backend: Backend) {
    const MIN_CONFIRMATIONS: usize = 2;
    let node = TestNode::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let cal_dir = init_calendar(dir.path());
    let cal = Cal::start(&cal_dir, &node, &[]).await;
    let (first, second) = tokio::join!(cal.post(1), cal.post(1));
    let posted = [first, second].concat();
    let tx = until_mempool_tx(&node).await;
    cal.until_recorded(&tx).await;
    let (end, _) = cursor(&cal.state());
    let stamped = posted[..end as usize].to_vec();
    let mined_in = node.mine(1).await.remove(0);
    assert_eq!(
        &block_txids(&node, &mined_in).await[1..],
        std::slice::from_ref(&tx)
    );
    node.mine_empty().await;
    let heights = cal.until_complete(&node, &stamped).await;
    let mined_height = heights[0];
    // Buried to depth 4, a round in flight with the rest.
    node.mine_empty().await;
    node.mine_empty().await;
    cal.until_synced(&node).await;
    let later = cal.post(1).await;

    // Blocks mined_height.. (4 of them) replaced by a longer branch.
    let _: Value = node.call("invalidateblock", json!([mined_in])).await;
    for _ in 0..=MIN_CONFIRMATIONS + 2 {
        node.mine_empty().await;
    }
    let depth = node.height().await + 1 - mined_height;
    assert_eq!(
        depth,
        MIN_CONFIRMATIONS as u64 + 3,
        "the new branch is one longer"
    );
    until("the calendar to see the reorg", || async {
        (cal.timestamp(&stamped[0]).await.0 != 200).then_some(())
    })
    .await;

    // From now on, every 200 verifies against the best chain.
    let all: Vec<Vec<u8>> = posted.iter().chain(&later).cloned().collect();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let poller = {
        let (addr, client, all) = (cal.addr, node.node(), all.clone());
        tokio::spawn(async move {
            let (mut wrong, mut pending, mut served) = (Vec::new(), 0usize, 0usize);
            while !*stop_rx.borrow() {
                for c in &all {
                    let path = format!("/timestamp/{}", hex::encode(c));
                    let reply = get(addr, &path, "").await;
                    match reply.status {
                        200 if verifies_on_best_chain(&client, c, &reply.body).await => served += 1,
                        200 => wrong.push(hex::encode(c)),
                        404 => pending += 1,
                        other => panic!("GET {path}: {other}"),
                    }
                }
                tokio::select! {
                    _ = stop_rx.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
            (wrong, pending, served)
        })
    };
    for c in &stamped {
        assert_eq!(cal.reason(c).await, PENDING, "pending again, not lost");
    }
    let info = until("the reorg on the info page", || async {
        let info = cal.info().await;
        (info["reorged_completed_total"] == json!(1)).then_some(info)
    })
    .await;
    let warnings = info["warnings"].to_string();
    assert!(
        warnings.contains("reorganisation deeper than 2"),
        "{warnings}"
    );
    assert!(warnings.contains(&tx), "{warnings}");
    assert_eq!(cal.log_count("proofs are withdrawn"), 1);

    mine_until_complete(&cal, &node, &all).await;
    stop_tx.send(true).unwrap();
    let (wrong, pending, served) = poller.await.unwrap();
    assert!(
        wrong.is_empty(),
        "wrong proofs served after the reorg: {wrong:?}"
    );
    assert!(
        pending > 0 && served > 0,
        "{pending} pending, {served} served"
    );
    // Complete on the new branch, never on the replaced block.
    let client = node.node();
    for height in cal.until_complete(&node, &all).await {
        let hash = client.block_hash(height).await.unwrap().unwrap();
        assert_ne!(hash.to_string(), mined_in);
    }
    cal.kill().await;
}
