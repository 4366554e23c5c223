//! Measures the proof store's size per commitment: journals N commitments
//! (default 1,000,000), completes them in batches (default 10,000 per
//! batch) with a Bitcoin-shaped tail, and prints bytes per commitment.
//!
//! `cargo run --release -p otsd --example store_size [N] [BATCH]`

use std::time::Instant;

use ots_proof::{Attestation, MerkleTree, Op, Timestamp};
use otsd::calendar::{Commitment, HmacKey, KeyDeriver};
use otsd::journal::{Journal, Verify};
use otsd::store::{leaf, CompletedBatch, Store, STORE_FILE};
use rand::RngCore;

/// A tail shaped like a real one: into a ~150-byte transaction, double
/// sha256, then 12 levels of a block's merkle tree, then the attestation.
fn bitcoin_like_tail(root: [u8; 32], height: u64) -> Timestamp {
    let mut rng = rand::thread_rng();
    let mut bytes = |n: usize| {
        let mut v = vec![0u8; n];
        rng.fill_bytes(&mut v);
        v
    };
    let mut ops = vec![
        Op::Prepend(bytes(90)),
        Op::Append(bytes(30)),
        Op::Sha256,
        Op::Sha256,
    ];
    for level in 0..12 {
        ops.push(if level % 2 == 0 {
            Op::Append(bytes(32))
        } else {
            Op::Prepend(bytes(32))
        });
        ops.push(Op::Sha256);
        ops.push(Op::Sha256);
    }
    let mut t = Timestamp::new(root.to_vec()).expect("32 bytes");
    t.add_path(ops)
        .expect("valid ops")
        .add_attestation(Attestation::Bitcoin { height });
    t
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(1_000_000);
    let batch = args.get(1).copied().unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let key = HmacKey::new(vec![1; 32]);
    let (mut journal, reader, _) = Journal::open(dir.path(), &key, Verify::All).expect("journal");
    let mut store = Store::open(dir.path(), reader.clone()).expect("store");
    let mut deriver = KeyDeriver::new(key);
    let mut rng = rand::thread_rng();
    let started = Instant::now();
    let mut done = 0u64;
    let mut height = 800_000;
    while done < n {
        let size = batch.min(n - done);
        let recs: Vec<Commitment> = (0..size)
            .map(|i| {
                let mut tip = [0u8; 32];
                rng.fill_bytes(&mut tip);
                deriver.commitment(1_700_000_000 + ((done + i) / 100) as u32, &tip)
            })
            .collect();
        let first = journal.append(&recs).expect("append");
        let tree = MerkleTree::new(recs.iter().map(leaf).collect()).expect("non-empty");
        let commitments = recs
            .into_iter()
            .enumerate()
            .map(|(i, c)| (first + i as u64, c))
            .collect();
        store
            .add_batch(CompletedBatch {
                commitments,
                tail: bitcoin_like_tail(tree.root(), height),
            })
            .expect("add_batch");
        done += size;
        height += 1;
    }
    let elapsed = started.elapsed();
    // Spot-check proofs, and time lookups.
    let t = Instant::now();
    let probes = 1000u64;
    for i in 0..probes {
        let idx = (i * 7919) % n;
        let c = reader.get(idx).expect("read").expect("durable");
        assert!(store.get(&c).expect("get").is_some());
    }
    let per_get = t.elapsed() / probes as u32;
    let size = std::fs::metadata(dir.path().join(STORE_FILE))
        .expect("store file")
        .len();
    store.compact().expect("compact");
    let compacted = std::fs::metadata(dir.path().join(STORE_FILE))
        .expect("store file")
        .len();
    println!("commitments:            {n}");
    println!("batch size:             {batch}");
    println!("store file:             {size} bytes");
    println!("store bytes/commitment: {:.1}", size as f64 / n as f64);
    println!(
        "after compact():        {compacted} bytes, {:.1} bytes/commitment",
        compacted as f64 / n as f64
    );
    println!("journal bytes/commitment: 44 (shared with the pending path)");
    println!("fill time:              {elapsed:.2?}");
    println!("get (avg of {probes}):      {per_get:.2?}");
}
