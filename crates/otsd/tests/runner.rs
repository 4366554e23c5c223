//! The stamping runner (`otsd::stamping::Runner`) on its own, over a real
//! journal and store, against a real node: Bitcoin Core (regtest) when
//! `BITCOIND_EXE` points at a `bitcoind` binary (skipped with a notice
//! otherwise), and devchain always. One round end to end: funding from the
//! wallet, signing, broadcast, an RBF replacement after a block without
//! it, mining, confirmations, and proofs that verify against the node's
//! headers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ots_bitcoin::{Auth, RpcClient, RpcConfig};
use ots_proof::Attestation;
use ots_stamper::stamper::Config;
use otsd::calendar::{Calendar, Commitment, KeyDeriver};
use otsd::journal::{Journal, Verify};
use otsd::stamping::{Runner, RunnerConfig};
use otsd::status::PendingIndex;
use otsd::store::Store;
use serde_json::{json, Value};
use test_support::bitcoind::{self, Bitcoind, Options};

const WALLET: &str = "ots";

/// Starts the node: RPC cookie authentication, no transaction index.
async fn start(exe: &Path) -> Bitcoind {
    let options = Options {
        args: vec!["-txindex=0".into()],
        ..Options::default()
    };
    Bitcoind::start(exe, options).await
}

fn client(url: &str, cookie: &Path, wallet: Option<&str>) -> RpcClient {
    let mut config = RpcConfig::new(url, Auth::CookieFile(cookie.to_path_buf()));
    config.wallet = wallet.map(str::to_string);
    config.retries = 20;
    RpcClient::new(config).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_round_against_bitcoin_core() {
    let Some(exe) = bitcoind::exe() else {
        eprintln!("skipped: set BITCOIND_EXE to a bitcoind binary to run the Bitcoin Core tier");
        return;
    };
    let node = start(&exe).await;
    let (url, cookie) = (node.rpc_url(), node.cookie_file());
    let rpc = client(&url, &cookie, None);
    let _: Value = rpc.call("createwallet", json!([WALLET])).await.unwrap();
    let wallet = client(&url, &cookie, Some(WALLET));
    let addr = wallet.new_address().await.unwrap();
    let _: Value = rpc
        .call("generatetoaddress", json!([101, addr]))
        .await
        .unwrap();
    a_round(&rpc, wallet, &addr).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_round_against_devchain() {
    let data = tempfile::tempdir().unwrap();
    let chain = devchain::DevChain::start(devchain::DevChainConfig {
        data_dir: Some(data.path().join("devchain")),
        bind: "127.0.0.1:0".parse().unwrap(),
        prefund: true,
        wallet: WALLET.into(),
        ..devchain::DevChainConfig::default()
    })
    .await
    .unwrap();
    let cookie = chain.cookie_path().expect("a data directory").to_path_buf();
    let url = chain.url();
    let rpc = client(&url, &cookie, None);
    let wallet = client(&url, &cookie, Some(WALLET));
    let addr = wallet.new_address().await.unwrap();
    a_round(&rpc, wallet, &addr).await;
    chain.shutdown().await;
}

/// The commitment of `tip` in a test calendar.
fn commitment(deriver: &mut KeyDeriver, n: u8) -> Commitment {
    deriver.commitment(1_700_000_000, &[n; 32])
}

/// One round with `wallet` on the node of `rpc`, whose blocks pay `addr`.
async fn a_round(rpc: &RpcClient, wallet: RpcClient, addr: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cal = dir.path().join("calendar");
    Calendar::init(&cal, "https://calendar.invalid", "").unwrap();
    let key = Calendar::open(&cal).unwrap().key;
    let (mut journal, reader, _) = Journal::open(&cal, &key, Verify::All).unwrap();
    let store = Arc::new(Store::open(&cal, reader.clone()).unwrap());
    let pending = Arc::new(PendingIndex::new(reader.clone()));
    let mut deriver = KeyDeriver::new(key);
    let mut commitments: Vec<Commitment> = (0u8..5).map(|i| commitment(&mut deriver, i)).collect();
    journal.append(&commitments).unwrap();

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
    let (mut runner, view) =
        Runner::new(config, wallet, reader.clone(), store.clone(), pending).unwrap();

    // First step: a round over the 5 commitments is funded, signed, sent.
    runner.step().await.unwrap();
    let mempool: Vec<String> = rpc.call("getrawmempool", json!([])).await.unwrap();
    assert_eq!(mempool.len(), 1, "one timestamp transaction in the mempool");
    let first = mempool[0].clone();

    // More commitments, and a block without our transaction: replaced.
    let more: Vec<Commitment> = (5u8..8).map(|i| commitment(&mut deriver, i)).collect();
    journal.append(&more).unwrap();
    commitments.extend(more);
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
        commitments.iter().all(|c| store.get(c).unwrap().is_none()),
        "not final after one confirmation"
    );
    assert!(!view.read().unwrap().mined.is_empty());
    let _: Value = rpc
        .call("generatetoaddress", json!([1, addr]))
        .await
        .unwrap();
    runner.step().await.unwrap();

    // One batch (one completed transaction), covering all eight: the
    // replacement's.
    assert_eq!(view.read().unwrap().history.entries.len(), 1);
    for commitment in &commitments {
        let proof = store
            .get(commitment)
            .unwrap()
            .expect("the replacement covered all eight");
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
