//! The proof store on a failing disk (issue 16): a flipped bit in a
//! batch's tail is a 500 naming the commitment and the batch, never a
//! wrong proof served as immutable (case 3); a truncated `store.redb` is a
//! typed error, never a panic, and the server refuses to start naming it
//! (case 4); random damage anywhere in the file never yields a 200 that
//! differs from the pristine store's proof; format-1 stores are upgraded
//! after re-verification.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use ots_proof::{Attestation, MerkleTree, Op, Timestamp};
use otsd::calendar::{Calendar, Commitment, KeyDeriver};
use otsd::journal::{Journal, JournalReader, Verify};
use otsd::store::{leaf, CompletedBatch, Store, StoreError, STORE_FILE, STORE_NEW_FILE};
use rand::{Rng, SeedableRng};

/// The Bitcoin attestation's tag.
const BITCOIN_TAG: [u8; 8] = [0x05, 0x88, 0x96, 0x0d, 0x73, 0xd7, 0x19, 0x01];
/// Sizes of the fixture's batches; the first is the 41.
const BATCH_SIZES: [usize; 5] = [41, 100, 7, 64, 200];
/// Fault-injection trials.
const TRIALS: u64 = 100;

/// A calendar with completed batches; batch `b` (id `b`) is attested at
/// height `b + 1`.
struct Fixture {
    _dir: tempfile::TempDir,
    cal: PathBuf,
    reader: JournalReader,
    batches: Vec<Vec<Commitment>>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let cal = init_calendar(dir.path());
        let key = Calendar::open(&cal).unwrap().key;
        let (mut journal, reader, _) = Journal::open(&cal, &key, Verify::All).unwrap();
        let mut deriver = KeyDeriver::new(key);
        let store = Store::open(&cal, reader.clone()).unwrap();
        let mut t = 1_700_000_000;
        let mut batches = Vec::new();
        for (b, &n) in BATCH_SIZES.iter().enumerate() {
            let recs: Vec<Commitment> = (0..n)
                .map(|_| {
                    t += 1;
                    let tip: [u8; 32] = random_digest().try_into().unwrap();
                    deriver.commitment(t, &tip)
                })
                .collect();
            let first = journal.append(&recs).unwrap();
            let entries: Vec<(u64, Commitment)> = recs
                .iter()
                .enumerate()
                .map(|(i, c)| (first + i as u64, *c))
                .collect();
            let tree = MerkleTree::new(recs.iter().map(leaf).collect()).unwrap();
            store
                .add_batch(CompletedBatch {
                    commitments: entries,
                    tail: bitcoin_shaped_tail(tree.root(), b as u64 + 1),
                })
                .unwrap();
            batches.push(recs);
        }
        drop(store);
        drop(journal);
        Fixture {
            _dir: dir,
            cal,
            reader,
            batches,
        }
    }

    fn store_path(&self) -> PathBuf {
        self.cal.join(STORE_FILE)
    }

    fn all(&self) -> impl Iterator<Item = (u64, &Commitment)> {
        self.batches
            .iter()
            .enumerate()
            .flat_map(|(b, recs)| recs.iter().map(move |c| (b as u64, c)))
    }

    /// Every commitment's served bytes from the pristine store.
    fn pristine_proofs(&self) -> Vec<Vec<u8>> {
        let store = Store::open(&self.cal, self.reader.clone()).unwrap();
        self.all()
            .map(|(_, c)| store.get_serialized(c).unwrap().expect("completed"))
            .collect()
    }
}

/// A tail shaped like the stamper's: the transaction around the root, the
/// block's merkle path, then the Bitcoin attestation.
fn bitcoin_shaped_tail(root: [u8; 32], height: u64) -> Timestamp {
    let mut t = Timestamp::new(root.to_vec()).unwrap();
    t.add_path([
        Op::Prepend(vec![0xaa; 80]),
        Op::Append(vec![0xbb; 40]),
        Op::Sha256,
        Op::Sha256,
        Op::Append(vec![0xcc; 32]),
        Op::Sha256,
        Op::Sha256,
    ])
    .unwrap()
    .add_attestation(Attestation::Bitcoin { height });
    t
}

