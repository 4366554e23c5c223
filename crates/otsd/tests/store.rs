//! The proof store with a fake tail (an attestation on the batch root; the
//! real Bitcoin part comes with the stamper), backup chunks, and the
//! server serving completed proofs.

mod common;

use common::*;
use ots_proof::codec::Reader;
use ots_proof::op::sha256;
use ots_proof::{Attestation, MerkleTree, Op, Timestamp};
use otsd::backup;
use otsd::calendar::{Calendar, Commitment, KeyDeriver};
use otsd::config::Settings;
use otsd::journal::{Journal, JournalReader, Verify};
use otsd::store::{leaf, CompletedBatch, Store, StoreError};

struct Fixture {
    _dir: tempfile::TempDir,
    cal: std::path::PathBuf,
    journal: Journal,
    reader: JournalReader,
    deriver: KeyDeriver,
    t: u32,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let cal = init_calendar(dir.path());
        let key = Calendar::open(&cal).unwrap().key;
        let (journal, reader, _) = Journal::open(&cal, &key, Verify::All).unwrap();
        Fixture {
            _dir: dir,
            cal,
            journal,
            reader,
            deriver: KeyDeriver::new(key),
            t: 1_700_000_000,
        }
    }

    /// Journals `n` fresh commitments; returns them with their indices.
    fn commit(&mut self, n: usize) -> Vec<(u64, Commitment)> {
        let recs: Vec<Commitment> = (0..n)
            .map(|_| {
                self.t += 1;
                let tip: [u8; 32] = random_digest().try_into().unwrap();
                self.deriver.commitment(self.t, &tip)
            })
            .collect();
        let first = self.journal.append(&recs).unwrap();
        recs.into_iter()
            .enumerate()
            .map(|(i, c)| (first + i as u64, c))
            .collect()
    }
}

/// A stand-in for the Bitcoin part: a few ops, then an attestation.
fn fake_tail(root: [u8; 32], height: u64) -> Timestamp {
    let mut t = Timestamp::new(root.to_vec()).unwrap();
    t.add_path([
        Op::Prepend(vec![0xaa; 80]),
        Op::Append(vec![0xbb; 40]),
        Op::Sha256,
        Op::Sha256,
    ])
    .unwrap()
    .add_attestation(Attestation::Bitcoin { height });
    t
}

fn batch(entries: Vec<(u64, Commitment)>, height: u64) -> CompletedBatch {
    let tree = MerkleTree::new(entries.iter().map(|(_, c)| leaf(c)).collect()).unwrap();
    CompletedBatch {
        tail: fake_tail(tree.root(), height),
        commitments: entries,
    }
}

/// The proof is rooted at the commitment, reaches the attestation through
/// sha256(commitment) and the batch tree, and round-trips.
fn check(store: &Store, c: &Commitment, height: u64) {
    let ts = store.get(c).unwrap().expect("completed proof");
    assert_eq!(ts.msg(), c.as_slice());
    let atts = ts.all_attestations();
    assert_eq!(atts.len(), 1);
    assert_eq!(atts[0].1, &Attestation::Bitcoin { height });
    let bytes = ts.serialize().unwrap();
    assert_eq!(Timestamp::deserialize(&bytes, c).unwrap(), ts);
    // What the server sends: the same bytes, built without decoding.
    assert_eq!(store.get_serialized(c).unwrap(), Some(bytes));
}

#[test]
fn batches_of_every_small_size_and_a_large_one() {
    every_size(true);
}

#[test]
fn levels_read_from_the_database_give_the_same_proofs() {
    every_size(false);
}

