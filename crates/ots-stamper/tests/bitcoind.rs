//! The runner against a real Bitcoin Core node (regtest), when
//! `BITCOIND_EXE` points at a `bitcoind` binary; skipped with a notice
//! otherwise. One round end to end: funding from the wallet, signing,
//! broadcast, an RBF replacement after a block without it, mining,
//! confirmations, and proofs that verify against the node's headers.

use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ots_bitcoin::{Auth, RpcClient, RpcConfig};
use ots_proof::{Attestation, MerkleTree, Op, Timestamp};
use ots_stamper::runner::{CommitmentSource, ProofSink, Runner, RunnerConfig};
use ots_stamper::stamper::Config;
use serde_json::{json, Value};
use test_support::bitcoind::{self, Bitcoind, Options};

/// Starts the node: RPC cookie authentication, no transaction index.
async fn start(exe: &Path) -> Bitcoind {
    let options = Options {
        args: vec!["-txindex=0".into()],
        ..Options::default()
    };
    Bitcoind::start(exe, options).await
}

fn client(node: &Bitcoind, wallet: Option<&str>) -> RpcClient {
    let mut config = RpcConfig::new(node.rpc_url(), Auth::CookieFile(node.cookie_file()));
    config.wallet = wallet.map(str::to_string);
    config.retries = 20;
    RpcClient::new(config).unwrap()
}

struct Journal(Vec<Vec<u8>>);

impl CommitmentSource for Journal {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read(&self, ranges: &[Range<u64>]) -> std::io::Result<Vec<(u64, Vec<u8>)>> {
        Ok(ranges
            .iter()
            .flat_map(|r| r.clone())
            .map(|i| (i, self.0[i as usize].clone()))
            .collect())
    }
}

/// A stored batch: the commitments with their positions, and the tail.
type Batch = (Vec<(u64, Vec<u8>)>, Timestamp);

#[derive(Default)]
struct Sink(Mutex<Vec<Batch>>);

impl ProofSink for Sink {
    fn add_batch(&self, commitments: Vec<(u64, Vec<u8>)>, tail: Timestamp) -> Result<(), String> {
        self.0.lock().unwrap().push((commitments, tail));
        Ok(())
    }
}

struct SharedJournal(Arc<Mutex<Vec<Vec<u8>>>>);

impl CommitmentSource for SharedJournal {
    fn len(&self) -> u64 {
        self.0.lock().unwrap().len() as u64
    }
    fn read(&self, ranges: &[Range<u64>]) -> std::io::Result<Vec<(u64, Vec<u8>)>> {
        Journal(self.0.lock().unwrap().clone()).read(ranges)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_round_against_bitcoin_core() {
    let Some(exe) = bitcoind::exe() else {
        eprintln!("skipped: set BITCOIND_EXE to a bitcoind binary to run the Bitcoin Core tier");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = start(&exe).await;
    let rpc = client(&node, None);
    let _: Value = rpc.call("createwallet", json!(["ots"])).await.unwrap();
    let wallet = client(&node, Some("ots"));
    let addr = wallet.new_address().await.unwrap();
    let _: Value = rpc
        .call("generatetoaddress", json!([101, addr]))
        .await
        .unwrap();

    let journal = Arc::new(Mutex::new(
        (0u8..5).map(|i| vec![i; 44]).collect::<Vec<_>>(),
    ));
    let sink = Arc::new(Sink::default());
    let config = RunnerConfig {
        stamper: Config {
            min_confirmations: 2,
            min_tx_interval_secs: 0,
            relay_feerate: 1_000,
            max_fee: bitcoin::Amount::from_sat(100_000),
            max_pending: 1_000,
        },
        state_path: dir.path().join("stamper.json"),
        poll: Duration::from_millis(100),
        conf_target: 2,
    };
    let (mut runner, view) = Runner::new(
        config,
        client(&node, Some("ots")),
        Arc::new(SharedJournal(journal.clone())),
        sink.clone(),
    )
    .unwrap();

    // First step: a round over the 5 commitments is funded, signed, sent.
    runner.step().await.unwrap();
    let mempool: Vec<String> = rpc.call("getrawmempool", json!([])).await.unwrap();
    assert_eq!(mempool.len(), 1, "one timestamp transaction in the mempool");
    let first = mempool[0].clone();

    // More commitments, and a block without our transaction: replaced.
    journal
        .lock()
        .unwrap()
        .extend((5u8..8).map(|i| vec![i; 44]));
    let _: Value = rpc.call("generateblock", json!([addr, []])).await.unwrap();
    runner.step().await.unwrap();
    let mempool: Vec<String> = rpc.call("getrawmempool", json!([])).await.unwrap();
    assert_eq!(mempool.len(), 1);
    assert_ne!(
        mempool[0], first,
        "the replacement took the first version's place"
    );
    let entry: Value = rpc
        .call("getmempoolentry", json!([mempool[0]]))
        .await
        .unwrap();
    assert!(
        entry["fees"]["base"].as_f64().unwrap() > 0.00000153,
        "the replacement pays more: {entry}"
    );

    // Mined, then one more block: two confirmations, proofs complete.
    let _: Value = rpc
        .call("generatetoaddress", json!([1, addr]))
        .await
        .unwrap();
    runner.step().await.unwrap();
    assert!(
        sink.0.lock().unwrap().is_empty(),
        "not final after one confirmation"
    );
    assert!(!view.read().unwrap().mined.is_empty());
    let _: Value = rpc
        .call("generatetoaddress", json!([1, addr]))
        .await
        .unwrap();
    runner.step().await.unwrap();

    let batches = sink.0.lock().unwrap().clone();
    assert_eq!(batches.len(), 1);
    let (commitments, tail) = &batches[0];
    assert_eq!(commitments.len(), 8, "the replacement covered all eight");
    let leaves: Vec<[u8; 32]> = commitments
        .iter()
        .map(|(_, c)| ots_proof::op::sha256(c))
        .collect();
    let tree = MerkleTree::new(leaves).unwrap();
    for (i, (_, commitment)) in commitments.iter().enumerate() {
        let mut proof = Timestamp::new(commitment.clone()).unwrap();
        let mut path = vec![Op::Sha256];
        path.extend(tree.path(i).unwrap());
        proof.add_path(path).unwrap().merge(tail.clone()).unwrap();
        let attestations = proof.all_attestations();
        let (msg, attestation) = attestations[0];
        let Attestation::Bitcoin { height } = attestation else {
            panic!("{attestation:?}")
        };
        let hash = rpc.block_hash(*height).await.unwrap().unwrap();
        let header = rpc.block_header(&hash).await.unwrap().unwrap();
        assert!(ots_proof::verify::verify_bitcoin_header(msg, &header).is_ok());
    }
    assert!(view.read().unwrap().mined.is_empty());
}
