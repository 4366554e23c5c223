//! Runs one RPC sequence against devchain and against a real `bitcoind`
//! (named by `BITCOIND_EXE`) and compares reply shapes: every field Bitcoin
//! Core returns must come back from devchain with the same JSON type.
//! A second sequence compares values where the calendar relies on them:
//! error codes, the unsigned reply for a spent input, `estimatesmartfee`
//! without and with data, `invalidateblock`/`reconsiderblock`.
//! Prints a skip notice when `BITCOIND_EXE` is unset.

mod common;

use devchain::rpc::params::type_name;

use common::Client;
use devchain::{DevChain, DevChainConfig};
use serde_json::{json, Value};
use test_support::bitcoind::{self, Bitcoind, Credentials, Options};

/// Compares `core` (reference) against `dev`; collects mismatches.
fn compare(path: &str, core: &Value, dev: &Value, out: &mut Vec<String>) {
    if type_name(core) != type_name(dev) && !core.is_null() {
        out.push(format!(
            "{path}: core {} vs devchain {}",
            type_name(core),
            type_name(dev)
        ));
        return;
    }
    match (core, dev) {
        (Value::Object(c), Value::Object(d)) => {
            for (k, cv) in c {
                match d.get(k) {
                    Some(dv) => compare(&format!("{path}.{k}"), cv, dv, out),
                    None => out.push(format!("{path}.{k}: missing in devchain")),
                }
            }
            for k in d.keys().filter(|k| !c.contains_key(*k)) {
                println!("note: {path}.{k} only in devchain");
            }
        }
        (Value::Array(c), Value::Array(d)) => {
            // Every element both sides have, not only the first: the
            // entries of one reply can differ in shape (e.g. the `send` and
            // `receive` rows of `gettransaction.details`).
            if c.len() != d.len() {
                println!(
                    "note: {path} has {} elements in core, {} in devchain",
                    c.len(),
                    d.len()
                );
            }
            for (i, (cv, dv)) in c.iter().zip(d).enumerate() {
                compare(&format!("{path}[{i}]"), cv, dv, out);
            }
        }
        _ => {}
    }
}

/// The shared RPC sequence; returns (label, reply) pairs.
fn sequence(c: &Client) -> Vec<(String, Value)> {
    let mut r = Vec::new();
    let mut push = |label: &str, v: Value| r.push((label.to_string(), v));
    let w = c.wallet("cmp");
    w.call("createwallet", json!(["cmp"]));
    let addr = w.call("getnewaddress", json!([]));
    let change = w.call("getrawchangeaddress", json!([]));
    w.call("generatetoaddress", json!([101, addr]));
    push("getblockchaininfo", w.call("getblockchaininfo", json!([])));
    let best = w.call("getbestblockhash", json!([]));
    push("getblockheader", w.call("getblockheader", json!([best])));
    push("getblock1", w.call("getblock", json!([best, 1])));
    push("getblock2", w.call("getblock", json!([best, 2])));
    push("getaddressinfo", w.call("getaddressinfo", json!([addr])));
    push("getbalances", w.call("getbalances", json!([])));
    push("getwalletinfo", w.call("getwalletinfo", json!([])));
    let utxos = w.call("listunspent", json!([]));
    push("listunspent", utxos.clone());
    let u = &utxos[0];
    let raw = w.call("createrawtransaction", json!([[{"txid": u["txid"], "vout": u["vout"]}], [{addr.as_str().unwrap(): 1}, {change.as_str().unwrap(): 48.9999}]]));
    push(
        "decoderawtransaction",
        w.call("decoderawtransaction", json!([raw])),
    );
    let signed = w.call("signrawtransactionwithwallet", json!([raw]));
    push("signrawtransactionwithwallet", signed.clone());
    push(
        "testmempoolaccept",
        w.call("testmempoolaccept", json!([[signed["hex"]]])),
    );
    let txid = w.call("sendrawtransaction", json!([signed["hex"]]));
    push("getmempoolentry", w.call("getmempoolentry", json!([txid])));
    // `getrawmempool true` is keyed by txid, and the txids differ between
    // the two nodes: compare the entry under this run's own txid.
    let pool = w.call("getrawmempool", json!([true]));
    let pool = pool.as_object().expect("getrawmempool true: an object");
    assert_eq!(pool.len(), 1, "getrawmempool true: one entry");
    let entry = pool
        .get(txid.as_str().unwrap())
        .cloned()
        .expect("getrawmempool true: keyed by the sent txid");
    push("getrawmempool_verbose[txid]", entry);
    push(
        "gettransaction_unconfirmed",
        w.call("gettransaction", json!([txid])),
    );
    push("estimatesmartfee", w.call("estimatesmartfee", json!([6])));
    push(
        "error_getblockhash",
        json!(w.err("getblockhash", json!([100000]))),
    );
    let orphan = w.call(
        "createrawtransaction",
        json!([[{"txid": "11".repeat(32), "vout": 0}], [{addr.as_str().unwrap(): 1}]]),
    );
    push(
        "error_missing_inputs",
        json!(w.err("sendrawtransaction", json!([orphan]))),
    );
    w.call("generatetoaddress", json!([1, addr]));
    push(
        "getrawtransaction",
        w.call("getrawtransaction", json!([txid, true])),
    );
    push("gettxout", w.call("gettxout", json!([txid, 0])));
    push("gettransaction", w.call("gettransaction", json!([txid])));
    push("listtransactions", w.call("listtransactions", json!([])));
    push("getchaintips", w.call("getchaintips", json!([])));
    r
}

