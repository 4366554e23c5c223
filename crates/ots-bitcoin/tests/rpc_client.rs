//! The RPC client against a local HTTP server that answers as Bitcoin Core
//! does (status codes, error objects, Basic auth), so that each behaviour of
//! the client is observed on the wire: credentials, wallet paths, warm-up
//! retries, error mapping, cookie re-reading. The warm-up is also waited
//! through against devchain modelling Core's start-up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use ots_bitcoin::{Auth, RpcClient, RpcConfig, RpcError};
use serde_json::{json, Value};

#[derive(Default)]
struct Node {
    /// The credentials the node accepts, `user:password`.
    credentials: Mutex<String>,
    /// Calls left to answer with -28 (warm-up).
    warmup_left: AtomicUsize,
    /// Every (path, method) seen.
    seen: Mutex<Vec<(String, String)>>,
}

async fn handle(
    State(node): State<Arc<Node>>,
    path: Option<Path<String>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(node.credentials.lock().unwrap().as_str())
    );
    if headers.get("authorization").and_then(|h| h.to_str().ok()) != Some(expected.as_str()) {
        return (StatusCode::UNAUTHORIZED, Json(Value::Null));
    }
    let method = body["method"].as_str().unwrap_or_default().to_string();
    let wallet = path.map(|Path(w)| w).unwrap_or_default();
    node.seen.lock().unwrap().push((wallet, method.clone()));
    let id = body["id"].clone();
    let error = |status: StatusCode, code: i64, message: &str| {
        (
            status,
            Json(json!({"result": null, "error": {"code": code, "message": message}, "id": id})),
        )
    };
    if node
        .warmup_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            -28,
            "Loading block index…",
        );
    }
    let result = match method.as_str() {
        "getblockcount" => json!(101),
        "getblockhash" => {
            if body["params"][0].as_u64() == Some(0) {
                json!("0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206")
            } else {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    -8,
                    "Block height out of range",
                );
            }
        }
        "getmempoolentry" => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                -5,
                "Transaction not in mempool",
            )
        }
        "estimatesmartfee" => json!({"feerate": 0.00012, "blocks": 2}),
        "getbalances" => {
            json!({"mine": {"trusted": 1.5, "untrusted_pending": 0.0, "immature": 50.0}})
        }
        "sendrawtransaction" => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                -26,
                "min relay fee not met, 100 < 141",
            )
        }
        _ => return error(StatusCode::NOT_FOUND, -32601, "Method not found"),
    };
    (
        StatusCode::OK,
        Json(json!({"result": result, "error": null, "id": id})),
    )
}

async fn start(node: Arc<Node>) -> String {
    let app = Router::new()
        .route("/", post(handle))
        .route("/wallet/{name}", post(handle))
        .with_state(node);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/")
}

fn node(credentials: &str) -> Arc<Node> {
    let node = Node::default();
    *node.credentials.lock().unwrap() = credentials.to_string();
    Arc::new(node)
}

#[tokio::test]
async fn typed_calls_and_error_mapping() {
    let node = node("u:p");
    let url = start(node.clone()).await;
    let mut config = RpcConfig::new(
        url,
        Auth::UserPass {
            user: "u".into(),
            password: "p".into(),
        },
    );
    config.wallet = Some("ots wallet".into());
    let client = RpcClient::new(config).unwrap();

    assert_eq!(client.block_count().await.unwrap(), 101);
    assert!(client.block_hash(0).await.unwrap().is_some());
    assert_eq!(client.block_hash(5).await.unwrap(), None);
    let txid = "0000000000000000000000000000000000000000000000000000000000000001"
        .parse()
        .unwrap();
    assert_eq!(client.mempool_entry(&txid).await.unwrap(), None);
    let fee = client.estimate_smart_fee(2).await.unwrap();
    assert!((fee.sat_per_vbyte().unwrap() - 12.0).abs() < 1e-9);
    let balances = client.balances().await.unwrap();
    assert_eq!(balances.trusted.to_sat(), 150_000_000);

    let tx = bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![],
        output: vec![],
    };
    match client.send_raw_transaction(&tx).await {
        Err(RpcError::Rpc { code: -26, message }) => assert!(message.contains("min relay fee")),
        other => panic!("expected -26, got {other:?}"),
    }
    match client.call::<Value>("nosuchcall", json!([])).await {
        Err(RpcError::Rpc { code: -32601, .. }) => {}
        other => panic!("expected -32601, got {other:?}"),
    }
    // Wallet calls went to the wallet's path, node calls to the root.
    let seen = node.seen.lock().unwrap().clone();
    assert!(seen.contains(&("ots wallet".to_string(), "getbalances".to_string())));
    assert!(seen.contains(&(String::new(), "getblockcount".to_string())));
}

