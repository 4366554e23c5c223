//! Issue 13, serving a reference calendar in place: the `otsd` binary on a
//! copy of the calendar directory the Python `otsd` wrote
//! (`vectors/reference-calendar`) serves every completed proof of its
//! LevelDB `db/` byte for byte, the unconfirmed commitments as pending,
//! never writes to `db/`, and answers a damaged table with errors that
//! name the key, never a wrong proof.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::{get, Log};
use sha2::{Digest, Sha256};

const PENDING: &str = "Pending confirmation in Bitcoin blockchain";
const FOREVER: &str = "public, max-age=31536000";

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/reference-calendar")
}

/// `COMMITMENT TIMESTAMP` lines of `completed.txt`.
fn completed() -> Vec<(Vec<u8>, Vec<u8>)> {
    std::fs::read_to_string(vectors().join("completed.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let (c, t) = l.split_once(' ').unwrap();
            (hex::decode(c).unwrap(), hex::decode(t.trim()).unwrap())
        })
        .collect()
}

fn pending() -> Vec<Vec<u8>> {
    std::fs::read_to_string(vectors().join("pending.txt"))
        .unwrap()
        .lines()
        .map(|l| hex::decode(l.trim()).unwrap())
        .collect()
}

/// A writable copy of the reference calendar directory in a temp dir.
fn copy_calendar() -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("calendar");
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir(to).unwrap();
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), &target).unwrap();
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
    }
    copy(&vectors().join("calendar"), &dst);
    (tmp, dst)
}

/// Every file of `db/`: name → sha256 of its bytes (and the names say
/// whether one was added or removed).
fn hashes(dir: &Path) -> BTreeMap<String, [u8; 32]> {
    std::fs::read_dir(dir.join("db"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                Sha256::digest(&bytes).into(),
            )
        })
        .collect()
}

async fn start(dir: &Path) -> (tokio::process::Child, SocketAddr, Log) {
    let args: Vec<std::ffi::OsString> = vec![
        "-c".into(),
        dir.into(),
        "--no-bitcoin".into(),
        "--rpc-address".into(),
        "127.0.0.1".into(),
        "--rpc-port".into(),
        "0".into(),
    ];
    common::spawn_otsd_logged(args).await
}

async fn timestamp(addr: SocketAddr, c: &[u8]) -> common::Resp {
    get(addr, &format!("/timestamp/{}", hex::encode(c)), "").await
}

fn table(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir.join("db"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "ldb"))
        .expect("a table")
}

#[tokio::test]
async fn serves_the_reference_store_byte_for_byte_and_never_writes_to_it() {
    let (_tmp, dir) = copy_calendar();
    let before = hashes(&dir);
    let (mut child, addr, _log) = start(&dir).await;
    let completed = completed();
    assert_eq!(completed.len(), 302);
    for (c, want) in &completed {
        let r = timestamp(addr, c).await;
        assert_eq!(r.status, 200, "{}: {}", hex::encode(c), r.text());
        assert_eq!(&r.body, want, "{}: the reference's bytes", hex::encode(c));
        assert_eq!(r.header("cache-control"), Some(FOREVER));
    }
    let pending = pending();
    assert_eq!(pending.len(), 13);
    for c in &pending {
        let r = timestamp(addr, c).await;
        assert_eq!(r.status, 404, "{}", hex::encode(c));
        assert_eq!(r.text().trim(), PENDING);
    }
    let info = get(addr, "/", "Accept: application/json\r\n").await;
    let info: serde_json::Value = serde_json::from_slice(&info.body).unwrap();
    assert_eq!(
        info["pending_commitments"], 13,
        "only the 13 without a proof in db/ are pending"
    );
    // A new digest is still accepted next to the reference's journal.
    let digest = common::random_digest();
    let reply = common::post_digest(addr, &digest).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    child.kill().await.unwrap();
    assert_eq!(hashes(&dir), before, "db/ is byte for byte as it was");
}

