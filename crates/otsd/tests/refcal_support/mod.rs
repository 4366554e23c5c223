//! A synthetic reference calendar directory (the reference's layout, PROTOCOL
//! §3): N commitments in `journal` (44-byte records with valid MACs) and
//! their completed proofs in a LevelDB `db/` in the reference's key/value
//! format (a key per node message, the value its node record), PER_TX
//! commitments per transaction: the Merkle tree over `sha256(commitment)`
//! leaves, then a Bitcoin-shaped tail (into a ~150-byte transaction, double
//! sha256, 12 levels of a block's tree, the attestation). Also
//! `headers.txt` (a header per attested height, for `import-reference
//! --headers-file`) and `paths.txt` (`/timestamp/<hex>` of every
//! commitment, for `bench/get.lua`). Shared by the `refcal_gen` bench tool
//! and the tests (included with `#[path]`), so both read the same data.
//!
//! The LevelDB is written as the reference's plyvel writes it: snappy
//! blocks, no bloom filter, one write batch per transaction.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

use ots_proof::{Attestation, MerkleTree, Op};
use otsd::calendar::{Commitment, HmacKey, KeyDeriver, HMAC_KEY_FILE, JOURNAL_FILE, URI_FILE};
use otsd::refstore::node::NodeRecord;
use otsd::store::{commitment_bytes, leaf};
use rand::RngCore;

/// The first attested block height.
const FIRST_HEIGHT: u64 = 800_000;
/// Levels of a block's Merkle tree in the tail.
const BLOCK_TREE_LEVELS: usize = 12;
/// The calendar's URI (in pending attestations of new commitments).
pub const URI: &str = "http://127.0.0.1:14788";

/// No bloom filter, as plyvel's default: the tables' filter block is
/// empty and named so that no reader uses it.
struct NoFilter;

impl rusty_leveldb::FilterPolicy for NoFilter {
    fn name(&self) -> &'static str {
        "none"
    }
    fn create_filter(&self, _: &[u8], _: &[usize]) -> Vec<u8> {
        Vec::new()
    }
    fn key_may_match(&self, _: &[u8], _: &[u8]) -> bool {
        true
    }
}

fn record(attestations: Vec<Attestation>, ops: Vec<Op>) -> Vec<u8> {
    NodeRecord { attestations, ops }.encode()
}

/// Writes the calendar into `dir` (which must not hold one): `n`
/// commitments, `per_tx` per transaction.
pub fn generate(dir: &Path, n: u64, per_tx: u64) {
    assert!(per_tx > 0);
    std::fs::create_dir_all(dir).expect("creating DIR");
    assert!(
        !dir.join("db").exists() && !dir.join(JOURNAL_FILE).exists(),
        "{} already holds a calendar",
        dir.display()
    );
    let mut rng = rand::thread_rng();
    let mut key = vec![0u8; 32];
    rng.fill_bytes(&mut key);
    std::fs::write(dir.join(HMAC_KEY_FILE), &key).expect("hmac-key");
    std::fs::write(dir.join(URI_FILE), format!("{URI}\n")).expect("uri");
    std::fs::write(dir.join("donation_addr"), "\n").expect("donation_addr");
    let mut deriver = KeyDeriver::new(HmacKey::new(key));
    let mut journal =
        std::io::BufWriter::new(std::fs::File::create(dir.join(JOURNAL_FILE)).expect("journal"));
    let mut headers =
        std::io::BufWriter::new(std::fs::File::create(dir.join("headers.txt")).expect("headers"));
    let mut paths =
        std::io::BufWriter::new(std::fs::File::create(dir.join("paths.txt")).expect("paths"));
    let opt = rusty_leveldb::Options {
        compressor:
            <rusty_leveldb::compressor::SnappyCompressor as rusty_leveldb::CompressorId>::ID,
        filter_policy: std::rc::Rc::new(Box::new(NoFilter)),
        ..rusty_leveldb::Options::default()
    };
    let mut db = rusty_leveldb::DB::open(dir.join("db"), opt).expect("creating db/");
    let bytes = |n: usize| {
        let mut v = vec![0u8; n];
        rand::thread_rng().fill_bytes(&mut v);
        v
    };
    let mut done = 0u64;
    let mut height = FIRST_HEIGHT;
    while done < n {
        let size = per_tx.min(n - done);
        let recs: Vec<Commitment> = (0..size)
            .map(|i| {
                let mut tip = [0u8; 32];
                rng.fill_bytes(&mut tip);
                deriver.commitment(1_600_000_000 + ((done + i) / 100) as u32, &tip)
            })
            .collect();
        let mut wb = rusty_leveldb::WriteBatch::default();
        let sha = record(vec![], vec![Op::Sha256]);
        for c in &recs {
            journal.write_all(c).expect("journal");
            let c = commitment_bytes(c);
            writeln!(paths, "/timestamp/{}", hex::encode(c)).expect("paths");
            wb.put(c, &sha);
        }
        let tree = MerkleTree::new(recs.iter().map(leaf).collect()).expect("non-empty");
        let levels = tree.levels();
        for level in &levels[..levels.len() - 1] {
            for pair in level.chunks(2) {
                if let [l, r] = pair {
                    wb.put(l, &record(vec![], vec![Op::Append(r.to_vec())]));
                    wb.put(r, &record(vec![], vec![Op::Prepend(l.to_vec())]));
                    wb.put(&[l.as_slice(), r.as_slice()].concat(), &sha);
                }
            }
        }
        // The tail: a chain of single-operation nodes to the attestation.
        let mut ops = vec![
            Op::Prepend(bytes(90)),
            Op::Append(bytes(30)),
            Op::Sha256,
            Op::Sha256,
        ];
        for level in 0..BLOCK_TREE_LEVELS {
            ops.push(if level % 2 == 0 {
                Op::Append(bytes(32))
            } else {
                Op::Prepend(bytes(32))
            });
            ops.push(Op::Sha256);
            ops.push(Op::Sha256);
        }
        let mut msg = tree.root().to_vec();
        for op in ops {
            let next = op.apply(&msg).expect("valid op");
            wb.put(&msg, &record(vec![], vec![op]));
            msg = next;
        }
        wb.put(&msg, &record(vec![Attestation::Bitcoin { height }], vec![]));
        db.write(wb, false).expect("writing db/");
        // A header whose merkle root is the attested message.
        let mut header = bytes(80);
        header[36..68].copy_from_slice(&msg);
        writeln!(headers, "{height} {}", hex::encode(header)).expect("headers");
        height += 1;
        done += size;
    }
    db.flush().expect("flushing db/");
    db.close().expect("closing db/");
    journal.flush().expect("journal");
    headers.flush().expect("headers");
    paths.flush().expect("paths");
}
