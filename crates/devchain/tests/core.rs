//! Core (sans-I/O) behaviour: real blocks, wallet signing, mempool policy,
//! reorgs and persistence.

mod common;

use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use common::funded;
use devchain::chain::block::regtest_target;
use devchain::chain::store::Store;
use devchain::mempool::AcceptOptions;
use devchain::wallet::AddressType;
use devchain::{Chain, RejectClass};

#[test]
fn blocks_pass_rust_bitcoin_checks() {
    let (mut c, spk) = funded(1, 101);
    let dest = c.new_address("w", AddressType::Bech32m, false, "").unwrap();
    c.send_to("w", dest.script_pubkey(), Amount::from_sat(100_000), None)
        .unwrap();
    c.generate(1, &spk).unwrap();
    let mut prev = None;
    for h in c.state().active_hashes().iter().skip(1) {
        let e = c.state().entry(h).unwrap();
        assert!(e.block.check_merkle_root());
        assert!(e.block.check_witness_commitment());
        assert_eq!(e.block.header.validate_pow(regtest_target()).unwrap(), *h);
        if let Some(p) = prev {
            assert_eq!(e.block.header.prev_blockhash, p);
        }
        prev = Some(*h);
    }
    assert_eq!(
        c.state().entry(&prev.unwrap()).unwrap().block.txdata.len(),
        2
    );
}

#[test]
fn wallet_transactions_verify_and_bad_signatures_are_rejected() {
    let (mut c, spk) = funded(1, 101);
    let coin = c
        .wallet_coins("w")
        .into_iter()
        .find(|c| !c.is_immature())
        .unwrap();
    let tx = Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: coin.outpoint,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: coin.output.value - Amount::from_sat(1_000),
            script_pubkey: spk.clone(),
        }],
    };
    let (signed, errors) = c
        .wallet("w")
        .unwrap()
        .sign(&tx, &[Some(coin.output.clone())], None);
    assert!(errors.is_empty());
    devchain::script::verify::verify_tx(&signed, std::slice::from_ref(&coin.output)).unwrap();
    let mut forged = signed.clone();
    forged.output[0].value -= Amount::from_sat(1);
    let err = c.accept_tx(forged, &AcceptOptions::default()).unwrap_err();
    assert_eq!(err.class, RejectClass::Rejected);
    assert!(
        err.reason
            .starts_with("mandatory-script-verify-flag-failed"),
        "{}",
        err.reason
    );
    c.accept_tx(signed, &AcceptOptions::default()).unwrap();
}

#[test]
fn rbf_requires_higher_feerate_and_fee() {
    let (mut c, spk) = funded(1, 101);
    let coin = c
        .wallet_coins("w")
        .into_iter()
        .find(|c| !c.is_immature())
        .unwrap();
    let make = |fee: u64, seq: u32| Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: coin.outpoint,
            script_sig: ScriptBuf::new(),
            sequence: Sequence(seq),
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: coin.output.value - Amount::from_sat(fee),
            script_pubkey: spk.clone(),
        }],
    };
    let sign = |c: &Chain, tx: &Transaction| {
        c.wallet("w")
            .unwrap()
            .sign(tx, &[Some(coin.output.clone())], None)
            .0
    };
    let low = sign(&c, &make(50, u32::MAX));
    let err = c.accept_tx(low, &AcceptOptions::default()).unwrap_err();
    assert_eq!(err.reason, "min relay fee not met");
    let first = sign(&c, &make(2_000, u32::MAX));
    c.accept_tx(first, &AcceptOptions::default()).unwrap();
    let same = sign(&c, &make(2_000, u32::MAX - 1));
    let err = c.accept_tx(same, &AcceptOptions::default()).unwrap_err();
    assert_eq!(err.reason, "insufficient fee");
    assert!(err.detail.contains("<= old feerate"), "{}", err.detail);
    let barely = sign(&c, &make(2_001, u32::MAX));
    let err = c.accept_tx(barely, &AcceptOptions::default()).unwrap_err();
    assert!(
        err.detail.contains("not enough additional fees to relay"),
        "{}",
        err.detail
    );
    let better = sign(&c, &make(3_000, u32::MAX));
    let acc = c.accept_tx(better, &AcceptOptions::default()).unwrap();
    assert_eq!(acc.replaced.len(), 1);
    assert_eq!(c.mempool().len(), 1);
}

#[test]
fn invalidate_and_reconsider_reorg_the_mempool_back() {
    let (mut c, spk) = funded(1, 101);
    let dest = c.new_address("w", AddressType::Bech32, false, "").unwrap();
    let txid = c
        .send_to("w", dest.script_pubkey(), Amount::from_sat(50_000), None)
        .unwrap();
    let hash = c.generate(1, &spk).unwrap()[0];
    assert!(c.mempool().is_empty());
    c.invalidate(&hash).unwrap();
    assert_eq!(c.state().height(), 101);
    assert!(
        c.mempool().get(&txid).is_some(),
        "tx returns to the mempool"
    );
    let other = c.generate(2, &ScriptBuf::new_op_return([9u8; 3])).unwrap();
    assert_eq!(c.state().height(), 103);
    c.reconsider(&hash).unwrap();
    // The reconsidered branch has less work; the tip stays.
    assert_eq!(c.state().tip().hash, other[1]);
    assert!(c.state().find_tx(&txid).is_some());
}

#[test]
fn data_dir_round_trips_and_corruption_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (tip, txid) = {
        let (mut store, mut c) = Store::open(dir.path()).unwrap();
        c.create_wallet("w", None).unwrap();
        let a = c
            .new_address("w", AddressType::Bech32, false, "lbl")
            .unwrap();
        c.generate(101, &a.script_pubkey()).unwrap();
        let txid = c
            .send_to("w", a.script_pubkey(), Amount::from_sat(10_000), None)
            .unwrap();
        store.persist(&mut c).unwrap();
        (c.state().tip().hash, txid)
    };
    let (_, c) = Store::open(dir.path()).unwrap();
    assert_eq!(c.state().tip().hash, tip);
    assert!(c.mempool().get(&txid).is_some());
    assert!(c.wallet_tx("w", &txid).is_some());
    assert_eq!(
        c.balances("w").immature,
        Amount::from_btc(50.0).unwrap() * 100
    );
    // Corrupt the middle of the block log.
    let path = dir.path().join(devchain::chain::store::BLOCKS_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[300] ^= 0xff;
    bytes[0] = 0;
    std::fs::write(&path, &bytes).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");
    let _ = OutPoint::null();
}