/// Offsets in `file` of the Bitcoin attestation of height `height` (< 128):
/// tag, then the payload `varbytes(varuint height)`. Copy-on-write may
/// leave stale copies in freed pages besides the live one.
fn attestation_offsets(file: &[u8], height: u8) -> Vec<usize> {
    let mut pattern = BITCOIN_TAG.to_vec();
    pattern.extend([1, height]);
    file.windows(pattern.len())
        .enumerate()
        .filter(|(_, w)| *w == pattern.as_slice())
        .map(|(i, _)| i)
        .collect()
}

/// A fresh directory holding `bytes` as its `store.redb`.
fn store_copy(bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(STORE_FILE), bytes).unwrap();
    dir
}

/// Silences the default panic output of panics inside redb (expected, and
/// caught by the store) while keeping every other panic's.
fn quiet_redb_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.location().is_some_and(|l| l.file().contains("redb")) {
            return;
        }
        default(info);
    }));
}

/// Case 3, in the store: one bit flipped 30 bytes before the tag, in the
/// tail of batch 0 (41 commitments), and a reopened store answers
/// `Corrupt` naming batch 0 for each of them; the other batches are intact.
#[test]
fn a_flipped_bit_in_a_tail_fails_the_batch_not_a_proof() {
    let f = Fixture::new();
    let pristine = f.pristine_proofs();
    let mut bytes = std::fs::read(f.store_path()).unwrap();
    let at = attestation_offsets(&bytes, 1);
    assert!(!at.is_empty(), "batch 0's attestation is in the file");
    for &i in &at {
        bytes[i - 30] ^= 0x10;
    }
    std::fs::write(f.store_path(), &bytes).unwrap();

    let store = Store::open(&f.cal, f.reader.clone()).unwrap();
    for (i, (b, c)) in f.all().enumerate() {
        let served = store.get_serialized(c);
        let decoded = store.get(c);
        if b == 0 {
            for r in [served.map(|_| ()), decoded.map(|_| ())] {
                match r {
                    Err(e @ StoreError::Corrupt { batch: 0, .. }) => {
                        assert!(e.to_string().contains("batch 0"), "{e}");
                        assert_eq!(e.batch(), Some(0));
                    }
                    other => panic!("commitment {i} of the damaged batch: {other:?}"),
                }
            }
        } else {
            assert_eq!(served.unwrap().as_ref(), Some(&pristine[i]), "batch {b}");
            assert_eq!(
                decoded.unwrap().unwrap().serialize().unwrap(),
                pristine[i],
                "batch {b}"
            );
        }
    }
}

/// Starts the `otsd` binary on `cal` without Bitcoin, as `crash.rs` does.
async fn start_otsd(cal: &Path) -> (tokio::process::Child, std::net::SocketAddr, Log) {
    let mut args = vec![std::ffi::OsString::from("-c"), cal.into()];
    args.extend(
        [
            "--rpc-address",
            "127.0.0.1",
            "--rpc-port",
            "0",
            "--no-bitcoin",
        ]
        .into_iter()
        .map(Into::into),
    );
    spawn_otsd_logged(args).await
}