/// With the batch cache holding levels, or reading every one from the
/// database (as for batches too large to cache).
fn every_size(level_cache: bool) {
    let mut f = Fixture::new();
    let store = Store::open(&f.cal, f.reader.clone()).unwrap();
    store.set_level_cache(level_cache);
    assert!(store.is_empty().unwrap());
    let mut all = Vec::new();
    for (h, n) in (1..=40).chain([1000]).enumerate() {
        let entries = f.commit(n);
        store.add_batch(batch(entries.clone(), h as u64)).unwrap();
        all.push((entries, h as u64));
    }
    assert!(!store.is_empty().unwrap());
    for (entries, h) in &all {
        for (_, c) in entries {
            check(&store, c, *h);
        }
    }
    // Unknown commitment, wrong lengths.
    let other = f.commit(1)[0].1;
    assert!(store.get(&other).unwrap().is_none());
    assert!(store.get_serialized(&other).unwrap().is_none());
    assert!(!store.contains(&other).unwrap());
    assert!(store.get(&[1; 32]).unwrap().is_none());
    // Reopened: still there.
    drop(store);
    let store = Store::open(&f.cal, f.reader.clone()).unwrap();
    store.set_level_cache(level_cache);
    check(&store, &all[40].0[999].1, 40);
}

#[test]
fn batches_with_gaps_in_the_journal() {
    let mut f = Fixture::new();
    let store = Store::open(&f.cal, f.reader.clone()).unwrap();
    let a = f.commit(13);
    let _skipped = f.commit(5);
    let b = f.commit(9);
    let mut entries = a.clone();
    entries.extend(b.iter().copied());
    // Reorg-style order: not even increasing.
    entries.swap(0, 20);
    store.add_batch(batch(entries.clone(), 7)).unwrap();
    for (_, c) in &entries {
        check(&store, c, 7);
    }
}

#[test]
fn inconsistent_batches_are_refused() {
    let mut f = Fixture::new();
    let store = Store::open(&f.cal, f.reader.clone()).unwrap();
    let entries = f.commit(4);
    // Tail not rooted at the tree.
    let bad = CompletedBatch {
        commitments: entries.clone(),
        tail: fake_tail([0; 32], 1),
    };
    assert!(matches!(store.add_batch(bad), Err(StoreError::BadBatch(_))));
    // Commitment differing from the journal.
    let mut wrong = entries.clone();
    wrong[1].1[5] ^= 1;
    assert!(matches!(
        store.add_batch(batch(wrong, 1)),
        Err(StoreError::BadBatch(_))
    ));
    // Index beyond the journal.
    let mut beyond = entries.clone();
    beyond[3].0 = 99;
    assert!(matches!(
        store.add_batch(batch(beyond, 1)),
        Err(StoreError::BadBatch(_))
    ));
    assert!(matches!(
        store.add_batch(CompletedBatch {
            commitments: vec![],
            tail: fake_tail([0; 32], 1)
        }),
        Err(StoreError::BadBatch(_))
    ));
    assert!(store.is_empty().unwrap());
}

#[test]
fn backup_chunks_list_every_node_sorted() {
    let mut f = Fixture::new();
    let store = Store::open(&f.cal, f.reader.clone()).unwrap();
    let first = f.commit(600);
    store.add_batch(batch(first.clone(), 1)).unwrap();
    assert_eq!(
        backup::chunk(&store, &f.reader, 0).unwrap(),
        None,
        "400 commitments missing"
    );
    let second = f.commit(500);
    store.add_batch(batch(second[..400].to_vec(), 2)).unwrap();
    let chunk = backup::chunk(&store, &f.reader, 0)
        .unwrap()
        .expect("complete");
    assert_eq!(backup::chunk(&store, &f.reader, 1).unwrap(), None);
    // Parse: sorted unique keys; every commitment's proof can be rebuilt
    // from the node records.
    let mut r = Reader::new(&chunk);
    let mut map = std::collections::BTreeMap::new();
    let mut last: Option<Vec<u8>> = None;
    while !r.is_at_end() {
        let k = r.read_varbytes("key", 0, 4096).unwrap().to_vec();
        let v = r.read_varbytes("value", 0, 1 << 20).unwrap().to_vec();
        assert!(last.as_ref().is_none_or(|l| *l < k), "sorted, unique");
        last = Some(k.clone());
        map.insert(k, v);
    }
    for (_, c) in first.iter().chain(&second[..400]) {
        // Walk from the commitment through the records to an attestation.
        let mut msg = c.to_vec();
        loop {
            let rec = map.get(&msg).expect("node present");
            let mut rr = Reader::new(rec);
            let natt = rr.read_varuint().unwrap();
            if natt > 0 {
                assert!(matches!(
                    Attestation::decode(&mut rr).unwrap(),
                    Attestation::Bitcoin { .. }
                ));
                break;
            }
            assert_eq!(rr.read_varuint().unwrap(), 1);
            msg = Op::decode(&mut rr).unwrap().apply(&msg).unwrap();
        }
    }
    assert!(map.contains_key(sha256(&first[0].1).as_slice()));
}

