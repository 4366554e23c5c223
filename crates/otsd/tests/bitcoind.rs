//! The calendar end to end against a real Bitcoin Core node (regtest), when
//! `BITCOIND_EXE` points at a `bitcoind` binary; skipped with a notice
//! otherwise: digests posted → a timestamp transaction → blocks mined →
//! the 404 reasons follow the real state → complete proofs served by
//! `GET /timestamp` that verify against the node's block headers.

mod common;

use std::time::Duration;

use common::{check_proof, get, post_digest, random_digest, TestServer};
use ots_bitcoin::{Auth, RpcClient, RpcConfig};
use otsd::config::{Backend, Bitcoin, Settings};
use serde_json::{json, Value};
use test_support::bitcoind::{self, Bitcoind, Options};

/// Bounded waits: polls of the server or node, 200 ms apart.
const POLLS: usize = 300;

fn rpc(node: &Bitcoind, wallet: Option<&str>) -> RpcConfig {
    let mut config = RpcConfig::new(node.rpc_url(), Auth::CookieFile(node.cookie_file()));
    config.wallet = wallet.map(str::to_string);
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn digests_get_complete_proofs_from_bitcoin_core() {
    let Some(exe) = bitcoind::exe() else {
        eprintln!("skipped: set BITCOIND_EXE to a bitcoind binary to run the Bitcoin Core tier");
        return;
    };
    let core = Bitcoind::start(exe, Options::default()).await;
    let node = RpcClient::new(rpc(&core, None)).unwrap();
    let _: Value = node.call("createwallet", json!(["ots"])).await.unwrap();
    let wallet = RpcClient::new(rpc(&core, Some("ots"))).unwrap();
    let addr = wallet.new_address().await.unwrap();
    let _: Value = node
        .call("generatetoaddress", json!([101, addr]))
        .await
        .unwrap();

    let server = TestServer::start(Settings {
        aggregation_interval: Duration::from_millis(50),
        backend: Backend::Bitcoin(Bitcoin {
            rpc: rpc(&core, Some("ots")),
            stamper: ots_stamper::Config {
                min_confirmations: 2,
                min_tx_interval_secs: 0,
                relay_feerate: 1_000,
                max_fee: bitcoin::Amount::from_sat(100_000),
                max_pending: 100_000,
            },
            conf_target: 2,
            poll: Duration::from_millis(200),
        }),
        ..Settings::default()
    })
    .await;

    let mut commitments = Vec::new();
    for _ in 0..3 {
        let digest = random_digest();
        let reply = post_digest(server.addr, &digest).await;
        assert_eq!(reply.status, 200);
        commitments.push(check_proof(&digest, &reply.body));
    }
    let path = |c: &[u8]| format!("/timestamp/{}", hex::encode(c));
    let reply = get(server.addr, &path(&commitments[0]), "").await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.text().trim(),
        "Pending confirmation in Bitcoin blockchain"
    );

    // The stamper sends a transaction.
    let mut mempool: Vec<String> = Vec::new();
    for _ in 0..POLLS {
        mempool = node.call("getrawmempool", json!([])).await.unwrap();
        if !mempool.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(mempool.len(), 1, "a timestamp transaction was sent");

    // One confirmation: the reason names the transaction.
    let _: Value = node
        .call("generatetoaddress", json!([1, addr]))
        .await
        .unwrap();
    let mut text = String::new();
    for _ in 0..POLLS {
        text = get(server.addr, &path(&commitments[0]), "").await.text();
        if text.starts_with("Timestamped by transaction") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        text.trim(),
        format!(
            "Timestamped by transaction {}; waiting for 1 confirmations",
            mempool[0]
        )
    );

    // Two confirmations: complete proofs, verified against the headers.
    let _: Value = node
        .call("generatetoaddress", json!([1, addr]))
        .await
        .unwrap();
    for commitment in &commitments {
        let mut reply = get(server.addr, &path(commitment), "").await;
        for _ in 0..POLLS {
            if reply.status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            reply = get(server.addr, &path(commitment), "").await;
        }
        assert_eq!(reply.status, 200, "{}", reply.text());
        common::verify_on_node(&node, commitment, &reply.body).await;
    }
    server.stop().await.unwrap();
}
