//! Reply shapes and error objects of every RPC devchain serves, checked
//! against Bitcoin Core 28-29's `bitcoin-cli help <method>` field lists
//! (cited per call), over real HTTP on 127.0.0.1.

mod common;

use bitcoin::consensus::encode::deserialize_hex;
use bitcoin::{Block, Transaction};
use common::{assert_shape, http, Client};
use devchain::{DevChain, DevChainConfig};
use serde_json::{json, Value};

fn start(rt: &tokio::runtime::Runtime, dir: &std::path::Path, prefund: bool) -> (DevChain, Client) {
    let cfg = DevChainConfig {
        data_dir: Some(dir.to_path_buf()),
        bind: "127.0.0.1:0".parse().unwrap(),
        rpc_password: Some("pass".into()),
        prefund,
        ..DevChainConfig::default()
    };
    let dc = rt.block_on(DevChain::start(cfg)).unwrap();
    let client = Client {
        addr: dc.addr(),
        user: dc.user().to_string(),
        password: dc.password().to_string(),
        path: "/".into(),
    };
    (dc, client)
}

const TX_KEYS: &[&str] = &[
    "txid", "hash", "version", "size", "vsize", "weight", "locktime", "vin", "vout",
];
const HEADER_KEYS: &[&str] = &[
    "hash",
    "confirmations",
    "height",
    "version",
    "versionHex",
    "merkleroot",
    "time",
    "mediantime",
    "nonce",
    "bits",
    "target",
    "difficulty",
    "chainwork",
    "nTx",
    "previousblockhash",
];

fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(extra).copied().collect()
}