#[tokio::test]
async fn server_serves_completed_proofs_and_chunks() {
    let mut f = Fixture::new();
    let entries = f.commit(1000);
    let pending = f.commit(3);
    {
        let store = Store::open(&f.cal, f.reader.clone()).unwrap();
        store.add_batch(batch(entries.clone(), 9)).unwrap();
    }
    drop(f.journal);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let cal = f.cal.clone();
    let task = tokio::spawn(async move {
        otsd::server::serve(listener, &cal, Settings::default(), async {
            let _ = rx.await;
        })
        .await
    });
    let c = entries[123].1;
    let r = get(addr, &format!("/timestamp/{}", hex::encode(c)), "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("public, max-age=31536000"));
    let ts = Timestamp::deserialize(&r.body, &c).unwrap();
    assert_eq!(
        ts.all_attestations()[0].1,
        &Attestation::Bitcoin { height: 9 }
    );
    let r = get(
        addr,
        &format!("/timestamp/{}", hex::encode(pending[0].1)),
        "",
    )
    .await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (404, "Pending confirmation in Bitcoin blockchain")
    );
    let r = get(addr, "/experimental/backup/0", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("public, max-age=31536000"));
    assert!(!r.body.is_empty());
    // Completed commitments are not counted as pending.
    let r = get(addr, "/", "Accept: application/json\r\n").await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["pending_commitments"], 3);
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}

/// Issue 17: a withdrawn batch (its block left the best chain) is never
/// served, not counted as proved, stays withdrawn across a reopen (the
/// store then reads as format 3), and its commitments stamped again into a
/// new batch are served from it. Other batches are untouched.
#[test]
fn a_withdrawn_batch_is_not_served_until_its_commitments_are_stamped_again() {
    let mut f = Fixture::new();
    let store = Store::open(&f.cal, f.reader.clone()).unwrap();
    let kept = f.commit(3);
    let gone = f.commit(20);
    assert_eq!(store.add_batch(batch(kept.clone(), 5)).unwrap(), 0);
    let id = store.add_batch(batch(gone.clone(), 6)).unwrap();
    assert_eq!(id, 1);
    check(&store, &gone[0].1, 6);
    store.withdraw_batch(id).unwrap();
    store.withdraw_batch(id).unwrap(); // idempotent
    store.withdraw_batch(77).unwrap(); // no such batch: nothing
    let absent = |store: &Store| {
        gone.iter().all(|(_, c)| {
            store.get(c).unwrap().is_none()
                && store.get_serialized(c).unwrap().is_none()
                && !store.contains(c).unwrap()
        })
    };
    assert!(absent(&store));
    check(&store, &kept[0].1, 5);
    drop(store);

    let store = Store::open(&f.cal, f.reader.clone()).unwrap();
    assert!(store.is_withdrawn(id) && !store.is_withdrawn(0));
    assert_eq!(store.withdrawn_batches(), 1);
    assert!(absent(&store));
    {
        drop(store);
        const META: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
        let db = redb::Database::open(f.cal.join("store.redb")).unwrap();
        let txn = db.begin_read().unwrap();
        let format = txn
            .open_table(META)
            .unwrap()
            .get("format")
            .unwrap()
            .unwrap();
        assert_eq!(format.value(), otsd::store::STORE_FORMAT_WITHDRAWN);
    }
    let store = Store::open(&f.cal, f.reader.clone()).unwrap();
    // Stamped again, on another block: served from the new batch.
    let again = store.add_batch(batch(gone.clone(), 9)).unwrap();
    assert_eq!(again, 2);
    for (_, c) in &gone {
        check(&store, c, 9);
        assert!(store.contains(c).unwrap());
    }
    check(&store, &kept[2].1, 5);
}