#[tokio::test]
async fn warmup_is_retried_then_succeeds() {
    let node = node("u:p");
    node.warmup_left.store(2, Ordering::SeqCst);
    let url = start(node.clone()).await;
    let client = RpcClient::new(RpcConfig::new(
        url.replace("http://", "http://u:p@"),
        Auth::None,
    ))
    .unwrap();
    assert_eq!(client.block_count().await.unwrap(), 101);
    // Two warm-up answers, then the real one: three requests on the wire.
    assert_eq!(node.seen.lock().unwrap().len(), 3);

    node.warmup_left.store(100, Ordering::SeqCst);
    let err = client.block_count().await.unwrap_err();
    assert_eq!(err.code(), Some(-28));
}

#[tokio::test]
async fn waits_through_a_devchain_warmup() {
    let warmup = Duration::from_millis(500);
    let started = std::time::Instant::now();
    let dc = devchain::DevChain::start(devchain::DevChainConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        rpc_password: Some("p".into()),
        warmup: Some(warmup),
        ..devchain::DevChainConfig::default()
    })
    .await
    .unwrap();
    let url = format!("http://{}:p@{}/", dc.user(), dc.addr());
    // Without retries the warm-up surfaces as Core's error.
    let mut config = RpcConfig::new(url.clone(), Auth::None);
    config.retries = 0;
    let impatient = RpcClient::new(config).unwrap();
    match impatient.block_count().await {
        Err(e @ RpcError::Rpc { code: -28, .. }) => {
            assert!(e.is_transient());
            let message = e.to_string();
            assert!(
                devchain::devnode::WARMUP_STAGES
                    .iter()
                    .any(|s| message.ends_with(s)),
                "{message}"
            );
        }
        other => panic!("expected -28 during warm-up, got {other:?}"),
    }
    // With the default retries and backoff (0.2 + 0.4 + 0.8 s) it waits.
    let client = RpcClient::new(RpcConfig::new(url, Auth::None)).unwrap();
    assert_eq!(client.block_count().await.unwrap(), 0);
    assert!(started.elapsed() >= warmup);
    assert_eq!(dc.warmup_status(), None);
    dc.shutdown().await;
}

#[tokio::test]
async fn cookie_is_reread_after_401() {
    let dir = tempfile::tempdir().unwrap();
    let cookie = dir.path().join(".cookie");
    std::fs::write(&cookie, "__cookie__:first").unwrap();
    let node = node("__cookie__:first");
    let url = start(node.clone()).await;
    let client = RpcClient::new(RpcConfig::new(url, Auth::CookieFile(cookie.clone()))).unwrap();
    assert_eq!(client.block_count().await.unwrap(), 101);
    // The node restarts with a new cookie.
    std::fs::write(&cookie, "__cookie__:second").unwrap();
    *node.credentials.lock().unwrap() = "__cookie__:second".into();
    assert_eq!(client.block_count().await.unwrap(), 101);
    // Wrong credentials for good: a clear error.
    *node.credentials.lock().unwrap() = "someone:else".into();
    assert!(matches!(
        client.block_count().await,
        Err(RpcError::Unauthorized)
    ));
}

/// A node restarting with a new cookie: the client's first connection is
/// dropped (the node is down; it writes its new cookie as it comes back),
/// the retry is refused with the old cookie (401), and the client reads the
/// cookie file again and goes on, all within one call.
#[tokio::test]
async fn cookie_is_reread_after_a_401_that_follows_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let cookie = dir.path().join(".cookie");
    std::fs::write(&cookie, "__cookie__:before-restart").unwrap();
    let node = node("__cookie__:after-restart");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let restarted = cookie.clone();
    let served = node.clone();
    tokio::spawn(async move {
        // The client has read the old cookie by the time it connects.
        let (first, _) = listener.accept().await.unwrap();
        std::fs::write(&restarted, "__cookie__:after-restart").unwrap();
        drop(first);
        let app = Router::new().route("/", post(handle)).with_state(served);
        axum::serve(listener, app).await
    });
    let client = RpcClient::new(RpcConfig::new(url, Auth::CookieFile(cookie))).unwrap();
    assert_eq!(client.block_count().await.unwrap(), 101);
    assert_eq!(
        node.seen.lock().unwrap().len(),
        1,
        "answered once, after the re-read"
    );
}

#[tokio::test]
async fn unreachable_node_is_a_transport_error() {
    // Bind then drop, so the port is (very likely) closed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    let mut config = RpcConfig::new(url, Auth::None);
    config.retries = 1;
    config.timeout = Duration::from_secs(5);
    let client = RpcClient::new(config).unwrap();
    let err = client.block_count().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("cannot reach the Bitcoin node"));
}

#[tokio::test]
async fn missing_cookie_file_is_named() {
    let client = RpcClient::new(RpcConfig::new(
        "http://127.0.0.1:1/",
        Auth::CookieFile("/nonexistent/.cookie".into()),
    ))
    .unwrap();
    match client.block_count().await {
        Err(RpcError::Cookie { path, .. }) => {
            assert_eq!(path.to_str(), Some("/nonexistent/.cookie"))
        }
        other => panic!("expected a cookie error, got {other:?}"),
    }
}
