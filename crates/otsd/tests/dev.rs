//! `otsd --dev` end to end: the binary starts its own devchain, and a digest
//! posted to it gets, within bounded time, a complete proof from
//! `GET /timestamp` that verifies against devchain's block header.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{get, post_digest, random_digest, spawn_otsd};
use ots_bitcoin::{Auth, RpcClient, RpcConfig};
use ots_proof::{Attestation, Timestamp};

/// Bounded wait for the proof: polls 250 ms apart.
const POLLS: usize = 480;

/// Starts `otsd --dev` on free ports with its calendar in `cal`; returns
/// the process and the calendar's address.
async fn start(cal: &std::path::Path) -> (tokio::process::Child, SocketAddr) {
    let mut args = vec![std::ffi::OsString::from("--dev"), "-c".into(), cal.into()];
    args.extend(
        ["--rpc-address", "127.0.0.1", "--rpc-port", "0"]
            .into_iter()
            .chain(["--dev-rpc-port", "0", "--dev-block-interval", "1"])
            .chain(["--aggregation-interval", "50"])
            .map(Into::into),
    );
    spawn_otsd(args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_completes_a_proof_on_devchain() {
    let dir = tempfile::tempdir().unwrap();
    let cal = dir.path().join("dev");
    let (mut child, addr) = start(&cal).await;
    // The calendar was initialised with its own address as URI.
    let uri = std::fs::read_to_string(cal.join("uri")).unwrap();
    assert_eq!(uri.trim(), format!("http://127.0.0.1:{}", addr.port()));
    let rpc_url = std::fs::read_to_string(cal.join("dev-rpc-url")).unwrap();
    // It holds the RPC password: the owner's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cal.join("dev-rpc-url"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "dev-rpc-url mode {mode:o}");
    let node = RpcClient::new(RpcConfig::new(rpc_url.trim(), Auth::None)).unwrap();

    let digest = random_digest();
    let reply = post_digest(addr, &digest).await;
    assert_eq!(reply.status, 200);
    let proof = Timestamp::deserialize(&reply.body, &digest).unwrap();
    assert_eq!(
        proof.all_attestations()[0].1,
        &Attestation::Pending {
            uri: uri.trim().to_string()
        }
    );
    let commitment = proof.all_attestations()[0].0.to_vec();
    let path = format!("/timestamp/{}", hex::encode(&commitment));
    let mut reply = get(addr, &path, "").await;
    for _ in 0..POLLS {
        if reply.status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        reply = get(addr, &path, "").await;
    }
    assert_eq!(reply.status, 200, "last reason: {}", reply.text());
    let (_, header) = common::verify_on_node(&node, &commitment, &reply.body).await;
    check_info_page(addr, u64::from(header.time)).await;
    child.kill().await.unwrap();
}

/// The info page lists the completed transaction with the time of the
/// block that mined it, and counts its fee in the week's figures (a fresh
/// calendar's history covers the whole week).
async fn check_info_page(addr: SocketAddr, block_time: u64) {
    let mut info = serde_json::Value::Null;
    // The page is rebuilt every few seconds: wait for one built after the
    // completion.
    for _ in 0..POLLS {
        let r = get(addr, "/", "Accept: application/json\r\n").await;
        info = serde_json::from_slice(&r.body).unwrap();
        if info["transactions"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let txs = info["transactions"]
        .as_array()
        .expect("transactions listed");
    assert_eq!(txs.len(), 1, "{info}");
    assert_eq!(txs[0]["block_time"], block_time);
    assert!(txs[0]["confirmations"].as_u64().unwrap() >= 2);
    let fee = txs[0]["fee_sats"].as_u64().unwrap();
    assert!(fee > 0);
    assert_eq!(info["fees_in_last_week_sats"], fee);
    assert!(
        info["hours_between_transactions"].is_null(),
        "one transaction"
    );
}

/// The reference Python client stamps against `otsd --dev`, upgrades, and
/// verifies with devchain as its node (`OTS_REFERENCE_CLIENT` names its
/// `ots`; `.ci/run` installs it from PyPI). Skipped with a notice otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_client_stamps_upgrades_and_verifies_on_dev() {
    let Some(client) = std::env::var_os("OTS_REFERENCE_CLIENT").map(std::path::PathBuf::from)
    else {
        eprintln!(
            "skipped: set OTS_REFERENCE_CLIENT to the reference client's `ots` to run this test"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cal = dir.path().join("dev");
    let (mut child, addr) = start(&cal).await;
    let url = format!("http://127.0.0.1:{}", addr.port());
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("file.txt"), b"stamped by the reference client").unwrap();
    let ots = |args: &[&str]| {
        std::process::Command::new(&client)
            .arg("--no-cache")
            .args(args)
            .current_dir(&work)
            .output()
            .unwrap()
    };
    let out = ots(&["stamp", "-c", &url, "-m", "1", "file.txt"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut upgraded = false;
    for _ in 0..POLLS / 4 {
        let out = ots(&["-l", &url, "upgrade", "file.txt.ots"]);
        if out.status.success() {
            upgraded = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(upgraded, "the reference client upgraded its proof");
    let rpc_url = std::fs::read_to_string(cal.join("dev-rpc-url")).unwrap();
    let out = ots(&[
        "--btc-regtest",
        "--bitcoin-node",
        rpc_url.trim(),
        "verify",
        "file.txt.ots",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Success! Bitcoin block"), "{stderr}");
    child.kill().await.unwrap();
}

/// `--dev` on a calendar whose key was lost refuses to start, naming the
/// key and the journal, and writes nothing: no new key, `uri` unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_refuses_a_lost_key_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let cal = dir.path().join("dev");
    let (mut child, addr) = start(&cal).await;
    assert_eq!(post_digest(addr, &random_digest()).await.status, 200);
    child.kill().await.unwrap();
    let _ = child.wait().await;
    let uri = std::fs::read_to_string(cal.join("uri")).unwrap();
    std::fs::remove_file(cal.join("hmac-key")).unwrap();

    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_otsd"))
            .args(["--dev", "-c"])
            .arg(&cal)
            .args(["--rpc-address", "127.0.0.1", "--rpc-port", "0"])
            .args(["--dev-rpc-port", "0"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("otsd exits in time")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("hmac-key is missing"), "{stderr}");
    assert!(stderr.contains("journal"), "{stderr}");
    assert!(!cal.join("hmac-key").exists(), "no new key");
    assert_eq!(std::fs::read_to_string(cal.join("uri")).unwrap(), uri);
}