/// `line` without ANSI colour sequences (`ESC [ … m`).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Case 3 over HTTP, after a restart: every commitment of the damaged
/// batch is a 500 without the immutable Cache-Control, each logged with
/// its commitment (hex) and the batch; the other batches are served.
#[tokio::test]
async fn a_damaged_batch_is_a_logged_500_over_http() {
    let f = Fixture::new();
    let pristine = f.pristine_proofs();
    let mut bytes = std::fs::read(f.store_path()).unwrap();
    for i in attestation_offsets(&bytes, 1) {
        bytes[i - 30] ^= 0x01;
    }
    std::fs::write(f.store_path(), &bytes).unwrap();

    let (mut child, addr, log) = start_otsd(&f.cal).await;
    for (i, (b, c)) in f.all().enumerate() {
        let r = get(addr, &format!("/timestamp/{}", hex::encode(c)), "").await;
        if b == 0 {
            assert_eq!(r.status, 500, "commitment {i} of the damaged batch");
            assert_eq!(r.header("cache-control"), None);
        } else {
            assert_eq!(r.status, 200, "batch {b}");
            assert_eq!(r.header("cache-control"), Some("public, max-age=31536000"));
            assert_eq!(r.body, pristine[i]);
        }
    }
    let wanted: Vec<String> = f.batches[0].iter().map(hex::encode).collect();
    let logged = tokio::time::timeout(IO_LIMIT, async {
        loop {
            let lines: Vec<String> = log.lock().unwrap().iter().map(|l| plain(l)).collect();
            let named = |c: &String| {
                lines
                    .iter()
                    .any(|l| l.contains("ERROR") && l.contains(c.as_str()) && l.contains("batch=0"))
            };
            if wanted.iter().all(named) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    child.kill().await.unwrap();
    assert!(
        logged.is_ok(),
        "an error line per commitment naming it and batch 0; log:\n{}",
        log.lock().unwrap().join("\n")
    );
}

/// Case 4: `store.redb` cut to 50 % (and to 0, 1 and other lengths) is
/// `Unreadable` naming the file, without a panic.
#[test]
fn a_truncated_store_is_an_error_not_a_panic() {
    quiet_redb_panics();
    let f = Fixture::new();
    let bytes = std::fs::read(f.store_path()).unwrap();
    let len = bytes.len();
    for cut in [
        0,
        1,
        8,
        100,
        511,
        4096,
        len / 4,
        len / 2,
        len - 4096,
        len - 1,
    ] {
        let dir = store_copy(&bytes[..cut]);
        match Store::open(dir.path(), f.reader.clone()) {
            Err(StoreError::Unreadable { path, why }) => {
                assert_eq!(path, dir.path().join(STORE_FILE), "cut to {cut}");
                assert!(!why.is_empty());
                // The message a caller prints names the file.
                let msg = StoreError::Unreadable { path, why }.to_string();
                assert!(msg.contains("store.redb"), "{msg}");
            }
            other => panic!("cut to {cut} of {len} bytes: {other:?}"),
        }
        // Nothing was created or changed in its place.
        assert_eq!(
            std::fs::metadata(dir.path().join(STORE_FILE))
                .unwrap()
                .len(),
            cut as u64
        );
    }
}

/// Case 4 at start-up: the server exits with an error naming
/// `store.redb` instead of panicking or starting with an empty store.
#[tokio::test]
async fn the_server_refuses_a_truncated_store() {
    let f = Fixture::new();
    let len = std::fs::metadata(f.store_path()).unwrap().len();
    for cut in [len / 2, 0] {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(f.store_path())
            .unwrap();
        file.set_len(cut).unwrap();
        drop(file);
        let out = tokio::time::timeout(
            IO_LIMIT,
            tokio::process::Command::new(env!("CARGO_BIN_EXE_otsd"))
                .args(["-c".as_ref(), f.cal.as_os_str()])
                .args(["--rpc-address", "127.0.0.1", "--rpc-port", "0"])
                .arg("--no-bitcoin")
                .env("RUST_BACKTRACE", "0")
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("otsd exits by itself")
        .unwrap();
        let stderr = plain(&String::from_utf8_lossy(&out.stderr));
        // An error returned from main (1), not a panic's exit (101); redb's
        // caught panic may still have been printed by the panic hook.
        assert_eq!(out.status.code(), Some(1), "cut to {cut}: {stderr}");
        assert!(
            stderr.contains("Error: ")
                && stderr
                    .lines()
                    .any(|l| l.contains("store.redb") && l.contains("unreadable")),
            "cut to {cut}: {stderr}"
        );
        assert_eq!(std::fs::metadata(f.store_path()).unwrap().len(), cut);
    }
}

/// Random damage: 100 seeded trials, each flipping a few bytes of a copy
/// of the store (anywhere in the file, in pages holding data, in redb's
/// header, or in a live tail), then every commitment looked up, with the
/// level cache on and off, serialized (as GET serves it) and, in some
/// trials, decoded. A proof served must be byte for byte the pristine one;
/// errors, "not found" and refusing to open are all fine.
#[test]
fn random_damage_never_serves_a_wrong_proof() {
    quiet_redb_panics();
    let f = Fixture::new();
    let pristine = f.pristine_proofs();
    let bytes = std::fs::read(f.store_path()).unwrap();
    // Pages (4 KiB) that hold anything: most of a new file is zeros.
    let used: Vec<usize> = bytes
        .chunks(4096)
        .enumerate()
        .filter(|(_, p)| p.iter().any(|&b| b != 0))
        .map(|(i, _)| i)
        .collect();
    let tails: Vec<usize> = (1..=BATCH_SIZES.len() as u8)
        .flat_map(|h| attestation_offsets(&bytes, h))
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let (mut refused, mut served, mut failed, mut detected_tails) = (0, 0, 0, 0);
    for trial in 0..TRIALS {
        let mut damaged = bytes.clone();
        let tail_trial = trial % 4 == 0;
        let header_trial = trial % 10 == 5;
        for _ in 0..rng.gen_range(1..=4) {
            let at = match (tail_trial, header_trial, rng.gen_range(0..2)) {
                // Within the 140 bytes before a tail's attestation.
                (true, _, _) => tails[rng.gen_range(0..tails.len())] - rng.gen_range(1..140),
                // In redb's header (its commit slots).
                (_, true, _) => rng.gen_range(0..512),
                (_, _, 0) => rng.gen_range(0..damaged.len()),
                _ => used[rng.gen_range(0..used.len())] * 4096 + rng.gen_range(0..4096usize),
            };
            let at = at.min(damaged.len() - 1);
            damaged[at] ^= rng.gen_range(1..=255u8);
        }
        let dir = store_copy(&damaged);
        let store = match Store::open(dir.path(), f.reader.clone()) {
            Ok(store) => store,
            Err(_) => {
                refused += 1;
                continue;
            }
        };
        store.set_level_cache(trial % 2 == 0);
        let mut trial_failed = false;
        for (i, (b, c)) in f.all().enumerate() {
            match store.get_serialized(c) {
                Ok(Some(proof)) => {
                    assert_eq!(
                        proof, pristine[i],
                        "trial {trial}: a wrong proof served for commitment {i} (batch {b})"
                    );
                    served += 1;
                }
                Ok(None) | Err(_) => {
                    failed += 1;
                    trial_failed = true;
                }
            }
            // The decoded path (backup chunks), in a fifth of the trials.
            if trial % 5 != 0 {
                continue;
            }
            if let Ok(Some(ts)) = store.get(c) {
                assert_eq!(
                    ts.serialize().unwrap(),
                    pristine[i],
                    "trial {trial}: a wrong decoded proof for commitment {i} (batch {b})"
                );
            }
        }
        if tail_trial && trial_failed {
            detected_tails += 1;
        }
    }
    eprintln!(
        "{TRIALS} trials: {refused} refused to open; {served} proofs served (all pristine), \
         {failed} lookups failed; {detected_tails} tail trials detected"
    );
    // The trials reached the data: damage was seen, and tails were hit.
    assert!(refused + failed > 0);
    assert!(detected_tails > 0);
    assert!(served > 0, "most damage leaves most proofs intact");
}

/// Opens `path` with redb itself, as a format-1 build left it: the
/// checksums stripped from the batch records and the `meta` table gone.
fn downgrade_to_format_1(path: &Path, mut edit: impl FnMut(u64, &mut Vec<u8>)) {
    use redb::{ReadableTable, TableDefinition};
    const BATCHES: TableDefinition<u64, &[u8]> = TableDefinition::new("batches");
    const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut batches = txn.open_table(BATCHES).unwrap();
        let rows: Vec<(u64, Vec<u8>)> = batches
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.value(), v.value().to_vec())
            })
            .collect();
        for (id, mut value) in rows {
            value.truncate(value.len() - otsd::store::BATCH_CHECKSUM_LEN);
            edit(id, &mut value);
            batches.insert(id, value.as_slice()).unwrap();
        }
    }
    assert!(txn.delete_table(META).unwrap());
    txn.commit().unwrap();
}