/// The served answers on a damaged store: a proof is either exactly the
/// reference's or not served (a 500 whose log line names the commitment,
/// or a 404); returns (served, 500s).
async fn served_on_damaged(log: &Log, addr: SocketAddr) -> (usize, usize) {
    let (mut ok, mut failed) = (0, Vec::new());
    for (c, want) in completed() {
        let r = timestamp(addr, &c).await;
        match r.status {
            200 => {
                assert_eq!(r.body, want, "never a wrong proof");
                ok += 1;
            }
            500 => failed.push(hex::encode(&c)),
            404 => {}
            s => panic!("unexpected status {s} on a damaged store"),
        }
    }
    // The log is read from the child's pipe as it comes: wait for it.
    for _ in 0..100 {
        let named = {
            let log = log.lock().unwrap();
            failed
                .iter()
                .all(|key| log.iter().any(|l| l.contains(key.as_str())))
        };
        if named {
            return (ok, failed.len());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the log names every commitment answered 500");
}

#[tokio::test]
async fn a_truncated_table_is_an_error_naming_the_key_never_a_proof() {
    let (_tmp, dir) = copy_calendar();
    let t = table(&dir);
    let len = std::fs::metadata(&t).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&t)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let before = hashes(&dir);
    let (mut child, addr, log) = start(&dir).await;
    let (ok, errors) = served_on_damaged(&log, addr).await;
    assert_eq!(ok, 0, "the table's footer is gone: nothing can be read");
    assert_eq!(errors, 302);
    // The rest of the calendar works.
    let reply = common::post_digest(addr, &common::random_digest()).await;
    assert_eq!(reply.status, 200);
    child.kill().await.unwrap();
    assert_eq!(hashes(&dir), before);
}

#[tokio::test]
async fn a_flipped_byte_in_the_table_fails_its_block_only() {
    let (_tmp, dir) = copy_calendar();
    let t = table(&dir);
    let mut bytes = std::fs::read(&t).unwrap();
    // Early in the table: a data block, not the index or the footer.
    bytes[1000] ^= 0x40;
    std::fs::write(&t, &bytes).unwrap();
    let before = hashes(&dir);
    let (mut child, addr, log) = start(&dir).await;
    let (ok, errors) = served_on_damaged(&log, addr).await;
    assert!(errors > 0, "the damaged block's proofs are refused");
    assert!(ok > 0, "the proofs in other blocks are still served");
    child.kill().await.unwrap();
    assert_eq!(hashes(&dir), before);
}

/// With a Bitcoin backend (devchain), the 13 commitments without a proof
/// in `db/` are stamped and complete, and the 302 with one are not stamped
/// again: they keep being served the reference's bytes (a new proof in our
/// store would be served first, and would differ).
#[tokio::test]
async fn with_a_node_the_pending_ones_are_stamped_and_the_completed_ones_not_again() {
    use common::node::{Backend, TestNode, WALLET};
    let node = TestNode::start(Backend::Dev).await;
    let (_tmp, dir) = copy_calendar();
    let before = hashes(&dir);
    let mut args: Vec<std::ffi::OsString> = vec!["-c".into(), dir.clone().into()];
    args.extend(
        ["--rpc-address", "127.0.0.1", "--rpc-port", "0"]
            .into_iter()
            .chain(["--aggregation-interval", "50", "--btc-regtest"])
            .chain(["--btc-wallet", WALLET, "--btc-min-confirmations", "2"])
            .chain(["--btc-min-tx-interval", "0", "--btc-poll-interval", "0.1"])
            .chain(["--bitcoin-node", &node.url()])
            .map(Into::into),
    );
    let (mut child, addr, log) = common::spawn_otsd_logged(args).await;
    let pending = pending();
    let mut complete = false;
    for _ in 0..60 {
        let mut all = true;
        for c in &pending {
            if timestamp(addr, c).await.status != 200 {
                all = false;
                break;
            }
        }
        if all {
            complete = true;
            break;
        }
        node.mine(1).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    if !complete {
        for l in log.lock().unwrap().iter() {
            eprintln!("{l}");
        }
        panic!("the 13 pending commitments did not complete");
    }
    for c in &pending {
        let body = timestamp(addr, c).await.body;
        common::verify_on_node(&node.node(), c, &body).await;
    }
    for (c, want) in completed() {
        let r = timestamp(addr, &c).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, want, "{}: not stamped again", hex::encode(&c));
    }
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("stamper.json")).unwrap()).unwrap();
    assert_eq!(state["journal_end"], 315, "{state}");
    child.kill().await.unwrap();
    assert_eq!(hashes(&dir), before, "db/ is byte for byte as it was");
}

/// A `db/` that will not open (its `CURRENT` names a missing manifest)
/// refuses start-up, naming it and the way on, and is left as it was.
#[tokio::test]
async fn a_db_that_will_not_open_refuses_start_up_naming_it() {
    let (_tmp, dir) = copy_calendar();
    std::fs::write(dir.join("db/CURRENT"), b"MANIFEST-999999\n").unwrap();
    let before = hashes(&dir);
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_otsd"))
            .args(["-c".as_ref(), dir.as_os_str()])
            .args([
                "--no-bitcoin",
                "--rpc-address",
                "127.0.0.1",
                "--rpc-port",
                "0",
            ])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("otsd exits in time")
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&dir.join("db").display().to_string()) && stderr.contains("move it aside"),
        "{stderr}"
    );
    assert_eq!(hashes(&dir), before);
}

/// The fixture's pending commitments, as info's JSON counts them, when
/// started with `journal.known-good` holding `content`; and the log.
async fn pending_with_known_good(content: &str) -> (u64, Vec<String>) {
    let (_tmp, dir) = copy_calendar();
    std::fs::write(dir.join("journal.known-good"), content).unwrap();
    let (mut child, addr, log) = start(&dir).await;
    let info = get(addr, "/", "Accept: application/json\r\n").await;
    let info: serde_json::Value = serde_json::from_slice(&info.body).unwrap();
    // The reference's proofs are served below and above it alike.
    let (c, want) = &completed()[0];
    assert_eq!(&timestamp(addr, c).await.body, want);
    child.kill().await.unwrap();
    let lines = log.lock().unwrap().clone();
    (info["pending_commitments"].as_u64().unwrap(), lines)
}

