//! The data directory's durability: a failed block write (a full disk,
//! injected through the store's `BlockLog`) is reported to the RPC caller
//! as Core's `RPC_DATABASE_ERROR` and written again by the next call, so a
//! restart loses no block; a torn last record, at every length, is cut back
//! at open and the records before it kept; files holding secrets are 0600.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bitcoin::ScriptBuf;
use devchain::chain::store::{BlockLog, Store, BLOCKS_FILE, STATE_FILE};
use devchain::rpc::{process, Node};
use devchain::wallet::AddressType;
use devchain::{Chain, DevChain, DevChainConfig};
use serde_json::{json, Value};

/// Core's `RPC_DATABASE_ERROR`.
const RPC_DATABASE_ERROR: i64 = -20;

/// Failures to inject, shared between a test and its log.
#[derive(Debug, Default)]
struct Faults {
    /// Appends left to fail, each after writing half of its buffer.
    appends: AtomicUsize,
    /// Syncs left to fail.
    syncs: AtomicUsize,
    /// Truncations left to fail.
    truncates: AtomicUsize,
}

fn take(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(28)
}

/// The real block log, failing as `faults` says: a failed append leaves
/// half a write on disk, as a disk filling up mid-record does.
#[derive(Debug)]
struct FaultyLog {
    file: File,
    faults: Arc<Faults>,
}

impl BlockLog for FaultyLog {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        if take(&self.faults.appends) {
            self.file.write_all(&buf[..buf.len() / 2])?;
            return Err(enospc());
        }
        self.file.write_all(buf)
    }

    fn sync(&mut self) -> io::Result<()> {
        if take(&self.faults.syncs) {
            return Err(enospc());
        }
        self.file.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        if take(&self.faults.truncates) {
            return Err(enospc());
        }
        self.file.set_len(len)?;
        self.file.sync_all()
    }
}

fn open_faulty(dir: &Path) -> (Store, Chain, Arc<Faults>) {
    let faults = Arc::new(Faults::default());
    let f = faults.clone();
    let (store, chain) =
        Store::open_with(dir, move |file| Box::new(FaultyLog { file, faults: f })).unwrap();
    (store, chain, faults)
}

fn mining_script(chain: &mut Chain) -> ScriptBuf {
    if chain.wallet("w").is_none() {
        chain.create_wallet("w", None).unwrap();
    }
    chain
        .new_address("w", AddressType::Bech32, false, "")
        .unwrap()
        .script_pubkey()
}

/// One JSON-RPC 1.0 call through the server's request handler.
fn call(node: &Node, method: &str, params: Value) -> (u16, Value) {
    let body = json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params}).to_string();
    let (status, reply) = process(node, body.as_bytes(), None);
    let reply = reply.expect("a reply");
    (
        status.as_u16(),
        serde_json::from_str(&reply.to_text()).unwrap(),
    )
}

#[test]
fn a_failed_write_is_reported_then_retried_and_no_block_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, mut chain, faults) = open_faulty(dir.path());
    let script = mining_script(&mut chain);
    chain.generate(101, &script).unwrap();
    store.persist(&mut chain).unwrap();
    let address = chain
        .new_address("w", AddressType::Bech32, false, "")
        .unwrap()
        .to_string();
    let node = Node::new(chain, Some(store));
    let log_len = || {
        std::fs::metadata(dir.path().join(BLOCKS_FILE))
            .unwrap()
            .len()
    };
    let before = log_len();

    // The disk fills up in the middle of the next record.
    faults.appends.store(1, Ordering::SeqCst);
    let (status, reply) = call(&node, "generatetoaddress", json!([2, address]));
    assert_eq!(status, 500, "{reply}");
    assert_eq!(reply["error"]["code"], json!(RPC_DATABASE_ERROR), "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.contains(BLOCKS_FILE), "{message}");
    assert!(message.contains("No space left on device"), "{message}");
    assert_eq!(log_len(), before, "the torn half record was not cut back");

    // Space again: the next call writes the two blocks it kept.
    let (status, reply) = call(&node, "getblockcount", json!([]));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["result"], json!(103));
    let (status, reply) = call(&node, "generatetoaddress", json!([2, address]));
    assert_eq!(status, 200, "{reply}");
    assert!(log_len() > before);
    let tip = node.with_chain(|c| c.state().tip().hash);
    drop(node);

    let (_, reopened) = Store::open(dir.path()).unwrap();
    assert_eq!(reopened.state().height(), 105);
    assert_eq!(reopened.state().tip().hash, tip);
}

