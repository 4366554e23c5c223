//! Mempool clusters and chunks (Core master's `chunkweight` / `fees.chunk`):
//! a child paying for its parent shares its chunk, a parent paying more
//! than its child does not, and a lone transaction is its own chunk.

mod common;

use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use common::funded;
use devchain::mempool::cluster::sigop_adjusted_weight;
use devchain::mempool::AcceptOptions;
use devchain::Chain;

/// Signs and submits a transaction spending `prev` to one output of
/// `prev.value - fee`; returns the outpoint and output it creates.
fn spend(c: &mut Chain, prev: (OutPoint, TxOut), spk: &ScriptBuf, fee: u64) -> (OutPoint, TxOut) {
    let out = TxOut {
        value: prev.1.value - Amount::from_sat(fee),
        script_pubkey: spk.clone(),
    };
    let tx = Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: prev.0,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![out.clone()],
    };
    let (signed, errors) = c.wallet("w").unwrap().sign(&tx, &[Some(prev.1)], None);
    assert!(errors.is_empty(), "{errors:?}");
    let txid = c.accept_tx(signed, &AcceptOptions::default()).unwrap().txid;
    (OutPoint { txid, vout: 0 }, out)
}

fn mature_coins(c: &Chain) -> Vec<(OutPoint, TxOut)> {
    c.wallet_coins("w")
        .into_iter()
        .filter(|x| !x.is_immature())
        .map(|x| (x.outpoint, x.output))
        .collect()
}

fn weight(c: &Chain, op: &OutPoint) -> u64 {
    let e = c.mempool().get(&op.txid).unwrap();
    sigop_adjusted_weight(e.weight, e.sigop_cost)
}

#[test]
fn child_paying_for_parent_shares_its_chunk() {
    let (mut c, spk) = funded(7, 102);
    let coins = mature_coins(&c);
    let parent = spend(&mut c, coins[0].clone(), &spk, 150);
    let child = spend(&mut c, parent.clone(), &spk, 20_000);
    let lone = spend(&mut c, coins[1].clone(), &spk, 1_000);
    let m = c.mempool();
    let chunk = m.chunk_of(&parent.0.txid).unwrap();
    assert_eq!(chunk.txids, vec![parent.0.txid, child.0.txid]);
    assert_eq!(chunk.fee, Amount::from_sat(20_150));
    assert_eq!(chunk.weight, weight(&c, &parent.0) + weight(&c, &child.0));
    assert_eq!(m.chunk_of(&child.0.txid), Some(chunk));
    assert_eq!(m.cluster(&child.0.txid), vec![parent.0.txid, child.0.txid]);
    let alone = m.chunk_of(&lone.0.txid).unwrap();
    assert_eq!(alone.txids, vec![lone.0.txid]);
    assert_eq!(alone.fee, Amount::from_sat(1_000));
    assert_eq!(alone.weight, weight(&c, &lone.0));
    let all = m.all_chunks();
    assert_eq!(all.len(), 3);
    assert_eq!(all[&lone.0.txid], alone);
}

#[test]
fn parent_paying_more_than_its_child_is_a_chunk_of_its_own() {
    let (mut c, spk) = funded(7, 102);
    let coins = mature_coins(&c);
    let parent = spend(&mut c, coins[0].clone(), &spk, 30_000);
    let child = spend(&mut c, parent.clone(), &spk, 200);
    let grandchild = spend(&mut c, child.clone(), &spk, 50_000);
    let m = c.mempool();
    let chunks = m.cluster_chunks(&child.0.txid);
    // The child alone is worse than the parent; with the grandchild it is better.
    assert_eq!(chunks.len(), 2, "{chunks:?}");
    assert_eq!(chunks[0].txids, vec![parent.0.txid]);
    assert_eq!(chunks[1].txids, vec![child.0.txid, grandchild.0.txid]);
    assert_eq!(chunks[1].fee, Amount::from_sat(50_200));
    let unknown: bitcoin::Txid = "11".repeat(32).parse().unwrap();
    assert!(m.chunk_of(&unknown).is_none());
    assert!(m.cluster(&unknown).is_empty());
}

#[test]
fn a_long_chain_bumped_at_its_end_is_one_chunk() {
    // Longer than EXACT_LINEARIZATION_MAX, so ancestor-set order is used.
    let (mut c, spk) = funded(7, 102);
    let n = devchain::mempool::cluster::EXACT_LINEARIZATION_MAX + 3;
    let mut prev = mature_coins(&c)[0].clone();
    let mut ids = Vec::new();
    for i in 0..n {
        let fee = if i + 1 == n { 100_000 } else { 200 };
        prev = spend(&mut c, prev, &spk, fee);
        ids.push(prev.0.txid);
    }
    let chunks = c.mempool().cluster_chunks(&ids[0]);
    assert_eq!(chunks.len(), 1, "{chunks:?}");
    assert_eq!(chunks[0].txids, ids);
    assert_eq!(
        chunks[0].fee,
        Amount::from_sat(100_000 + 200 * (n as u64 - 1))
    );
}
