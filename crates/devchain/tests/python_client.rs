//! Interoperability with the reference OpenTimestamps client: `ots verify`
//! (PyPI `opentimestamps-client`) must accept devchain as its Bitcoin node.
//! Runs when `OTS_REFERENCE_CLIENT` names that client's `ots` executable
//! (as for the other interop tests; `.ci/run` sets it); otherwise prints
//! that it was skipped.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use bitcoin::consensus::encode::{deserialize_hex, serialize};
use bitcoin::hashes::{sha256, Hash};
use bitcoin::Block;
use common::Client;
use devchain::{DevChain, DevChainConfig};
use serde_json::json;
use wait_timeout::ChildExt;

/// Longest the Python client may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
/// `.ots` header: magic, then major version 1.
const OTS_MAGIC: &[u8] = b"\x00OpenTimestamps\x00\x00Proof\x00\xbf\x89\xe2\xe8\x84\xe8\x92\x94";
/// Bitcoin block header attestation tag.
const BITCOIN_TAG: [u8; 8] = [0x05, 0x88, 0x96, 0x0d, 0x73, 0xd7, 0x19, 0x01];

fn find_ots() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("OTS_REFERENCE_CLIENT")?);
    assert!(
        path.is_file(),
        "OTS_REFERENCE_CLIENT is not a file: {}",
        path.display()
    );
    Some(path)
}

fn varuint(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn varbytes(b: &[u8], out: &mut Vec<u8>) {
    varuint(b.len() as u64, out);
    out.extend_from_slice(b);
}

#[test]
fn python_ots_client_verifies_against_devchain() {
    let Some(ots) = find_ots() else {
        println!("skipped: set OTS_REFERENCE_CLIENT to opentimestamps-client's `ots` to run it");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = DevChainConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        rpc_password: Some("pass".into()),
        prefund: true,
        ..Default::default()
    };
    let dc = rt.block_on(DevChain::start(cfg)).unwrap();
    let c = Client {
        addr: dc.addr(),
        user: dc.user().into(),
        password: dc.password().into(),
        path: "/".into(),
    };

    // The stamped file and the commitment m = sha256(digest || nonce) put in an OP_RETURN.
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, b"devchain interop test\n").unwrap();
    let digest = sha256::Hash::hash(&std::fs::read(&file).unwrap()).to_byte_array();
    let nonce = [0x42u8; 16];
    let m = sha256::Hash::hash(&[&digest[..], &nonce[..]].concat()).to_byte_array();
    let u = c.call("listunspent", json!([]))[0].clone();
    let change = c.call("getrawchangeaddress", json!([]));
    let raw = c.call("createrawtransaction", json!([[{"txid": u["txid"], "vout": u["vout"]}], [{"data": hex::encode(m)}, {change.as_str().unwrap(): 49.999}]]));
    let signed = c.call("signrawtransactionwithwallet", json!([raw]));
    let txid = c.call("sendrawtransaction", json!([signed["hex"]]));
    let addr = c.call("getnewaddress", json!([]));
    let bh = c.call("generateblock", json!([addr, [txid]]))["hash"].clone();
    let block: Block =
        deserialize_hex(c.call("getblock", json!([bh, 0])).as_str().unwrap()).unwrap();
    let height = c.call("getblockheader", json!([bh]))["height"]
        .as_u64()
        .unwrap();
    assert_eq!(block.txdata.len(), 2);

    // Path: digest -> m -> txid (non-witness serialisation) -> merkle root.
    let mut stripped = block.txdata[1].clone();
    for i in &mut stripped.input {
        i.witness.clear();
    }
    let tx_bytes = serialize(&stripped);
    let at = tx_bytes
        .windows(32)
        .position(|w| w == m)
        .expect("commitment in tx");
    let (prefix, suffix) = (&tx_bytes[..at], &tx_bytes[at + 32..]);
    let cb_txid = block.txdata[0].compute_txid().to_byte_array();
    let mut proof = OTS_MAGIC.to_vec();
    proof.push(0x01);
    proof.push(0x08);
    proof.extend_from_slice(&digest);
    proof.push(0xf0);
    varbytes(&nonce, &mut proof);
    proof.push(0x08);
    proof.push(0xf1);
    varbytes(prefix, &mut proof);
    proof.push(0xf0);
    varbytes(suffix, &mut proof);
    proof.extend_from_slice(&[0x08, 0x08]);
    proof.push(0xf1);
    varbytes(&cb_txid, &mut proof);
    proof.extend_from_slice(&[0x08, 0x08]);
    proof.push(0x00);
    proof.extend_from_slice(&BITCOIN_TAG);
    let mut payload = Vec::new();
    varuint(height, &mut payload);
    varbytes(&payload, &mut proof);
    let ots_path = dir.path().join("hello.txt.ots");
    std::fs::write(&ots_path, &proof).unwrap();

    // Sanity: our own evaluation of the path reaches the merkle root.
    let txid_bytes =
        bitcoin::hashes::sha256d::Hash::hash(&[prefix, &m[..], suffix].concat()).to_byte_array();
    let root = bitcoin::hashes::sha256d::Hash::hash(&[&cb_txid[..], &txid_bytes[..]].concat())
        .to_byte_array();
    assert_eq!(root, block.header.merkle_root.to_byte_array());

    let node = format!("http://devchain:pass@{}/", dc.addr());
    let mut child = Command::new(&ots)
        .args(["--btc-regtest", "--bitcoin-node", &node, "verify"])
        .arg(&ots_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ots");
    let status = match child.wait_timeout(CLIENT_TIMEOUT).unwrap() {
        Some(s) => s,
        None => {
            let _ = child.kill();
            panic!("ots verify did not finish in {CLIENT_TIMEOUT:?}");
        }
    };
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("ots verify output: {text}");
    assert!(status.success(), "ots verify failed: {text}");
    assert!(
        text.contains(&format!("Bitcoin block {height} attests")),
        "{text}"
    );
    rt.block_on(dc.shutdown());
}