fn devchain_replies() -> Vec<(String, Value)> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = DevChainConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        rpc_password: Some("p".into()),
        rpc_user: "u".into(),
        ..Default::default()
    };
    let dc = rt.block_on(DevChain::start(cfg)).unwrap();
    let dev = Client {
        addr: dc.addr(),
        user: "u".into(),
        password: "p".into(),
        path: "/".into(),
    };
    let replies = sequence(&dev);
    rt.block_on(dc.shutdown());
    replies
}

#[test]
fn reply_shapes_match_bitcoind() {
    // The devchain half always runs, so the sequence itself stays exercised.
    let dev_replies = devchain_replies();
    assert_eq!(dev_replies.len(), 22);
    let Some(exe) = bitcoind::exe() else {
        println!("skipped: BITCOIND_EXE is not set (point it at a bitcoind binary to compare reply shapes)");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut node = rt.block_on(Bitcoind::start(
        exe,
        Options {
            credentials: Credentials::user_password("u", "p"),
            args: vec!["-txindex=1".into(), "-fallbackfee=0.0002".into()],
            ..Options::default()
        },
    ));
    let core = Client {
        addr: node.rpc_addr(),
        user: "u".into(),
        password: "p".into(),
        path: "/".into(),
    };
    let core_replies = sequence(&core);
    rt.block_on(node.stop());
    let mut mismatches = Vec::new();
    for ((label, c), (_, d)) in core_replies.iter().zip(&dev_replies) {
        compare(label, c, d, &mut mismatches);
    }
    assert!(
        mismatches.is_empty(),
        "shape mismatches:\n{}",
        mismatches.join("\n")
    );
}

/// Labelled replies.
type Replies = Vec<(String, Value)>;

/// A raw transaction spending `input` (txid, vout) to `addr`, paying
/// `fee_sat` from `value` BTC.
fn spend(w: &Client, input: (&Value, &Value), value: f64, addr: &str, fee_sat: u64) -> Value {
    let out = ((value * 1e8).round() as u64 - fee_sat) as f64 / 1e8;
    w.call(
        "createrawtransaction",
        json!([[{"txid": input.0, "vout": input.1}], [{addr: out}]]),
    )
}

/// Error `[code, message]` of a call expected to fail.
fn error_of(w: &Client, method: &str, params: Value) -> Value {
    let (_, code, message) = w.err(method, params);
    json!([code, message])
}

/// The second sequence: (label, reply) pairs whose values, not only
/// shapes, must agree (each already reduced to what must be equal).
fn edge_sequence(c: &Client) -> (Replies, Replies) {
    let mut equal = Vec::new();
    let mut shaped = Vec::new();
    let w = c.wallet("edge");
    w.call("createwallet", json!(["edge"]));
    let addr = w.call("getnewaddress", json!([]));
    let addr = addr.as_str().unwrap();
    w.call("generatetoaddress", json!([101, addr]));
    equal.push((
        "estimatesmartfee without data".into(),
        w.call("estimatesmartfee", json!([6])),
    ));
    let utxos = w.call("listunspent", json!([]));
    let u = &utxos[0];
    let (txid, vout, value) = (&u["txid"], &u["vout"], u["amount"].as_f64().unwrap());
    // A, then B spending the same output for a lower fee: refused as a
    // replacement (the stamper reads -26 with "fee" as a fee problem).
    let a = spend(&w, (txid, vout), value, addr, 10_000);
    let a = w.call("signrawtransactionwithwallet", json!([a]))["hex"].clone();
    let a_txid = w.call("sendrawtransaction", json!([a]));
    let b = spend(&w, (txid, vout), value, addr, 5_000);
    let b = w.call("signrawtransactionwithwallet", json!([b]))["hex"].clone();
    let low = error_of(&w, "sendrawtransaction", json!([b]));
    equal.push((
        "sendrawtransaction replacement paying less: code, says fee".into(),
        json!([low[0], low[1].as_str().unwrap().contains("fee")]),
    ));
    let tried = w.call("testmempoolaccept", json!([[b]]));
    equal.push((
        "testmempoolaccept replacement paying less".into(),
        json!([tried[0]["allowed"], tried[0]["reject-reason"]]),
    ));
    w.call("generatetoaddress", json!([1, addr]));
    let again = error_of(&w, "sendrawtransaction", json!([a]));
    equal.push(("sendrawtransaction of a mined one".into(), again));
    // The output A spent, now spent in the chain.
    let unsigned = spend(&w, (txid, vout), value, addr, 20_000);
    let signed = w.call("signrawtransactionwithwallet", json!([unsigned]));
    equal.push((
        "signrawtransactionwithwallet of a spent output".into(),
        json!([signed["complete"], signed["errors"][0]["error"]]),
    ));
    shaped.push((
        "signrawtransactionwithwallet of a spent output".into(),
        signed.clone(),
    ));
    let tried = w.call("testmempoolaccept", json!([[b]]));
    equal.push((
        "testmempoolaccept of a spent output".into(),
        json!([tried[0]["allowed"], tried[0]["reject-reason"]]),
    ));
    equal.push((
        "sendrawtransaction of a spent output".into(),
        error_of(&w, "sendrawtransaction", json!([b])),
    ));
    equal.push((
        "gettxout of a spent output".into(),
        w.call("gettxout", json!([txid, vout])),
    ));
    shaped.push((
        "generateblock".into(),
        w.call("generateblock", json!([addr, []])),
    ));
    // A's block (below the empty one) invalidated: A is back in the
    // mempool; reconsidered: mined again.
    let height = w.call("getblockcount", json!([])).as_u64().unwrap();
    let a_block = w.call("getblockhash", json!([height - 1]));
    equal.push((
        "invalidateblock".into(),
        w.call("invalidateblock", json!([a_block])),
    ));
    let after = w.call("getblockcount", json!([])).as_u64().unwrap();
    let pool = w.call("getrawmempool", json!([]));
    equal.push((
        "after invalidateblock: height drop, A in the mempool".into(),
        json!([height - after, pool.as_array().unwrap().contains(&a_txid)]),
    ));
    equal.push((
        "reconsiderblock".into(),
        w.call("reconsiderblock", json!([a_block])),
    ));
    let back = w.call("getblockcount", json!([])).as_u64().unwrap();
    let pool = w.call("getrawmempool", json!([]));
    equal.push((
        "after reconsiderblock: height, mempool".into(),
        json!([back == height, pool]),
    ));
    // Data for the estimator: a dozen blocks of five payments each, at
    // 4 to 8 sat/vB.
    for _ in 0..12 {
        for rate in 4..9 {
            w.call(
                "sendtoaddress",
                json!([addr, 0.1, "", "", false, true, null, "unset", null, rate]),
            );
        }
        w.call("generatetoaddress", json!([1, addr]));
    }
    for target in [1, 2, 6] {
        let e = w.call("estimatesmartfee", json!([target]));
        equal.push((
            format!("estimatesmartfee {target} with data: answers"),
            json!([e["feerate"].is_number(), e.get("errors").is_some()]),
        ));
        shaped.push((format!("estimatesmartfee {target} with data"), e));
    }
    (equal, shaped)
}

fn devchain_edge_replies() -> (Replies, Replies) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = DevChainConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        rpc_password: Some("p".into()),
        rpc_user: "u".into(),
        ..Default::default()
    };
    let dc = rt.block_on(DevChain::start(cfg)).unwrap();
    let dev = Client {
        addr: dc.addr(),
        user: "u".into(),
        password: "p".into(),
        path: "/".into(),
    };
    let replies = edge_sequence(&dev);
    rt.block_on(dc.shutdown());
    replies
}