#[test]
fn failed_syncs_and_truncations_lose_nothing_and_leave_no_torn_record() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, mut chain, faults) = open_faulty(dir.path());
    let script = mining_script(&mut chain);
    chain.generate(3, &script).unwrap();
    store.persist(&mut chain).unwrap();

    // fsync fails: the written records are cut back and written again.
    chain.generate(2, &script).unwrap();
    faults.syncs.store(1, Ordering::SeqCst);
    assert!(store.persist(&mut chain).is_err());
    assert_eq!(chain.journal().blocks.len(), 2, "pending blocks forgotten");

    // The append tears a record and the cut-back fails too: the next
    // persist fails at the cut-back (nothing appended after the tear), the
    // one after cuts and writes.
    chain.generate(1, &script).unwrap();
    faults.appends.store(1, Ordering::SeqCst);
    faults.truncates.store(2, Ordering::SeqCst);
    assert!(store.persist(&mut chain).is_err());
    assert!(store.persist(&mut chain).is_err());
    assert_eq!(chain.journal().blocks.len(), 3);
    store.persist(&mut chain).unwrap();
    assert!(chain.journal().blocks.is_empty());
    assert!(!chain.journal().dirty);
    let tip = chain.state().tip().hash;
    drop(store);

    let (_, reopened) = Store::open(dir.path()).unwrap();
    assert_eq!(reopened.state().height(), 6);
    assert_eq!(reopened.state().tip().hash, tip);
}

#[test]
fn a_torn_last_record_of_any_length_is_cut_back_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, mut chain) = Store::open(dir.path()).unwrap();
    // No wallet, so the hundreds of reopens below stay quick.
    let script = ScriptBuf::from(vec![0x51]);
    chain.generate(2, &script).unwrap();
    store.persist(&mut chain).unwrap();
    let kept_tip = chain.state().tip().hash;
    let kept_len = std::fs::metadata(dir.path().join(BLOCKS_FILE))
        .unwrap()
        .len() as usize;
    chain.generate(1, &script).unwrap();
    store.persist(&mut chain).unwrap();
    drop(store);
    let full = std::fs::read(dir.path().join(BLOCKS_FILE)).unwrap();
    assert!(full.len() > kept_len + 8);

    for cut in kept_len..full.len() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(BLOCKS_FILE);
        std::fs::write(&path, &full[..cut]).unwrap();
        let (mut store, mut c) =
            Store::open(d.path()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(c.state().height(), 2, "cut at {cut}");
        assert_eq!(c.state().tip().hash, kept_tip, "cut at {cut}");
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, kept_len);
        // The log goes on from the cut: a new block survives a reopen.
        c.generate(1, &script).unwrap();
        store.persist(&mut c).unwrap();
        drop(store);
        let (_, again) = Store::open(d.path()).unwrap();
        assert_eq!(again.state().height(), 3, "cut at {cut}");
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_cookie_and_the_state_file_are_readable_by_their_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    // A world-readable temp file left by a crash must not lend its mode.
    let stale = dir.path().join(STATE_FILE).with_extension("tmp");
    std::fs::write(&stale, b"").unwrap();
    std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o644)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dc = DevChain::start(DevChainConfig {
            data_dir: Some(dir.path().to_path_buf()),
            bind: "127.0.0.1:0".parse().unwrap(),
            prefund: true,
            ..DevChainConfig::default()
        })
        .await
        .unwrap();
        let cookie = dc.cookie_path().unwrap().to_path_buf();
        assert_eq!(mode(&cookie), 0o600);
        assert_eq!(mode(&dir.path().join(STATE_FILE)), 0o600);
        dc.shutdown().await;
    });
}