/// A format-1 store (no checksums, no version) is upgraded when opened
/// and serves the same proofs, then is format 2: its records are checked.
#[test]
fn a_format_1_store_is_upgraded_and_then_checked() {
    let f = Fixture::new();
    let pristine = f.pristine_proofs();
    downgrade_to_format_1(&f.store_path(), |_, _| {});
    let store = Store::open(&f.cal, f.reader.clone()).unwrap();
    for (i, (_, c)) in f.all().enumerate() {
        assert_eq!(store.get_serialized(c).unwrap().unwrap(), pristine[i]);
    }
    drop(store);
    // Reopened: format 2, same proofs; a flipped tail is caught again.
    assert_eq!(f.pristine_proofs(), pristine);
    let mut bytes = std::fs::read(f.store_path()).unwrap();
    for i in attestation_offsets(&bytes, 2) {
        bytes[i - 30] ^= 0x80;
    }
    std::fs::write(f.store_path(), &bytes).unwrap();
    let store = Store::open(&f.cal, f.reader.clone()).unwrap();
    assert!(matches!(
        store.get_serialized(&f.batches[1][0]),
        Err(StoreError::Corrupt { batch: 1, .. })
    ));
}

/// A format-1 record that fails re-verification (its root is not the
/// tree of its journal records, or its tail does not end with the record)
/// refuses the open, naming the batch, and nothing is rewritten.
#[test]
fn a_format_1_store_failing_reverification_is_refused() {
    type Edit = fn(&Fixture, &mut Vec<u8>);
    let edits: [(&str, Edit); 2] = [
        ("root", |f, v| {
            let root = MerkleTree::new(f.batches[3].iter().map(leaf).collect())
                .unwrap()
                .root();
            let at = v.windows(32).position(|w| w == root).expect("the root");
            v[at] ^= 1;
        }),
        ("tail", |_, v| v.push(0)),
    ];
    for (what, edit) in edits {
        let f = Fixture::new();
        downgrade_to_format_1(&f.store_path(), |id, v| {
            if id == 3 {
                edit(&f, v);
            }
        });
        let before = std::fs::read(f.store_path()).unwrap();
        match Store::open(&f.cal, f.reader.clone()) {
            Err(e @ StoreError::Corrupt { batch: 3, .. }) => {
                assert!(e.to_string().contains("format-1"), "{what}: {e}")
            }
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(std::fs::read(f.store_path()).unwrap(), before, "{what}");
    }
}

/// An unknown format version is refused; a store opened twice is redb's
/// typed error; a leftover `store.redb.new` does not stop a creation.
#[test]
fn versions_double_opens_and_leftovers() {
    let f = Fixture::new();
    {
        const META: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
        let db = redb::Database::open(f.store_path()).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().insert("format", 99).unwrap();
        txn.commit().unwrap();
    }
    match Store::open(&f.cal, f.reader.clone()) {
        Err(e @ StoreError::UnsupportedFormat { found: 99, .. }) => {
            assert!(e.to_string().contains("store.redb"), "{e}")
        }
        other => panic!("{other:?}"),
    }

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(STORE_NEW_FILE), b"half-written").unwrap();
    let store = Store::open(dir.path(), f.reader.clone()).unwrap();
    assert!(store.is_empty().unwrap());
    assert!(!dir.path().join(STORE_NEW_FILE).exists());
    match Store::open(dir.path(), f.reader.clone()) {
        Err(StoreError::Db { source, .. })
            if matches!(*source, redb::Error::DatabaseAlreadyOpen) => {}
        other => panic!("{other:?}"),
    }
}