#[test]
fn error_codes_and_edge_replies_match_bitcoind() {
    let (dev_equal, dev_shaped) = devchain_edge_replies();
    let Some(exe) = bitcoind::exe() else {
        println!(
            "skipped: BITCOIND_EXE is not set (point it at a bitcoind binary to compare replies)"
        );
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut node = rt.block_on(Bitcoind::start(
        exe,
        Options {
            credentials: Credentials::user_password("u", "p"),
            args: vec!["-fallbackfee=0.0002".into()],
            ..Options::default()
        },
    ));
    let core = Client {
        addr: node.rpc_addr(),
        user: "u".into(),
        password: "p".into(),
        path: "/".into(),
    };
    let (core_equal, core_shaped) = edge_sequence(&core);
    rt.block_on(node.stop());
    let mut mismatches = Vec::new();
    assert_eq!(core_equal.len(), dev_equal.len());
    for ((label, c), (_, d)) in core_equal.iter().zip(&dev_equal) {
        println!("{label}: core {c}, devchain {d}");
        if c != d {
            mismatches.push(format!("{label}: core {c} vs devchain {d}"));
        }
    }
    for ((label, c), (_, d)) in core_shaped.iter().zip(&dev_shaped) {
        compare(label, c, d, &mut mismatches);
    }
    assert!(
        mismatches.is_empty(),
        "mismatches:\n{}",
        mismatches.join("\n")
    );
}