#[test]
fn every_rpc_has_core_reply_shape() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (dc, c) = start(&rt, dir.path(), true);

    // help getblockchaininfo (Core 29)
    let info = c.call("getblockchaininfo", json!([]));
    assert_shape(
        "getblockchaininfo",
        &info,
        &[
            "chain",
            "blocks",
            "headers",
            "bestblockhash",
            "bits",
            "target",
            "difficulty",
            "time",
            "mediantime",
            "verificationprogress",
            "initialblockdownload",
            "chainwork",
            "size_on_disk",
            "pruned",
            "warnings",
        ],
    );
    assert_eq!(info["chain"], "regtest");
    assert_eq!(info["bits"], "207fffff");
    assert!(info["warnings"].is_array());
    assert_eq!(c.call("getblockcount", json!([])), 101);
    let best = c.call("getbestblockhash", json!([]));
    assert_eq!(c.call("getblockhash", json!([101])), best);

    // help getblockheader: verbose object, or 80-byte hex.
    let hdr = c.call("getblockheader", json!([best]));
    assert_shape("getblockheader", &hdr, HEADER_KEYS);
    assert_eq!(hdr["confirmations"], 1);
    let hex_hdr = c.call("getblockheader", json!([best, false]));
    let parsed: bitcoin::block::Header = deserialize_hex(hex_hdr.as_str().unwrap()).unwrap();
    assert_eq!(parsed.block_hash().to_string(), best.as_str().unwrap());
    parsed
        .validate_pow(devchain::chain::block::regtest_target())
        .unwrap();
    let genesis = c.call(
        "getblockheader",
        json!([c.call("getblockhash", json!([0]))]),
    );
    assert!(genesis.get("previousblockhash").is_none());
    assert!(genesis.get("nextblockhash").is_some());

    // Wallet: help getnewaddress / getrawchangeaddress / getaddressinfo.
    let w = c.wallet("devchain");
    let addr = w
        .call("getnewaddress", json!(["lbl"]))
        .as_str()
        .unwrap()
        .to_string();
    assert!(addr.starts_with("bcrt1q"));
    let taddr = w
        .call("getnewaddress", json!({"address_type": "bech32m"}))
        .as_str()
        .unwrap()
        .to_string();
    assert!(taddr.starts_with("bcrt1p"));
    let change = c
        .call("getrawchangeaddress", json!([]))
        .as_str()
        .unwrap()
        .to_string();
    let ai = c.call("getaddressinfo", json!([addr]));
    assert_shape(
        "getaddressinfo",
        &ai,
        &[
            "address",
            "scriptPubKey",
            "ismine",
            "solvable",
            "desc",
            "parent_desc",
            "iswatchonly",
            "isscript",
            "iswitness",
            "witness_version",
            "witness_program",
            "pubkey",
            "ischange",
            "timestamp",
            "hdkeypath",
            "hdseedid",
            "hdmasterfingerprint",
            "labels",
        ],
    );
    assert_eq!(ai["labels"], json!(["lbl"]));
    assert_eq!(c.call("getaddressinfo", json!([change]))["ischange"], true);

    // help getbalance / getbalances / getwalletinfo / listwallets.
    assert_eq!(c.call("getbalance", json!([])).as_f64().unwrap(), 50.0);
    let bals = c.call("getbalances", json!([]));
    assert_shape("getbalances", &bals, &["mine", "lastprocessedblock"]);
    assert_shape(
        "getbalances.mine",
        &bals["mine"],
        &["trusted", "untrusted_pending", "immature"],
    );
    assert_eq!(bals["mine"]["immature"].as_f64().unwrap(), 5000.0);
    let wi = c.call("getwalletinfo", json!([]));
    for k in [
        "walletname",
        "walletversion",
        "format",
        "txcount",
        "keypoolsize",
        "private_keys_enabled",
        "descriptors",
        "lastprocessedblock",
    ] {
        assert!(wi.get(k).is_some(), "getwalletinfo lacks {k}: {wi}");
    }
    // Core master (after 30.0) lists the wallet flags.
    assert_eq!(
        wi["flags"],
        json!(["last_hardened_xpub_cached", "descriptor_wallet"])
    );
    assert_eq!(wi["lastprocessedblock"]["height"], 101);
    assert_eq!(c.call("listwallets", json!([])), json!(["devchain"]));

    // help listunspent
    let utxos = c.call("listunspent", json!([]));
    assert_eq!(utxos.as_array().unwrap().len(), 1);
    let u = &utxos[0];
    assert_shape(
        "listunspent[]",
        u,
        &[
            "txid",
            "vout",
            "address",
            "label",
            "scriptPubKey",
            "amount",
            "confirmations",
            "spendable",
            "solvable",
            "desc",
            "parent_descs",
            "safe",
        ],
    );
    assert_eq!(u["confirmations"], 101);

    // createrawtransaction -> signrawtransactionwithwallet -> testmempoolaccept -> sendrawtransaction.
    let raw = c.call("createrawtransaction", json!([[{"txid": u["txid"], "vout": u["vout"]}], [{addr.clone(): 10}, {change.clone(): 39.9999}]]));
    let decoded = c.call("decoderawtransaction", json!([raw]));
    assert_shape("decoderawtransaction", &decoded, TX_KEYS);
    let signed = c.call("signrawtransactionwithwallet", json!([raw]));
    assert_shape(
        "signrawtransactionwithwallet",
        &signed,
        &["hex", "complete"],
    );
    assert_eq!(signed["complete"], true);
    let tma = c.call("testmempoolaccept", json!([[signed["hex"]]]));
    assert_shape(
        "testmempoolaccept[]",
        &tma[0],
        &["txid", "wtxid", "allowed", "vsize", "fees"],
    );
    assert_shape(
        "testmempoolaccept[].fees",
        &tma[0]["fees"],
        &["base", "effective-feerate", "effective-includes"],
    );
    assert_eq!(tma[0]["allowed"], true);
    let txid = c.call("sendrawtransaction", json!([signed["hex"]]));
    assert_eq!(txid, tma[0]["txid"]);
    // Resending a known transaction returns its txid, as Core does.
    assert_eq!(c.call("sendrawtransaction", json!([signed["hex"]])), txid);
    let tx: Transaction = deserialize_hex(signed["hex"].as_str().unwrap()).unwrap();
    let tma2 = c.call("testmempoolaccept", json!([[signed["hex"]]]));
    assert_shape(
        "testmempoolaccept[] rejected",
        &tma2[0],
        &[
            "txid",
            "wtxid",
            "allowed",
            "reject-reason",
            "reject-details",
        ],
    );
    assert_eq!(tma2[0]["reject-reason"], "txn-already-in-mempool");

    // help getrawmempool / getmempoolentry / getmempoolinfo
    assert_eq!(c.call("getrawmempool", json!([])), json!([txid]));
    let verbose = c.call("getrawmempool", json!([true]));
    let me = c.call("getmempoolentry", json!([txid]));
    assert_eq!(verbose[txid.as_str().unwrap()], me);
    assert_shape(
        "getmempoolentry",
        &me,
        &[
            "vsize",
            "weight",
            "time",
            "height",
            "descendantcount",
            "descendantsize",
            "ancestorcount",
            "ancestorsize",
            "wtxid",
            "chunkweight",
            "fees",
            "depends",
            "spentby",
            "bip125-replaceable",
            "unbroadcast",
        ],
    );
    assert_shape(
        "getmempoolentry.fees",
        &me["fees"],
        &["base", "modified", "ancestor", "descendant", "chunk"],
    );
    assert_eq!(me["fees"]["base"].as_f64().unwrap(), 0.0001);
    // No in-mempool relatives: the transaction is its own chunk.
    assert_eq!(me["fees"]["chunk"], me["fees"]["base"]);
    assert_eq!(me["chunkweight"], me["weight"]);
    assert_eq!(c.call("getmempoolinfo", json!([]))["size"], 1);

    // help gettransaction (unconfirmed).
    let gt = c.call("gettransaction", json!([txid]));
    assert_shape(
        "gettransaction unconfirmed",
        &gt,
        &[
            "amount",
            "fee",
            "confirmations",
            "trusted",
            "txid",
            "wtxid",
            "walletconflicts",
            "mempoolconflicts",
            "time",
            "timereceived",
            "bip125-replaceable",
            "details",
            "hex",
            "lastprocessedblock",
        ],
    );
    assert_eq!(gt["confirmations"], 0);
    assert_eq!(gt["fee"].as_f64().unwrap(), -0.0001);

    // help estimatesmartfee: no data yet.
    let est = c.call("estimatesmartfee", json!([6]));
    assert_shape("estimatesmartfee", &est, &["errors", "blocks"]);
    assert_eq!(
        est["errors"],
        json!(["Insufficient data or no feerate found"])
    );

    // help generatetoaddress / getblock 0,1,2 / getrawtransaction / gettxout.
    let mined = c.call("generatetoaddress", json!([1, addr]));
    let bh = mined[0].clone();
    let b0 = c.call("getblock", json!([bh, 0]));
    let block: Block = deserialize_hex(b0.as_str().unwrap()).unwrap();
    assert!(block.check_merkle_root());
    assert!(block.check_witness_commitment());
    assert_eq!(block.txdata[1], tx);
    let b1 = c.call("getblock", json!([bh]));
    assert_shape(
        "getblock 1",
        &b1,
        &with(HEADER_KEYS, &["strippedsize", "size", "weight", "tx"]),
    );
    assert_eq!(b1["tx"][1], txid);
    let b2 = c.call("getblock", json!([bh, 2]));
    assert_shape(
        "getblock 2 coinbase",
        &b2["tx"][0],
        &with(TX_KEYS, &["hex"]),
    );
    assert_shape(
        "getblock 2 tx",
        &b2["tx"][1],
        &with(TX_KEYS, &["fee", "hex"]),
    );
    assert_shape(
        "vin",
        &b2["tx"][1]["vin"][0],
        &["txid", "vout", "scriptSig", "txinwitness", "sequence"],
    );
    assert_shape(
        "vout",
        &b2["tx"][1]["vout"][0],
        &["value", "n", "scriptPubKey"],
    );
    assert_shape(
        "scriptPubKey",
        &b2["tx"][1]["vout"][0]["scriptPubKey"],
        &["asm", "desc", "hex", "address", "type"],
    );
    let rt_v = c.call("getrawtransaction", json!([txid, true]));
    assert_shape(
        "getrawtransaction verbose",
        &rt_v,
        &with(
            TX_KEYS,
            &["hex", "blockhash", "confirmations", "time", "blocktime"],
        ),
    );
    assert_eq!(rt_v["confirmations"], 1);
    assert_eq!(c.call("getrawtransaction", json!([txid])), signed["hex"]);
    let to = c.call("gettxout", json!([txid, 0]));
    assert_shape(
        "gettxout",
        &to,
        &[
            "bestblock",
            "confirmations",
            "value",
            "scriptPubKey",
            "coinbase",
        ],
    );
    assert!(c.call("gettxout", json!([u["txid"], u["vout"]])).is_null());

    // help gettransaction (confirmed) / listtransactions.
    let gt = c.call("gettransaction", json!([txid]));
    assert_shape(
        "gettransaction confirmed",
        &gt,
        &[
            "amount",
            "fee",
            "confirmations",
            "blockhash",
            "blockheight",
            "blockindex",
            "blocktime",
            "txid",
            "wtxid",
            "walletconflicts",
            "mempoolconflicts",
            "time",
            "timereceived",
            "bip125-replaceable",
            "details",
            "hex",
            "lastprocessedblock",
        ],
    );
    assert_shape(
        "gettransaction.details[]",
        &gt["details"][0],
        &[
            "address",
            "category",
            "amount",
            "label",
            "vout",
            "fee",
            "abandoned",
        ],
    );
    // Received entries carry their parent descriptors (Core 24+) and,
    // in Core master, `abandoned` too.
    assert_shape(
        "gettransaction.details[] received",
        &gt["details"][1],
        &[
            "address",
            "parent_descs",
            "category",
            "amount",
            "label",
            "vout",
            "abandoned",
        ],
    );
    assert_eq!(gt["details"][1]["category"], "receive");
    assert_eq!(gt["lastprocessedblock"]["hash"], bh);
    // help listtransactions: oldest first; Core lists a transaction's sent
    // entries before its received ones, newest first, then reverses.
    let lt = c.call("listtransactions", json!([]));
    let rows = lt.as_array().unwrap();
    assert_eq!(rows.len(), 10);
    let tail: Vec<(&str, &str)> = rows[7..]
        .iter()
        .map(|r| (r["category"].as_str().unwrap(), r["txid"].as_str().unwrap()))
        .collect();
    let coinbase = b1["tx"][0].as_str().unwrap();
    let sent = txid.as_str().unwrap();
    assert_eq!(
        tail,
        vec![("receive", sent), ("send", sent), ("immature", coinbase)]
    );
    let tx_fields = [
        "confirmations",
        "blockhash",
        "blockheight",
        "blockindex",
        "blocktime",
        "txid",
        "wtxid",
        "walletconflicts",
        "mempoolconflicts",
        "time",
        "timereceived",
        "bip125-replaceable",
    ];
    assert_shape(
        "listtransactions[] send",
        &rows[8],
        &with(
            &[
                "address",
                "category",
                "amount",
                "label",
                "vout",
                "fee",
                "abandoned",
            ],
            &tx_fields,
        ),
    );
    assert_shape(
        "listtransactions[] immature",
        &rows[9],
        &with(
            &[
                "address",
                "parent_descs",
                "category",
                "amount",
                "label",
                "vout",
                "abandoned",
                "generated",
            ],
            &tx_fields,
        ),
    );
    // count/skip: the two rows before the newest, oldest first.
    let page = c.call("listtransactions", json!(["*", 2, 1]));
    assert_eq!(page, json!([rows[7], rows[8]]));
    // A label keeps only received entries with it (the block above paid
    // the labelled address too).
    let labelled = c.call("listtransactions", json!(["lbl"]));
    let cats: Vec<&str> = labelled
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["category"].as_str().unwrap())
        .collect();
    assert_eq!(cats, vec!["receive", "immature"]);
    let (_, code, msg) = c.err("listtransactions", json!([""]));
    assert_eq!(code, -8);
    assert_eq!(msg, "Label argument must be a valid label name or \"*\".");

    // help invalidateblock / reconsiderblock / getchaintips.
    assert!(c.call("invalidateblock", json!([bh])).is_null());
    assert_eq!(c.call("getblockcount", json!([])), 101);
    assert_eq!(c.call("getrawmempool", json!([])), json!([txid]));
    assert!(c.call("reconsiderblock", json!([bh])).is_null());
    assert_eq!(c.call("getbestblockhash", json!([])), bh);
    assert_shape(
        "getchaintips[]",
        &c.call("getchaintips", json!([]))[0],
        &["height", "hash", "branchlen", "status"],
    );

    // help createwallet / loadwallet; wallet endpoint resolution.
    assert_eq!(
        c.call("createwallet", json!(["second"])),
        json!({"name": "second"})
    );
    assert_eq!(c.err("getbalance", json!([])).1, -19);
    assert_eq!(
        c.wallet("second")
            .call("getbalance", json!([]))
            .as_f64()
            .unwrap(),
        0.0
    );
    assert_eq!(c.wallet("nope").err("getbalance", json!([])).1, -18);
    assert_eq!(c.err("loadwallet", json!(["second"])).1, -35);
    assert_eq!(c.err("createwallet", json!(["second"])).1, -4);
    assert_eq!(
        c.wallet("second").call("unloadwallet", json!([])),
        json!({})
    );
    assert_eq!(
        c.call("loadwallet", json!(["second"])),
        json!({"name": "second"})
    );
    assert_eq!(c.err("loadwallet", json!(["missing"])).1, -18);

    rt.block_on(dc.shutdown());
}

