//! `ots stamp -b` end to end against devchain's wallet (in-process, a
//! funded wallet, a block every second): one OP_RETURN transaction for
//! the files given, waited for until mined, complete proofs with no
//! calendar, verified against devchain's headers by our client and (when
//! `OTS_REFERENCE_CLIENT` is set) the reference's.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::{has_line, reference, reference_client, stderr, REFERENCE_SKIPPED};
use devchain::devnode::{DevChain, DevChainConfig};
use ots_proof::{Attestation, DetachedTimestampFile};

/// The test chain's RPC password.
const PASSWORD: &str = "wallet-test";

async fn run(args: Vec<String>, cwd: PathBuf) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::ots(&args, &cwd)
    })
    .await
    .unwrap()
}

fn read(path: &Path) -> DetachedTimestampFile {
    DetachedTimestampFile::deserialize(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stamp_with_the_wallet_then_verify() {
    let chain = DevChain::start(DevChainConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        rpc_password: Some(PASSWORD.into()),
        block_interval: Some(Duration::from_secs(1)),
        prefund: true,
        ..DevChainConfig::default()
    })
    .await
    .unwrap();
    let node = format!("http://{}:{PASSWORD}@{}/", chain.user(), chain.addr());
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_path_buf();
    std::fs::write(dir.join("a.txt"), b"stamped by the wallet").unwrap();
    std::fs::write(dir.join("b.txt"), b"in the same transaction").unwrap();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    let out = run(
        s(&[
            "--btc-regtest",
            "--bitcoin-node",
            &node,
            "stamp",
            "-b",
            "a.txt",
            "b.txt",
        ]),
        dir.clone(),
    )
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.lines().any(|l| l.starts_with("Sent timestamp tx ")),
        "{err}"
    );
    assert!(
        err.lines().any(|l| l.starts_with("Confirmed by block ")),
        "{err}"
    );
    assert!(!err.contains("Submitting to remote calendar"), "{err}");
    // Complete proofs, no pending attestation; both files in one
    // transaction, so the same Bitcoin attestation.
    let heights: Vec<u64> = ["a.txt.ots", "b.txt.ots"]
        .iter()
        .map(|p| {
            let proof = read(&dir.join(p));
            let all = proof.timestamp().all_attestations();
            assert_eq!(all.len(), 1, "{p}: {all:?}");
            match all[0].1 {
                Attestation::Bitcoin { height } => *height,
                other => panic!("{p}: {other:?}"),
            }
        })
        .collect();
    assert_eq!(heights[0], heights[1]);

    for proof in ["a.txt.ots", "b.txt.ots"] {
        let out = run(
            s(&["--btc-regtest", "--bitcoin-node", &node, "verify", proof]),
            dir.clone(),
        )
        .await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{proof}: {err}");
        assert!(
            err.lines().any(|l| l.starts_with(&format!(
                "Success! Bitcoin block {} attests existence as of ",
                heights[0]
            ))),
            "{err}"
        );
    }

    // Refused without Bitcoin.
    std::fs::write(dir.join("c.txt"), b"c").unwrap();
    let out = run(s(&["--no-bitcoin", "stamp", "-b", "c.txt"]), dir.clone()).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        has_line(
            &stderr(&out),
            "-b/--btc-wallet needs Bitcoin; it cannot be used with --no-bitcoin"
        ),
        "{}",
        stderr(&out)
    );

    if let Some(client) = reference_client() {
        let dir2 = dir.clone();
        let node2 = node.clone();
        let out = tokio::task::spawn_blocking(move || {
            reference(
                &client,
                &[
                    "--btc-regtest",
                    "--bitcoin-node",
                    &node2,
                    "verify",
                    "a.txt.ots",
                ],
                &dir2,
            )
        })
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(0), "reference: {}", stderr(&out));
        assert!(
            stderr(&out).contains("Success! Bitcoin block"),
            "{}",
            stderr(&out)
        );
    } else {
        eprintln!("{REFERENCE_SKIPPED}");
    }
    chain.shutdown().await;
}
