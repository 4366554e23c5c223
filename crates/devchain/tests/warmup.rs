//! Core's start-up: while devchain warms up, every request gets exactly the
//! error object (and HTTP status) a starting Bitcoin Core node sends; then
//! it serves normally.

mod common;

use std::time::{Duration, Instant};

use common::{http, Client};
use devchain::devnode::WARMUP_STAGES;
use devchain::{DevChain, DevChainConfig};
use serde_json::{json, Value};

fn start(rt: &tokio::runtime::Runtime, warmup: Option<Duration>) -> (DevChain, Client) {
    let cfg = DevChainConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        rpc_password: Some("p".into()),
        rpc_user: "u".into(),
        warmup,
        ..DevChainConfig::default()
    };
    let dc = rt.block_on(DevChain::start(cfg)).unwrap();
    let client = Client {
        addr: dc.addr(),
        user: "u".into(),
        password: "p".into(),
        path: "/".into(),
    };
    (dc, client)
}

fn post(c: &Client, path: &str, body: &str) -> (u16, String) {
    http(c.addr, "POST", path, Some(("u", "p")), body)
}

#[test]
fn every_request_gets_cores_warmup_error() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Long enough that the first step lasts the whole test.
    let (dc, c) = start(&rt, Some(Duration::from_secs(600)));
    assert_eq!(dc.warmup_status(), Some("Loading banlist…"));

    // JSON-RPC 1.0: HTTP 500 and Core's body, byte for byte.
    let (status, body) = post(
        &c,
        "/",
        r#"{"jsonrpc":"1.0","id":"t","method":"getblockcount","params":[]}"#,
    );
    assert_eq!(status, 500);
    assert_eq!(
        body,
        "{\"result\":null,\"error\":{\"code\":-28,\"message\":\"Loading banlist…\"},\"id\":\"t\"}\n"
    );
    // Unknown methods and wallet paths too: warm-up is checked first.
    let (status, v) = c.raw("nosuchmethod", json!([]));
    assert_eq!(status, 500);
    assert_eq!(
        v,
        json!({"result": null, "error": {"code": -28, "message": "Loading banlist…"}, "id": "t"})
    );
    assert_eq!(
        c.wallet("devchain").err("getbalances", json!([])),
        (500, -28, "Loading banlist…".to_string())
    );
    // JSON-RPC 2.0 and batches: HTTP 200 with the error inside.
    let (status, body) = post(
        &c,
        "/",
        r#"[{"jsonrpc":"2.0","id":7,"method":"getblockcount"},{"id":8,"method":"help"}]"#,
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        json!([
            {"jsonrpc": "2.0", "error": {"code": -28, "message": "Loading banlist…"}, "id": 7},
            {"result": null, "error": {"code": -28, "message": "Loading banlist…"}, "id": 8}
        ])
    );
    // A malformed request still gets its own error, as in Core.
    let (status, v) = {
        let (s, b) = post(&c, "/", r#"{"id":9}"#);
        (s, serde_json::from_str::<Value>(&b).unwrap())
    };
    assert_eq!(status, 400);
    assert_eq!(
        v["error"],
        json!({"code": -32600, "message": "Missing method"})
    );
    rt.block_on(dc.shutdown());
}

#[test]
fn steps_advance_in_cores_order_then_the_node_serves() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let warmup = Duration::from_millis(800);
    let started = Instant::now();
    let (dc, c) = start(&rt, Some(warmup));
    let mut seen: Vec<String> = Vec::new();
    let count = loop {
        let (status, v) = c.raw("getblockcount", json!([]));
        if status == 200 {
            break v["result"].clone();
        }
        assert_eq!(v["error"]["code"], -28, "{v}");
        let msg = v["error"]["message"].as_str().unwrap().to_string();
        if seen.last() != Some(&msg) {
            seen.push(msg);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "warm-up never ended"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(started.elapsed() >= warmup);
    assert_eq!(count, json!(0));
    assert_eq!(dc.warmup_status(), None);
    // The steps seen are Core's, in Core's order.
    assert!(!seen.is_empty());
    let positions: Vec<usize> = seen
        .iter()
        .map(|m| WARMUP_STAGES.iter().position(|s| s == m).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    rt.block_on(dc.shutdown());
}

#[test]
fn without_warmup_the_node_serves_at_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (dc, c) = start(&rt, None);
    assert_eq!(dc.warmup_status(), None);
    assert_eq!(c.call("getblockcount", json!([])), json!(0));
    rt.block_on(dc.shutdown());
}