#[test]
fn errors_match_core_codes_and_http_status() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (dc, c) = start(&rt, dir.path(), true);
    let auth = Some(("devchain", "pass"));

    let (status, body) = http(c.addr, "POST", "/", auth, "{not json");
    assert_eq!(status, 500);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32700);
    assert_eq!(c.err("nosuchmethod", json!([])).0, 404);
    assert_eq!(c.err("nosuchmethod", json!([])).1, -32601);
    let (status, body) = http(c.addr, "POST", "/", auth, r#"{"id":1,"method":5}"#);
    assert_eq!(status, 400);
    assert!(body.contains("-32600"));
    assert_eq!(c.err("getblockhash", json!(["x"])).1, -3);
    assert_eq!(
        c.err("getblockhash", json!([1000])),
        (500, -8, "Block height out of range".into())
    );
    assert_eq!(c.err("getblockhash", json!([])).1, -1);
    assert_eq!(
        c.err("getblockhash", json!({"height": 1, "bogus": 2})).1,
        -8
    );
    assert_eq!(
        c.err("getblock", json!(["abc"])).2,
        "blockhash must be of length 64 (not 3, for 'abc')"
    );
    assert_eq!(c.err("getblock", json!(["00".repeat(32)])).1, -5);
    assert_eq!(c.err("sendrawtransaction", json!(["zz"])).1, -22);
    assert_eq!(c.err("getmempoolentry", json!(["11".repeat(32)])).1, -5);
    assert_eq!(c.err("getrawtransaction", json!(["11".repeat(32)])).1, -5);
    assert_eq!(c.err("estimatesmartfee", json!([0])).1, -8);
    assert_eq!(c.err("generatetoaddress", json!([1, "notanaddress"])).1, -5);
    assert_eq!(c.err("getnewaddress", json!(["", "legacy"])).1, -12);

    // Mempool policy errors through RPC: -25 missing inputs, -26 low fee and RBF.
    let u = c.call("listunspent", json!([]))[0].clone();
    let dest = c
        .call("getnewaddress", json!([]))
        .as_str()
        .unwrap()
        .to_string();
    let missing = c.call(
        "createrawtransaction",
        json!([[{"txid": "22".repeat(32), "vout": 0}], [{dest.clone(): 1}]]),
    );
    let (_, code, msg) = c.err("sendrawtransaction", json!([missing]));
    assert_eq!(
        (code, msg.as_str()),
        (-25, "bad-txns-inputs-missingorspent")
    );
    let sign = |amount: f64, seq: u32| {
        let raw = c.call("createrawtransaction", json!([[{"txid": u["txid"], "vout": u["vout"], "sequence": seq}], [{dest.clone(): amount}]]));
        c.call("signrawtransactionwithwallet", json!([raw]))["hex"].clone()
    };
    let (_, code, msg) = c.err(
        "sendrawtransaction",
        json!([sign(49.99999999, 0xffff_fffd)]),
    );
    assert_eq!(code, -26);
    assert!(msg.starts_with("min relay fee not met, "), "{msg}");
    c.call("sendrawtransaction", json!([sign(49.9999, 0xffff_fffd)]));
    let (_, code, msg) = c.err("sendrawtransaction", json!([sign(49.9999, 0xffff_fffe)]));
    assert_eq!(code, -26);
    assert!(
        msg.starts_with("insufficient fee, rejecting replacement "),
        "{msg}"
    );
    let (_, code, msg) = c.err("sendrawtransaction", json!([sign(40.0, 0xffff_fffe)]));
    assert_eq!(
        (code, msg.as_str()),
        (
            -25,
            "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)"
        )
    );
    let replacement = c.call("sendrawtransaction", json!([sign(49.999, 0xffff_fffe)]));
    assert_eq!(c.call("getrawmempool", json!([])), json!([replacement]));

    // Batch and JSON-RPC 2.0.
    let (status, body) = http(
        c.addr,
        "POST",
        "/",
        auth,
        r#"[{"id":1,"method":"getblockcount"},{"id":2,"method":"nosuch"}]"#,
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["result"], 101);
    assert_eq!(v[1]["error"]["code"], -32601);
    let (status, body) = http(
        c.addr,
        "POST",
        "/",
        auth,
        r#"{"jsonrpc":"2.0","id":3,"method":"nosuch"}"#,
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v.get("result").is_none());
    assert_eq!(v["jsonrpc"], "2.0");
    let (status, _) = http(
        c.addr,
        "POST",
        "/",
        auth,
        r#"{"jsonrpc":"2.0","method":"getblockcount"}"#,
    );
    assert_eq!(status, 204);

    // Authentication: wrong password, cookie, GET.
    assert_eq!(
        http(c.addr, "POST", "/", Some(("devchain", "wrong")), "{}").0,
        401
    );
    assert_eq!(http(c.addr, "POST", "/", None, "{}").0, 401);
    let cookie = std::fs::read_to_string(dc.cookie_path().unwrap()).unwrap();
    let (user, pass) = cookie.split_once(':').unwrap();
    let (status, body) = http(
        c.addr,
        "POST",
        "/",
        Some((user, pass)),
        r#"{"id":1,"method":"getblockcount"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(http(c.addr, "GET", "/", auth, "").0, 405);
    rt.block_on(dc.shutdown());
}

/// Parameters Core refuses, with Core's code and message (checked against
/// bitcoind v30.99 on regtest): `maxfeerate` of 1 BTC/kvB or more
/// (`ParseFeeRate`), and vout / sequence / `n` values out of range.
#[test]
fn bad_parameters_get_cores_answers() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (dc, c) = start(&rt, dir.path(), true);
    let fail = |method: &str, params: Value| {
        let (_, code, msg) = c.err(method, params);
        (code, msg)
    };
    let out_of_range = (-1, "JSON integer out of range".to_string());

    // maxfeerate: Core's ParseFeeRate refuses >= 1 BTC/kvB (-8), so an
    // absurd rate never reaches the fee arithmetic.
    let u = c.call("listunspent", json!([]))[0].clone();
    let dest = c.call("getnewaddress", json!([]));
    let raw = c.call(
        "createrawtransaction",
        json!([[{"txid": u["txid"], "vout": u["vout"]}], [{dest.as_str().unwrap(): 49.9999}]]),
    );
    let signed = c.call("signrawtransactionwithwallet", json!([raw]))["hex"].clone();
    let too_high = (
        -8,
        "Fee rates larger than or equal to 1BTC/kvB are not accepted".to_string(),
    );
    for rate in [json!(1), json!(21_000_000)] {
        assert_eq!(fail("sendrawtransaction", json!([signed, rate])), too_high);
        assert_eq!(fail("testmempoolaccept", json!([[signed], rate])), too_high);
    }
    // Core parses the rate before decoding the transactions.
    assert_eq!(fail("testmempoolaccept", json!([["00"], 1])), too_high);
    let r = c.call("testmempoolaccept", json!([[signed], 0.99999999]));
    assert_eq!(r[0]["allowed"], true, "{r}");
    assert_eq!(devchain::mempool::fee_for(u64::MAX, 2), u64::MAX / 1000);

    // createrawtransaction (Core's AddInputs): vout is an int, sequence a u32.
    let txid = "11".repeat(32);
    let create = |input: Value| fail("createrawtransaction", json!([[input], {}]));
    assert_eq!(
        create(json!({"txid": txid, "vout": -1})),
        (-8, "Invalid parameter, vout cannot be negative".to_string())
    );
    for vout in [2_147_483_648u64, 4_294_967_296] {
        assert_eq!(create(json!({"txid": txid, "vout": vout})), out_of_range);
    }
    for seq in [-1i64, 4_294_967_296] {
        assert_eq!(
            create(json!({"txid": txid, "vout": 0, "sequence": seq})),
            (
                -8,
                "Invalid parameter, sequence number is out of range".to_string()
            )
        );
    }
    let raw = c.call(
        "createrawtransaction",
        json!([[{"txid": txid, "vout": 2_147_483_647u32, "sequence": 4_294_967_295u32}], {}]),
    );
    let tx = c.call("decoderawtransaction", json!([raw]));
    assert_eq!(tx["vin"][0]["vout"], 2_147_483_647u32);
    assert_eq!(tx["vin"][0]["sequence"], 4_294_967_295u32);

    // gettxout: `n` is a uint32 in Core, never clamped.
    assert_eq!(fail("gettxout", json!([txid, -1])), out_of_range);
    assert_eq!(
        c.call("gettxout", json!([txid, 4_294_967_295u32])),
        Value::Null
    );

    // signrawtransactionwithwallet prevtxs (Core's ParsePrevouts).
    let prev = |vout: Option<Value>| {
        let mut o = json!({"txid": txid, "scriptPubKey": "00", "amount": 1});
        if let Some(v) = vout {
            o["vout"] = v;
        }
        fail("signrawtransactionwithwallet", json!([raw, [o]]))
    };
    assert_eq!(
        prev(Some(json!(-1))),
        (-22, "vout cannot be negative".to_string())
    );
    assert_eq!(prev(Some(json!(4_294_967_296u64))), out_of_range);
    assert_eq!(prev(None), (-3, "Missing vout".to_string()));
    assert_eq!(
        prev(Some(json!("x"))),
        (
            -3,
            "JSON value of type string for field vout is not of expected type number".to_string()
        )
    );
    rt.block_on(dc.shutdown());
}

