//! Bench: completing N commitments (default 1,000,000) confirmed in one
//! Bitcoin transaction, along the stamper's own path: read them from the
//! journal, build the tail from the transaction through a real block's
//! merkle tree to the attestation, and store every proof in one atomic
//! batch (one fsync; the store checks them against the journal and the
//! tail), dropping them from the pending index. The transaction's tip is
//! computed beforehand, as the stamper did when it sent the transaction. Prints the time of each step and the store's bytes per
//! commitment.
//!
//! `cargo run --release -p otsd --example complete_one_tx [N] [BLOCK_TXS] [DIR]`
//!
//! With DIR, the calendar is kept there (initialised as `otsd init` does,
//! to be served by `otsd -c DIR --no-bitcoin`), with `DIR/bench-paths.txt`
//! listing `/timestamp/<hex>` for 100,000 of its completed commitments (the
//! GET scenario of `bench/load.sh`).

// One journal range is a set of one interval.
#![allow(clippy::single_range_in_vec_init)]

use std::sync::Arc;
use std::time::Instant;

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{
    absolute, transaction, Amount, Block, BlockHash, CompactTarget, OutPoint, ScriptBuf, Sequence,
    Transaction, TxIn, TxMerkleNode, TxOut, Txid, Witness,
};
use otsd::calendar::{Calendar, Commitment, KeyDeriver};
use otsd::journal::{Journal, Verify};
use otsd::stamping::{merkle_tip, read_commitments, store_batch};
use otsd::status::PendingIndex;
use otsd::store::{Store, STORE_FILE};
use rand::RngCore;

fn tx(n: u32, output: ScriptBuf) -> Transaction {
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(Txid::from_byte_array([n as u8; 32]), n),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![
            TxOut {
                value: Amount::ZERO,
                script_pubkey: output,
            },
            TxOut {
                value: Amount::from_sat(100_000 + u64::from(n)),
                script_pubkey: ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array(
                    [n as u8; 20],
                )),
            },
        ],
    }
}

/// A block of `count` transactions with the timestamp transaction (an
/// OP_RETURN of `tip`) in the middle.
fn block_with(tip: [u8; 32], count: u32) -> (Block, Txid) {
    let ours = count / 2;
    let txdata: Vec<Transaction> = (0..count)
        .map(|n| {
            let out = if n == ours {
                ScriptBuf::new_op_return(tip)
            } else {
                ScriptBuf::new_op_return(n.to_le_bytes())
            };
            tx(n, out)
        })
        .collect();
    let txid = txdata[ours as usize].compute_txid();
    let mut block = Block {
        header: Header {
            version: Version::TWO,
            prev_blockhash: BlockHash::all_zeros(),
            merkle_root: TxMerkleNode::all_zeros(),
            time: 1_700_000_000,
            bits: CompactTarget::from_consensus(0x207fffff),
            nonce: 0,
        },
        txdata,
    };
    block.header.merkle_root = block.compute_merkle_root().expect("transactions");
    (block, txid)
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(1_000_000);
    let block_txs = args.get(1).copied().unwrap_or(3_000) as u32;
    let temp = tempfile::tempdir().expect("temp dir");
    let keep = std::env::args().nth(3).map(std::path::PathBuf::from);
    let dir = keep.clone().unwrap_or_else(|| temp.path().join("calendar"));
    Calendar::init(&dir, "https://bench.invalid", "").expect("a fresh calendar directory");
    let key = Calendar::open(&dir).expect("calendar").key;
    let (mut journal, reader, _) = Journal::open(&dir, &key, Verify::All).expect("journal");
    let store = Arc::new(Store::open(&dir, reader.clone()).expect("store"));
    let pending = Arc::new(PendingIndex::new(reader.clone()));

    // The calendar's day: N commitments journaled, all pending.
    let mut deriver = KeyDeriver::new(key);
    let mut rng = rand::thread_rng();
    let recs: Vec<Commitment> = (0..n)
        .map(|i| {
            let mut tip = [0u8; 32];
            rng.fill_bytes(&mut tip);
            deriver.commitment(1_700_000_000 + (i / 1_000) as u32, &tip)
        })
        .collect();
    for chunk in recs.chunks(100_000) {
        let first = journal.append(chunk).expect("append");
        for (i, c) in chunk.iter().enumerate() {
            pending.insert(c, first + i as u64);
        }
    }
    drop(recs);
    assert_eq!(reader.durable_len(), n);

    // The tip, as the stamper computed it when it sent the transaction.
    let tip = {
        let commitments = read_commitments(&reader, &[0..n]).expect("read the journal");
        merkle_tip(&commitments).expect("non-empty")
    };
    let (block, txid) = block_with(tip, block_txs);

    // Completion, timed step by step.
    let started = Instant::now();
    let commitments = read_commitments(&reader, &[0..n]).expect("read the journal");
    let read = started.elapsed();
    let t = Instant::now();
    let tail = ots_bitcoin::timestamp_from_block(&tip, txid, &block, 800_000).expect("tail");
    let tailed = t.elapsed();
    let t = Instant::now();
    store_batch(&store, &pending, commitments, tail).expect("store");
    let stored = t.elapsed();
    let total = started.elapsed();

    assert!(
        pending.is_empty(),
        "every commitment left the pending index"
    );
    let probe = reader.get(n / 2).expect("read").expect("durable");
    assert!(store.get(&probe).expect("get").is_some());
    let size = std::fs::metadata(dir.join(STORE_FILE))
        .expect("store file")
        .len();
    println!("commitments:              {n} in one transaction ({block_txs} in its block)");
    println!("read from the journal:    {read:.2?}");
    println!("tail (tx → block header): {tailed:.2?}");
    println!("store (one batch, fsync): {stored:.2?}");
    println!("total:                    {total:.2?}");
    println!("store file:               {size} bytes");
    println!("store bytes/commitment:   {:.1}", size as f64 / n as f64);
    if keep.is_some() {
        let paths: Vec<String> = (0..n.min(100_000))
            .map(|i| {
                let c = reader.get(i * 7_919 % n).expect("read").expect("durable");
                format!(
                    "/timestamp/{}\n",
                    hex::encode(otsd::store::commitment_bytes(&c))
                )
            })
            .collect();
        std::fs::write(dir.join("bench-paths.txt"), paths.concat()).expect("paths");
        println!("calendar kept in {}", dir.display());
    }
}
