//! Hot paths of the proof format: decoding and encoding a large proof, and
//! building a Merkle tree (with every leaf's path) over 100,000 digests.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ots_proof::op::sha256;
use ots_proof::{Attestation, DetachedTimestampFile, MerkleTree, Op, Timestamp};

/// A wide and deep proof: 1,000 branches from one digest, each a nonce, a
/// 20-level Merkle path and a pending attestation, as a client's merged
/// proofs or a calendar's backup would look.
fn large_proof() -> Timestamp {
    let mut root = Timestamp::new(sha256(b"large").to_vec()).unwrap();
    for branch in 0u32..1000 {
        let mut ops = vec![Op::Append(branch.to_le_bytes().to_vec()), Op::Sha256];
        for level in 0u32..20 {
            let sibling = sha256(&(branch * 100 + level).to_le_bytes()).to_vec();
            ops.push(if level % 2 == 0 {
                Op::Append(sibling)
            } else {
                Op::Prepend(sibling)
            });
            ops.push(Op::Sha256);
        }
        let end = root.add_path(ops).unwrap();
        end.add_attestation(Attestation::pending("https://calendar.example.org").unwrap());
    }
    root
}

fn proofs(c: &mut Criterion) {
    let mut group = c.benchmark_group("proof");
    let large = large_proof();
    let bytes = large.serialize().unwrap();
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function(
        BenchmarkId::new("deserialize+serialize", bytes.len()),
        |b| {
            b.iter(|| {
                let t = Timestamp::deserialize(black_box(&bytes), large.msg()).unwrap();
                black_box(t.serialize().unwrap())
            })
        },
    );

    let hello = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/examples/hello-world.txt.ots"
    ))
    .unwrap();
    group.throughput(Throughput::Bytes(hello.len() as u64));
    group.bench_function("hello-world.ots deserialize+serialize", |b| {
        b.iter(|| {
            let f = DetachedTimestampFile::deserialize(black_box(&hello)).unwrap();
            black_box(f.serialize().unwrap())
        })
    });
    group.finish();
}

fn merkle(c: &mut Criterion) {
    let leaves: Vec<[u8; 32]> = (0u32..100_000).map(|i| sha256(&i.to_le_bytes())).collect();
    let mut group = c.benchmark_group("merkle");
    group.sample_size(20);
    group.throughput(Throughput::Elements(leaves.len() as u64));
    group.bench_function("build 100k leaves", |b| {
        b.iter(|| black_box(MerkleTree::new(leaves.clone()).unwrap().root()))
    });
    group.bench_function("build 100k leaves + every path", |b| {
        b.iter(|| {
            let tree = MerkleTree::new(leaves.clone()).unwrap();
            for i in 0..tree.len() {
                black_box(tree.path(i));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, proofs, merkle);
criterion_main!(benches);