#[test]
fn restart_keeps_the_chain_and_amounts_print_like_core() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (dc, c) = start(&rt, dir.path(), true);
    let best = c.call("getbestblockhash", json!([]));
    let (_, text) = http(
        c.addr,
        "POST",
        "/",
        Some(("devchain", "pass")),
        r#"{"id":1,"method":"getbalances"}"#,
    );
    assert!(text.contains(r#""immature":5000.00000000"#), "{text}");
    let cookie = dc.cookie_path().unwrap().to_path_buf();
    rt.block_on(dc.shutdown());
    assert!(!cookie.exists());
    let (dc, c) = start(&rt, dir.path(), true);
    assert_eq!(c.call("getbestblockhash", json!([])), best);
    assert_eq!(c.call("getblockcount", json!([])), 101);
    assert_eq!(c.call("getbalance", json!([])).as_f64().unwrap(), 50.0);
    rt.block_on(dc.shutdown());
}

#[test]
fn timer_mines_blocks_and_corrupt_state_is_reported() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = DevChainConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        rpc_password: Some("pass".into()),
        block_interval: Some(std::time::Duration::from_millis(20)),
        ..DevChainConfig::default()
    };
    let dc = rt.block_on(DevChain::start(cfg)).unwrap();
    let c = Client {
        addr: dc.addr(),
        user: dc.user().to_string(),
        password: dc.password().to_string(),
        path: "/".into(),
    };
    // Poll (bounded) until the timer has produced blocks; no timing assertion.
    let mut height = 0;
    for _ in 0..500 {
        height = c.call("getblockcount", json!([])).as_u64().unwrap();
        if height >= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(height >= 3, "timer mined only {height} blocks");
    assert!(
        c.call("getbalances", json!([]))["mine"]["immature"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    rt.block_on(dc.shutdown());

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(devchain::chain::store::STATE_FILE),
        b"{\"format\": 99}",
    )
    .unwrap();
    let cfg = DevChainConfig {
        data_dir: Some(dir.path().to_path_buf()),
        bind: "127.0.0.1:0".parse().unwrap(),
        ..DevChainConfig::default()
    };
    let err = rt.block_on(DevChain::start(cfg)).unwrap_err();
    assert!(
        err.to_string().contains("unsupported format version 99"),
        "{err}"
    );
}

/// A test's market: `devchain_setfeeestimate` (devchain's own, not Core's)
/// fixes `estimatesmartfee`'s answer, or makes it Core's "no data" shape,
/// and null returns to the samples; the replies keep Core's shapes.
#[test]
fn a_test_sets_the_fee_estimate_and_replies_keep_cores_shape() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (dc, c) = start(&rt, dir.path(), false);
    assert_eq!(
        c.call("devchain_setfeeestimate", json!([0.00025])),
        Value::Null
    );
    let est = c.call("estimatesmartfee", json!([6]));
    assert_shape("estimatesmartfee", &est, &["feerate", "blocks"]);
    assert_eq!(est["feerate"].as_f64(), Some(0.00025));
    assert_eq!(est["blocks"], 6);
    // Direct, in-process, as tests of programs embedding devchain do.
    dc.with_chain(|chain| {
        chain.set_fee_estimate(devchain::chain::node::FeeEstimateSetting::Fixed(3_000))
    });
    let est = c.call("estimatesmartfee", json!([2]));
    assert_eq!(est["feerate"].as_f64(), Some(0.00003));
    c.call("devchain_setfeeestimate", json!(["insufficient"]));
    let est = c.call("estimatesmartfee", json!([6]));
    assert_shape("estimatesmartfee", &est, &["errors", "blocks"]);
    assert_eq!(
        est["errors"],
        json!(["Insufficient data or no feerate found"])
    );
    // Back to the samples: none on a fresh chain.
    c.call("devchain_setfeeestimate", json!([null]));
    let est = c.call("estimatesmartfee", json!([6]));
    assert_shape("estimatesmartfee", &est, &["errors", "blocks"]);
    assert_eq!(c.err("devchain_setfeeestimate", json!([-1])).1, -3);
    rt.block_on(dc.shutdown());
}
