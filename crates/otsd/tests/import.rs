//! Issue 13, `otsd import-reference`: on copies of the calendar directory
//! the Python `otsd` wrote (`vectors/reference-calendar`), the import
//! copies every completed proof into our store so that `db/` is no longer
//! needed (byte for byte the reference's answers with `db/` moved away),
//! never writes `db/`, checks each Bitcoin attestation against
//! `headers.txt`, reports bad data naming the key and goes on, and resumes
//! after `kill -9` at any point to the same store.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use otsd::journal::JournalReader;
use otsd::store::Store;
use sha2::{Digest, Sha256};

const PENDING: &str = "Pending confirmation in Bitcoin blockchain";
/// The fixture's completed commitments.
const COMPLETED: usize = 302;
/// Its journal records.
const JOURNAL: usize = 315;

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/reference-calendar")
}

fn headers_file() -> PathBuf {
    vectors().join("headers.txt")
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

/// Every file of `db/`: name → sha256 of its bytes.
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

fn table(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir.join("db"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "ldb"))
        .expect("a table")
}

/// Runs `otsd import-reference DIR` with `extra` flags, to its end.
fn import(dir: &Path, extra: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_otsd"))
        .arg("import-reference")
        .arg(dir)
        .arg("--no-progress")
        .args(extra)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The number before `what` in the summary line.
fn count(summary: &str, what: &str) -> u64 {
    let at = summary
        .find(what)
        .unwrap_or_else(|| panic!("{what:?} in {summary}"));
    summary[..at]
        .split_whitespace()
        .last()
        .unwrap()
        .trim_start_matches(',')
        .parse()
        .unwrap_or_else(|_| panic!("a count before {what:?} in {summary}"))
}

/// What our store alone serves for every journal commitment of the
/// fixture (completed, then pending).
fn dump(dir: &Path) -> Vec<Option<Vec<u8>>> {
    let store = Store::open(dir, JournalReader::open(dir).unwrap()).unwrap();
    completed()
        .into_iter()
        .map(|(c, _)| c)
        .chain(pending())
        .map(|c| store.get_serialized(&c).unwrap())
        .collect()
}

/// The dump of a complete, sound import: the reference's bytes for the
/// completed commitments, nothing for the pending ones.
fn expected_dump() -> Vec<Option<Vec<u8>>> {
    completed()
        .into_iter()
        .map(|(_, t)| Some(t))
        .chain(pending().into_iter().map(|_| None))
        .collect()
}

async fn start(dir: &Path) -> (tokio::process::Child, std::net::SocketAddr, common::Log) {
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

async fn timestamp(addr: std::net::SocketAddr, c: &[u8]) -> common::Resp {
    common::get(addr, &format!("/timestamp/{}", hex::encode(c)), "").await
}

#[tokio::test]
async fn after_the_import_db_is_not_needed_and_every_proof_is_the_references() {
    let (_tmp, dir) = copy_calendar();
    let before = hashes(&dir);
    let out = import(&dir, &["--headers-file", headers_file().to_str().unwrap()]);
    let summary = stdout(&out);
    assert!(out.status.success(), "{summary}{}", stderr(&out));
    assert_eq!(count(&summary, "commitments imported"), COMPLETED as u64);
    assert_eq!(count(&summary, "not in db/"), pending().len() as u64);
    assert_eq!(count(&summary, "bad entries"), 0);
    assert_eq!(hashes(&dir), before, "db/ is never written");
    assert_eq!(dump(&dir), expected_dump());

    // db/ moved away: our store alone serves the reference's bytes.
    std::fs::rename(dir.join("db"), dir.join("db.moved")).unwrap();
    let (mut child, addr, _log) = start(&dir).await;
    for (c, want) in completed() {
        let r = timestamp(addr, &c).await;
        assert_eq!(r.status, 200, "{}: {}", hex::encode(&c), r.text());
        assert_eq!(r.body, want, "{}: the reference's bytes", hex::encode(&c));
    }
    for c in pending() {
        let r = timestamp(addr, &c).await;
        assert_eq!(r.status, 404);
        assert!(r.text().contains(PENDING), "{}", r.text());
    }
    child.kill().await.unwrap();
}

#[test]
fn a_second_run_resumes_at_the_cursor_and_from_start_skips_what_is_in() {
    let (_tmp, dir) = copy_calendar();
    assert!(import(&dir, &[]).status.success());
    let again = stdout(&import(&dir, &[]));
    assert_eq!(count(&again, "commitments imported"), 0, "{again}");
    assert!(again.contains(&format!("journal positions {JOURNAL}..{JOURNAL}")));
    let all = stdout(&import(&dir, &["--from-start"]));
    assert_eq!(count(&all, "commitments imported"), 0, "{all}");
    assert_eq!(count(&all, "already in the store"), COMPLETED as u64);
    assert_eq!(dump(&dir), expected_dump());
}

/// Every Bitcoin attestation checks against `headers.txt`, and one that
/// does not is a bad entry naming it (the other batches are imported).
#[test]
fn every_attestation_checks_against_the_headers_and_a_wrong_header_is_reported() {
    let (tmp, dir) = copy_calendar();
    let text = std::fs::read_to_string(headers_file()).unwrap();
    // The height of the first completed proof's attestation.
    let (c, t) = &completed()[0];
    let ts = ots_proof::Timestamp::deserialize(t, c).unwrap();
    let (msg, height) = ts
        .all_attestations()
        .into_iter()
        .find_map(|(m, a)| match a {
            ots_proof::Attestation::Bitcoin { height } => Some((m.to_vec(), *height)),
            _ => None,
        })
        .unwrap();
    let mut wrong = String::new();
    for line in text.lines() {
        let (h, hdr) = line.split_once(' ').unwrap();
        let mut hdr = hex::decode(hdr).unwrap();
        if h.parse::<u64>().unwrap() == height {
            assert_eq!(&hdr[36..68], msg.as_slice(), "the fixture's own header");
            hdr[40] ^= 1;
        }
        wrong.push_str(&format!("{h} {}\n", hex::encode(hdr)));
    }
    let wrong_file = tmp.path().join("wrong-headers.txt");
    std::fs::write(&wrong_file, wrong).unwrap();
    let out = import(&dir, &["--headers-file", wrong_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "bad entries: exit status 3");
    let (summary, err) = (stdout(&out), stderr(&out));
    let bad = count(&summary, "bad entries");
    let imported = count(&summary, "commitments imported");
    assert!(bad > 0 && imported > 0, "{summary}");
    assert_eq!(bad + imported, COMPLETED as u64, "{summary}");
    assert!(err.contains(&hex::encode(&msg)), "names the key: {err}");
    assert!(err.contains(&format!("height {height}")), "{err}");
    assert!(err.contains(&hex::encode(c)), "names the commitment: {err}");
}

/// Writes `value` under `key` in the copy's `db/` (rusty-leveldb, as an
/// operator's damaged store would hold it).
fn put(dir: &Path, key: &[u8], value: &[u8]) {
    let mut db =
        rusty_leveldb::DB::open(dir.join("db"), rusty_leveldb::Options::default()).unwrap();
    db.put(key, value).unwrap();
    db.flush().unwrap();
    db.close().unwrap();
}

/// After an import with bad entries, the server (with `db/` still there)
/// serves every proof it serves byte for byte: the imported ones from our
/// store, the others from `db/`; returns how many it served.
async fn served_exactly(dir: &Path) -> usize {
    let (mut child, addr, _log) = start(dir).await;
    let mut ok = 0;
    for (c, want) in completed() {
        let r = timestamp(addr, &c).await;
        if r.status == 200 {
            assert_eq!(r.body, want, "never a wrong proof");
            ok += 1;
        }
    }
    child.kill().await.unwrap();
    ok
}

/// A record that does not parse at the leaf of completed commitment
/// `index`, then the import with `extra` flags: it exits 3, names the key
/// and the commitment, imports the other batches, and leaves the damaged
/// batch to `db/`, served in place for all but the damaged commitment.
async fn a_damaged_leaf_is_a_bad_entry(index: usize, extra: &[&str]) {
    let (_tmp, dir) = copy_calendar();
    let (c, _) = &completed()[index];
    let key = ots_proof::op::sha256(c);
    put(&dir, &key, &[0, 1, 0x77]); // an unknown operation
    let out = import(&dir, extra);
    assert_eq!(out.status.code(), Some(3));
    let (summary, err) = (stdout(&out), stderr(&out));
    assert!(
        err.contains(&hex::encode(key)) && err.contains(&hex::encode(c)),
        "names the key and the commitment: {err}"
    );
    let bad = count(&summary, "bad entries");
    let imported = count(&summary, "commitments imported");
    assert!(imported > 0, "the other batches are imported: {summary}");
    assert_eq!(bad + imported, COMPLETED as u64, "{summary}");
    // The batch of the damaged record is left to db/, served in place.
    let store = dump(&dir);
    let in_store = store.iter().filter(|p| p.is_some()).count() as u64;
    assert_eq!(in_store, imported);
    for (got, want) in store.iter().zip(expected_dump()) {
        if got.is_some() {
            assert_eq!(got, &want, "never a wrong proof");
        }
    }
    assert_eq!(served_exactly(&dir).await, COMPLETED - 1);
}

/// The first commitment of a batch is where the import finds the batch:
/// its own records are read in either mode.
#[tokio::test]
async fn a_record_the_import_reads_that_does_not_parse_is_a_bad_entry_naming_the_key() {
    a_damaged_leaf_is_a_bad_entry(0, &[]).await;
}

#[tokio::test]
async fn with_check_every_node_a_damaged_record_anywhere_in_a_tree_is_a_bad_entry() {
    a_damaged_leaf_is_a_bad_entry(100, &["--check-every-node"]).await;
}

/// A damaged node inside a batch that the default import does not read
/// (the batch is found from its first commitment's path): the batch is
/// imported all the same, and every proof, the damaged commitment's too,
/// is the reference's, served from our store although `db/` is damaged.
#[tokio::test]
async fn a_damaged_record_the_import_does_not_need_leaves_every_proof_right() {
    let (_tmp, dir) = copy_calendar();
    let (c, _) = &completed()[100];
    put(&dir, &ots_proof::op::sha256(c), &[0, 1, 0x77]);
    let out = import(&dir, &[]);
    let summary = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{summary}{}", stderr(&out));
    assert_eq!(count(&summary, "commitments imported"), COMPLETED as u64);
    assert_eq!(dump(&dir), expected_dump());
    assert_eq!(served_exactly(&dir).await, COMPLETED);
}

#[tokio::test]
async fn a_path_that_reaches_no_attestation_is_a_bad_entry_and_the_rest_imports() {
    let (_tmp, dir) = copy_calendar();
    let (c, t) = &completed()[0];
    let ts = ots_proof::Timestamp::deserialize(t, c).unwrap();
    let msg = ts.all_attestations()[0].0.to_vec();
    // The attestation's node now holds a pending attestation only.
    let mut rec = vec![1];
    rec.extend_from_slice(&ots_proof::attestation::TAG_PENDING);
    rec.extend_from_slice(&[4, 3, b'a', b'.', b'b', 0]);
    put(&dir, &msg, &rec);
    let out = import(&dir, &[]);
    assert_eq!(out.status.code(), Some(3));
    let (summary, err) = (stdout(&out), stderr(&out));
    assert!(err.contains("reaches no Bitcoin attestation"), "{err}");
    assert!(err.contains(&hex::encode(c)), "{err}");
    let bad = count(&summary, "bad entries");
    let imported = count(&summary, "commitments imported");
    assert!(bad > 0 && imported > 0, "{summary}");
    assert_eq!(bad + imported, COMPLETED as u64);
    let served = served_exactly(&dir).await;
    assert_eq!(
        served as u64, imported,
        "the incomplete ones are not served"
    );
}

#[test]
fn a_truncated_table_is_reported_for_every_key_it_holds() {
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
    let out = import(&dir, &[]);
    assert_eq!(out.status.code(), Some(3));
    let (summary, err) = (stdout(&out), stderr(&out));
    assert_eq!(count(&summary, "commitments imported"), 0);
    assert_eq!(count(&summary, "bad entries"), JOURNAL as u64, "{summary}");
    for (c, _) in completed() {
        assert!(
            err.contains(&format!("reading key {}", hex::encode(&c))),
            "{err}"
        );
    }
    assert_eq!(hashes(&dir), before);
    assert!(dump(&dir).iter().all(Option::is_none));
}

#[tokio::test]
async fn a_bad_checksum_fails_its_block_and_everything_imported_is_right() {
    let (_tmp, dir) = copy_calendar();
    let t = table(&dir);
    let mut bytes = std::fs::read(&t).unwrap();
    bytes[1000] ^= 0x40; // a data block early in the table
    std::fs::write(&t, &bytes).unwrap();
    let out = import(&dir, &[]);
    let (summary, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(3), "{summary}{err}");
    let imported = count(&summary, "commitments imported");
    assert!(imported > 0, "{summary}");
    assert!(count(&summary, "bad entries") > 0, "{summary}");
    assert!(err.contains("key "), "{err}");
    for (got, want) in dump(&dir).iter().zip(expected_dump()) {
        if got.is_some() {
            assert_eq!(got, &want, "never a wrong proof");
        }
    }
}

/// `kill -9` at random points (one batch per transaction, so the kills
/// land between and inside writes): every run resumes, and the store ends
/// as an uninterrupted import's.
#[test]
fn killed_at_random_points_it_resumes_to_the_same_store() {
    use rand::Rng;
    let (_tmp, dir) = copy_calendar();
    let before = hashes(&dir);
    let mut rng = rand::thread_rng();
    let mut killed = 0;
    for _ in 0..8 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_otsd"))
            .args(["import-reference".as_ref(), dir.as_os_str()])
            .args(["--no-progress", "--commitments-per-transaction", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(rng.gen_range(0..400)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
    }
    let out = import(&dir, &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let summary = stdout(&out);
    assert_eq!(count(&summary, "bad entries"), 0);
    assert_eq!(dump(&dir), expected_dump(), "{killed} runs killed");
    assert_eq!(hashes(&dir), before);
}

/// A JSON-RPC node serving the fixture's `headers.txt` (what the reference
/// client asks when it verifies: `getblockcount`, `getblockhash`,
/// `getblockheader HASH false`), on 127.0.0.1; stops when dropped.
struct HeadersNode {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HeadersNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn headers_node() -> HeadersNode {
    use bitcoin::consensus::deserialize;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut by_height = BTreeMap::new();
    let mut by_hash = BTreeMap::new();
    for line in std::fs::read_to_string(headers_file()).unwrap().lines() {
        let (h, hdr) = line.split_once(' ').unwrap();
        let header: bitcoin::block::Header = deserialize(&hex::decode(hdr).unwrap()).unwrap();
        let hash = header.block_hash().to_string();
        by_height.insert(h.parse::<u64>().unwrap(), hash.clone());
        by_hash.insert(hash, hdr.to_owned());
    }
    let chain = Arc::new((by_height, by_hash));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/",
        listener.local_addr().unwrap().port()
    );
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let chain = chain.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request: head, then Content-Length bytes.
                    let (head_end, len) = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .map_or(0, |v| v.trim().parse().unwrap());
                            break (i + 4, len);
                        }
                        let mut chunk = [0u8; 4096];
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 4096];
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let req: serde_json::Value =
                        serde_json::from_slice(&buf[head_end..head_end + len]).unwrap();
                    buf.drain(..head_end + len);
                    let (by_height, by_hash) = &*chain;
                    let p = &req["params"];
                    let not_found = serde_json::json!({"code": -5, "message": "not found"});
                    let (result, error) = match req["method"].as_str().unwrap() {
                        "getblockcount" => (serde_json::json!(by_height.len() - 1), None),
                        "getblockhash" => match by_height.get(&p[0].as_u64().unwrap()) {
                            Some(h) => (serde_json::json!(h), None),
                            None => (
                                serde_json::Value::Null,
                                Some(serde_json::json!({"code": -8, "message": "out of range"})),
                            ),
                        },
                        "getblockheader" => match by_hash.get(p[0].as_str().unwrap()) {
                            Some(hdr) => (serde_json::json!(hdr), None),
                            None => (serde_json::Value::Null, Some(not_found)),
                        },
                        m => panic!("unexpected RPC {m}"),
                    };
                    let body =
                        serde_json::json!({"result": result, "error": error, "id": req["id"]})
                            .to_string();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if conn.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    HeadersNode { url, task }
}

/// `DIGEST REPLY` lines of `replies.txt` (the reference's `POST /digest`
/// answers), with the commitment each one's pending attestation names.
fn replies() -> Vec<(Vec<u8>, ots_proof::Timestamp, Vec<u8>)> {
    std::fs::read_to_string(vectors().join("replies.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let (d, r) = l.split_once(' ').unwrap();
            let digest = hex::decode(d).unwrap();
            let ts = ots_proof::Timestamp::deserialize(&hex::decode(r.trim()).unwrap(), &digest)
                .unwrap();
            let commitment = ts.all_attestations()[0].0.to_vec();
            (digest, ts, commitment)
        })
        .collect()
}

/// The timestamp with every pending attestation naming `uri` instead (the
/// fixture's calendar ran on a port of its own).
fn repoint(ts: &mut ots_proof::Timestamp, uri: &str) {
    let pending: Vec<_> = ts
        .attestations()
        .iter()
        .filter(|a| matches!(a, ots_proof::Attestation::Pending { .. }))
        .cloned()
        .collect();
    for a in pending {
        ts.remove_attestation(&a);
        ts.add_attestation(ots_proof::Attestation::pending(uri).unwrap());
    }
    let ops: Vec<_> = ts.ops().map(|(op, _)| op.clone()).collect();
    for op in ops {
        repoint(ts.child_mut(&op).unwrap(), uri);
    }
}

/// The reference client upgrades `.ots` files made of the reference's own
/// replies against our server, then verifies them with `headers.txt` as
/// its node: served in place, and from our store alone after the import.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_client_upgrades_and_verifies_the_references_replies_in_place_and_after_import(
) {
    let Some(client) = std::env::var_os("OTS_REFERENCE_CLIENT").map(PathBuf::from) else {
        eprintln!(
            "skipped: set OTS_REFERENCE_CLIENT to the reference client's `ots` to run this test"
        );
        return;
    };
    let node = headers_node().await;
    let completed: std::collections::HashSet<Vec<u8>> =
        completed().into_iter().map(|(c, _)| c).collect();
    let replies = replies();
    // A few replies of completed commitments, from both sides of the
    // restart (the first and the last).
    let mut picks: Vec<_> = replies
        .iter()
        .filter(|(_, _, c)| completed.contains(c))
        .collect();
    assert!(picks.len() > 4);
    let picks = [
        picks.remove(0),
        picks.remove(picks.len() / 2),
        picks.pop().unwrap(),
    ];
    let (tmp, dir) = copy_calendar();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    for phase in ["in place", "after import"] {
        if phase == "after import" {
            let out = import(&dir, &[]);
            assert!(out.status.success(), "{}", stderr(&out));
            std::fs::rename(dir.join("db"), dir.join("db.moved")).unwrap();
        }
        let (mut child, addr, _log) = start(&dir).await;
        let url = format!("http://127.0.0.1:{}", addr.port());
        for (i, (digest, ts, _)) in picks.iter().enumerate() {
            let mut ts = ts.clone();
            repoint(&mut ts, &url);
            let file =
                ots_proof::DetachedTimestampFile::new(ots_proof::HashOp::Sha256, ts).unwrap();
            let name = format!("{}{i}.ots", phase.replace(' ', "-"));
            std::fs::write(work.join(&name), file.serialize().unwrap()).unwrap();
            let run = |args: Vec<&str>| {
                let out = std::process::Command::new(&client)
                    .arg("--no-cache")
                    .args(&args)
                    .current_dir(&work)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{phase}: ots {args:?}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            };
            let up = run(vec!["-l", &url, "upgrade", &name]);
            assert!(up.contains("Success! Timestamp complete"), "{phase}: {up}");
            let hex_digest = hex::encode(digest);
            let verified = run(vec![
                "--btc-regtest",
                "--bitcoin-node",
                &node.url,
                "verify",
                "-d",
                &hex_digest,
                &name,
            ]);
            assert!(
                verified.contains("Success! Bitcoin block"),
                "{phase}: {verified}"
            );
        }
        child.kill().await.unwrap();
    }
}

/// The wallet in use: the reference left an unconfirmed timestamp
/// transaction in the wallet (its 13 unconfirmed commitments' tree, RBF,
/// spending every confirmed output, as a calendar's wallet of one output
/// is spent by its round). Our stamper neither double-spends it (while it
/// is unconfirmed the wallet has nothing confirmed to fund a round with)
/// nor loses a commitment: once it confirms, our round is funded from its
/// change, and the 13 complete with our proofs. Then the way back is open
/// ([`the_way_back_is_open`]).
#[tokio::test]
async fn a_reference_transaction_left_in_the_wallet_is_not_double_spent_and_nothing_is_lost() {
    use bitcoin::{
        absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut,
        Witness,
    };
    use common::node::{Backend, TestNode, WALLET};
    use std::str::FromStr;
    let node = TestNode::start(Backend::Dev).await;
    let wallet = node.wallet();
    let utxos = wallet.list_unspent(1).await.unwrap();
    assert!(!utxos.is_empty(), "a funded wallet");
    let total: Amount = utxos.iter().map(|u| u.amount).sum();
    let change = bitcoin::Address::from_str(&wallet.raw_change_address().await.unwrap())
        .unwrap()
        .assume_checked()
        .script_pubkey();
    let leaves: Vec<[u8; 32]> = pending().iter().map(|c| ots_proof::op::sha256(c)).collect();
    let tip = ots_proof::MerkleTree::new(leaves).unwrap().root();
    let fee = Amount::from_sat(200 * (utxos.len() as u64 + 2));
    let tx = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: utxos
            .iter()
            .map(|u| TxIn {
                previous_output: OutPoint::new(u.txid, u.vout),
                script_sig: ScriptBuf::new(),
                sequence: Sequence(0xffff_fffd),
                witness: Witness::new(),
            })
            .collect(),
        output: vec![
            TxOut {
                value: total - fee,
                script_pubkey: change,
            },
            TxOut {
                value: Amount::ZERO,
                script_pubkey: ScriptBuf::new_op_return(tip),
            },
        ],
    };
    let signed = wallet.sign_raw_transaction_with_wallet(&tx).await.unwrap();
    let reference_txid = node.node().send_raw_transaction(&signed).await.unwrap();
    let spent: std::collections::HashSet<(String, u64)> = node
        .inputs(&reference_txid.to_string())
        .await
        .into_iter()
        .collect();

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
    // While the reference's transaction is unconfirmed: no transaction of
    // ours spends what it spends (the mempool would refuse or replace it).
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        node.mempool().await,
        vec![reference_txid.to_string()],
        "nothing else in the mempool"
    );
    let pending = pending();
    let mut complete = false;
    for _ in 0..60 {
        node.mine(1).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        for txid in node.mempool().await {
            if txid != reference_txid.to_string() {
                for input in node.inputs(&txid).await {
                    assert!(!spent.contains(&input), "{txid} double-spends {input:?}");
                }
            }
        }
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
    }
    if !complete {
        for l in log.lock().unwrap().iter() {
            eprintln!("{l}");
        }
        panic!("the 13 pending commitments did not complete");
    }
    let confirmed: serde_json::Value = node
        .call(
            "getrawtransaction",
            serde_json::json!([reference_txid.to_string(), true]),
        )
        .await;
    assert!(
        confirmed["confirmations"].as_u64().unwrap_or(0) > 0,
        "the reference's transaction confirmed too"
    );
    for c in &pending {
        let body = timestamp(addr, c).await.body;
        common::verify_on_node(&node.node(), c, &body).await;
    }
    // New digests after the take-over, then the way back.
    for _ in 0..3 {
        let r = common::post_digest(addr, &common::random_digest()).await;
        assert_eq!(r.status, 200);
    }
    child.kill().await.unwrap();
    the_way_back_is_open(&dir, &before);
}

/// What the reference needs to take the directory back after our otsd ran
/// on it: `db/` byte for byte as it was, and the journal in the reference's
/// format (PROTOCOL §3: 44-byte records, time ‖ tip ‖ MAC under the
/// calendar's `hmac-key`), the fixture's records first and unchanged, ours
/// after them. The reference would find every record we added or stamped
/// missing from `db/` and stamp it again: nothing is lost.
fn the_way_back_is_open(dir: &Path, db_before: &BTreeMap<String, [u8; 32]>) {
    assert_eq!(&hashes(dir), db_before, "db/ untouched");
    let original = std::fs::read(vectors().join("calendar/journal")).unwrap();
    let journal = std::fs::read(dir.join("journal")).unwrap();
    assert_eq!(journal.len() % 44, 0, "whole 44-byte records");
    assert!(journal.len() > original.len(), "our records were appended");
    assert_eq!(
        &journal[..original.len()],
        original.as_slice(),
        "the reference's records unchanged"
    );
    let key = otsd::calendar::HmacKey::new(std::fs::read(dir.join("hmac-key")).unwrap());
    let mut macs = otsd::calendar::KeyDeriver::new(key);
    let first_time = u32::from_be_bytes(original[..4].try_into().unwrap());
    for (i, rec) in journal.chunks_exact(44).enumerate().skip(JOURNAL) {
        let record: [u8; 44] = rec.try_into().unwrap();
        assert!(
            macs.verify(&record),
            "record {i}: its MAC holds under hmac-key"
        );
        let t = u32::from_be_bytes(rec[..4].try_into().unwrap());
        assert!(t >= first_time, "record {i}: a time after the fixture's");
    }
    // Every record after the fixture's has no record in db/: the reference
    // would stamp it (again, for those we stamped).
    let mut db = otsd::refstore::open_read_only(&dir.join("db"), 1 << 20).unwrap();
    for rec in journal.chunks_exact(44).skip(JOURNAL) {
        assert!(otsd::refstore::get_record(&mut db, rec).unwrap().is_none());
    }
    for c in pending() {
        assert!(otsd::refstore::get_record(&mut db, &c).unwrap().is_none());
    }
}