/// `journal.known-good` (PROTOCOL §3): records below it are taken as in
/// `db/` without a lookup, as the reference's stamper takes them (so with
/// the whole journal below it, even the 13 unconfirmed ones count as
/// proved: the operator's word); records from it on are looked up; a file
/// that is not a number is ignored with a warning.
#[tokio::test]
async fn journal_known_good_spares_the_lookups_below_it() {
    let first_pending = {
        let dir = vectors().join("calendar");
        let reader = otsd::journal::JournalReader::open(&dir).unwrap();
        let records = reader.read_range(0, 1000).unwrap();
        let pending = pending();
        records
            .iter()
            .position(|r| {
                pending
                    .iter()
                    .any(|p| p == otsd::store::commitment_bytes(r))
            })
            .expect("a pending commitment in the journal")
    };
    assert!(first_pending > 0, "completed records come before it");
    let (n, log) = pending_with_known_good("315\n").await;
    assert_eq!(n, 0, "the whole journal is below known-good");
    assert!(
        log.iter().any(|l| l.contains("journal.known-good")),
        "{log:?}"
    );
    let (n, _) = pending_with_known_good(&first_pending.to_string()).await;
    assert_eq!(n, 13, "the records from known-good on are looked up");
    let (n, log) = pending_with_known_good("three hundred").await;
    assert_eq!(n, 13);
    assert!(
        log.iter().any(|l| l.contains("journal.known-good ignored")),
        "{log:?}"
    );
}

#[path = "refcal_support/mod.rs"]
mod refcal_support;

/// Every record of a LevelDB `db/`, sorted by key, as a backup chunk
/// (varbytes key + varbytes value): what the reference serves when `db/`
/// holds exactly one chunk's proofs.
fn db_as_chunk(db_dir: &Path) -> Vec<u8> {
    use rusty_leveldb::LdbIterator;
    let mut records = Vec::new();
    {
        let opt = rusty_leveldb::Options {
            create_if_missing: false,
            env: std::rc::Rc::new(Box::new(otsd::refstore::env::OverlayEnv::new())),
            ..Default::default()
        };
        let mut db = rusty_leveldb::DB::open(db_dir, opt).unwrap();
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
    chunk
}

/// A taken-over calendar serving `db/` in place serves its backup chunks
/// from it, so mirrors that follow the calendar keep going after the
/// switch: chunk 0 of a `db/` holding exactly the proofs of 1000 journal
/// commitments (4 transactions) is `db/`'s records, byte for byte; the
/// next chunk, not in the journal, is a 404; and `db/` is not written.
#[tokio::test]
async fn backup_chunks_are_served_from_db_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("calendar");
    refcal_support::generate(&dir, 1000, 250);
    let expected = db_as_chunk(&dir.join("db"));
    let before = hashes(&dir);
    let (mut child, addr, _log) = start(&dir).await;
    let r = get(addr, "/experimental/backup/0", "").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("cache-control"), Some(FOREVER));
    assert!(r.body == expected, "chunk 0 is db/'s records");
    // Chunks are built one at a time; clients asking at once wait their
    // turn and each gets the whole chunk.
    let many: Vec<_> = (0..4)
        .map(|_| tokio::spawn(async move { get(addr, "/experimental/backup/0", "").await }))
        .collect();
    for r in many {
        let r = r.await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body == expected, "the same chunk");
    }
    assert_eq!(get(addr, "/experimental/backup/1", "").await.status, 404);
    child.kill().await.unwrap();
    assert_eq!(hashes(&dir), before, "db/ untouched");
}

/// One commitment of the chunk without a proof in `db/` (its leaf record
/// removed, as if it had never been stamped): the chunk is a 404, not a
/// chunk without that proof.
#[tokio::test]
async fn a_backup_chunk_with_a_commitment_missing_from_db_is_not_served() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("calendar");
    refcal_support::generate(&dir, 1000, 250);
    let journal = std::fs::read(dir.join(otsd::calendar::JOURNAL_FILE)).unwrap();
    let victim = otsd::store::commitment_bytes(journal[500 * 44..501 * 44].try_into().unwrap());
    {
        let mut db =
            rusty_leveldb::DB::open(dir.join("db"), rusty_leveldb::Options::default()).unwrap();
        db.delete(victim).unwrap();
        db.flush().unwrap();
    }
    let (mut child, addr, _log) = start(&dir).await;
    assert_eq!(timestamp(addr, victim).await.status, 404);
    let first = otsd::store::commitment_bytes(journal[..44].try_into().unwrap());
    assert_eq!(
        timestamp(addr, first).await.status,
        200,
        "the others are served"
    );
    let r = get(addr, "/experimental/backup/0", "").await;
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
    child.kill().await.unwrap();
}
