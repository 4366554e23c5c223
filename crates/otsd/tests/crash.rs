//! Crash test: a child `otsd` under concurrent POST load is killed with
//! SIGKILL at random moments; after each restart every commitment named in
//! a 200 reply must be in the journal, and the restarted server must know
//! it as pending.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use otsd::journal::JournalReader;
use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::process::Child;

const KILLS: usize = 24;
const CLIENTS: usize = 16;

/// Starts `otsd` on an ephemeral port; returns it and its address (read
/// from its "listening on" log line).
async fn start(cal: &Path) -> (Child, SocketAddr) {
    let mut args = vec![std::ffi::OsString::from("-c"), cal.into()];
    args.extend(
        ["--rpc-address", "127.0.0.1", "--rpc-port", "0"]
            .into_iter()
            .chain(["--aggregation-interval", "20", "--no-bitcoin"])
            .map(Into::into),
    );
    spawn_otsd(args).await
}

/// One POST; `None` on any transport failure (the server may be dying).
async fn try_post(addr: SocketAddr, digest: &[u8]) -> Option<Resp> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(&post_request(digest)).await.ok()?;
    read_response(&mut s).await
}

fn journal_set(cal: &Path) -> HashSet<Vec<u8>> {
    JournalReader::open(cal)
        .unwrap()
        .read_range(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|r| r.to_vec())
        .collect()
}

fn assert_all_journaled(cal: &Path, acked: &[Vec<u8>], after: usize) {
    let journal = journal_set(cal);
    for c in acked {
        assert!(
            journal.contains(c),
            "after kill {after}: acknowledged commitment {} missing from the journal",
            hex::encode(c)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_never_loses_an_acknowledged_commitment() {
    let dir = tempfile::tempdir().unwrap();
    let cal = dir.path().join("calendar");
    let init = std::process::Command::new(env!("CARGO_BIN_EXE_otsd"))
        .arg("-c")
        .arg(&cal)
        .args(["init", "--uri", URI])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );

    let acked: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    for kill in 0..=KILLS {
        let (mut child, addr) = start(&cal).await;
        // Recovered: everything acknowledged before the kill is there...
        let so_far = acked.lock().unwrap().clone();
        assert_all_journaled(&cal, &so_far, kill);
        // ... and the restarted server knows it as pending.
        if let Some(c) = so_far.last() {
            let r = get(addr, &format!("/timestamp/{}", hex::encode(c)), "").await;
            assert_eq!(r.text(), "Pending confirmation in Bitcoin blockchain");
        }
        if kill == KILLS {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
            break;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (stop, acked) = (stop.clone(), acked.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let digest = random_digest();
                        match try_post(addr, &digest).await {
                            Some(r) if r.status == 200 => {
                                let c = check_proof(&digest, &r.body);
                                acked.lock().unwrap().push(c);
                            }
                            Some(r) => panic!("unexpected {} {}", r.status, r.text()),
                            None => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                })
            })
            .collect();
        let delay = rand::thread_rng().gen_range(30..400);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        child.start_kill().unwrap(); // SIGKILL
        child.wait().await.unwrap();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.await.unwrap();
        }
    }
    let acked = acked.lock().unwrap();
    assert!(
        !acked.is_empty(),
        "the load produced acknowledged commitments"
    );
    assert_all_journaled(&cal, &acked, KILLS);
    eprintln!(
        "{} acknowledged commitments survived {KILLS} SIGKILLs",
        acked.len()
    );
}
