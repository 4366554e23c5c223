//! JSON-RPC over HTTP the way Bitcoin Core's `httprpc.cpp` serves it: POST
//! only, HTTP basic auth (user/password or the `__cookie__` cookie), paths
//! `/` and `/wallet/<name>`, single and batch requests, JSON-RPC 1.0/1.1
//! legacy replies (`result` and `error` both present; HTTP 500 on error,
//! 404 for -32601, 400 for -32600) and JSON-RPC 2.0 replies (HTTP 200, 204
//! for notifications). While the node warms up (see [`crate::rpc::warmup`]) every
//! well-formed request is answered with Core's `-28` error.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::chain::node::Chain;
use crate::chain::store::Store;
use crate::error::Result;
use crate::json::Json;
use crate::obj;
use crate::rpc::params::{code, RpcError};
use crate::rpc::warmup::Warmup;
use crate::rpc::{chain as rpcchain, wallet as rpcwallet};

/// Largest request body accepted (Core's `MAX_SIZE` for HTTP bodies is 32 MB).
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// User name of cookie authentication (Core's `COOKIEAUTH_USER`).
pub const COOKIE_USER: &str = "__cookie__";

/// A chain plus its optional data directory, shared by the server and the
/// miner, and the start-up it may still be going through.
#[derive(Debug)]
pub struct Node {
    inner: Mutex<(Chain, Option<Store>)>,
    warmup: Option<Warmup>,
}

impl Node {
    /// Wraps a chain (and the store it persists to, if any), ready at once.
    pub fn new(chain: Chain, store: Option<Store>) -> Arc<Node> {
        Node::starting(chain, store, None)
    }

    /// Like [`Node::new`], but answering `-28` until `warmup` is over.
    pub fn starting(chain: Chain, store: Option<Store>, warmup: Option<Warmup>) -> Arc<Node> {
        Arc::new(Node {
            inner: Mutex::new((chain, store)),
            warmup,
        })
    }

    /// The start-up step RPC reports now, or `None` once the node is ready.
    pub fn warmup_status(&self) -> Option<&'static str> {
        self.warmup.as_ref().and_then(Warmup::status)
    }

    /// Time left until warm-up ends (zero when ready).
    pub fn warmup_remaining(&self) -> Duration {
        self.warmup
            .as_ref()
            .map_or(Duration::ZERO, Warmup::remaining)
    }

    /// Runs `f` on the chain, then persists whatever it changed (a failure
    /// is logged, and the change written by a later call).
    pub fn with_chain<T>(&self, f: impl FnOnce(&mut Chain) -> T) -> T {
        self.with_chain_persisted(f).0
    }

    /// Runs `f` on the chain, then persists whatever it changed and
    /// whatever an earlier failed write left pending. Returns `f`'s result
    /// and whether all of that is now on disk; on failure it stays in
    /// memory for the next call to write.
    pub fn with_chain_persisted<T>(&self, f: impl FnOnce(&mut Chain) -> T) -> (T, Result<()>) {
        let mut guard = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (chain, store) = &mut *guard;
        let out = f(chain);
        let persisted = match store {
            Some(s) => s.persist(chain),
            None => {
                chain.drain_journal();
                Ok(())
            }
        };
        if let Err(e) = &persisted {
            tracing::error!(error = %e, "devchain failed to persist its state; it will retry on the next call");
        }
        (out, persisted)
    }
}

/// Accepted credentials.
#[derive(Debug, Clone)]
pub struct Auth {
    /// `rpcuser`.
    pub user: String,
    /// `rpcpassword`.
    pub password: String,
    /// Password of the `__cookie__` user, if a cookie is in use.
    pub cookie: Option<String>,
}

impl Auth {
    fn check(&self, header: Option<&str>) -> bool {
        let Some(b64) = header.and_then(|h| h.strip_prefix("Basic ")) else {
            return false;
        };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return false;
        };
        let Ok(text) = String::from_utf8(raw) else {
            return false;
        };
        let Some((u, p)) = text.split_once(':') else {
            return false;
        };
        (u == self.user && p == self.password)
            || (u == COOKIE_USER && self.cookie.as_deref() == Some(p))
    }
}

/// Serves JSON-RPC on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    auth: Auth,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => r?,
            () = &mut shutdown => break,
        };
        let node = node.clone();
        let auth = auth.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req| handle(req, node.clone(), auth.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    Ok(())
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(
    req: Request<Incoming>,
    node: Arc<Node>,
    auth: Auth,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != hyper::Method::POST {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "JSONRPC server handles only POST requests".into(),
        ));
    }
    let header = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    if !auth.check(header) {
        let mut r = reply(StatusCode::UNAUTHORIZED, String::new());
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Basic realm=\"jsonrpc\""),
        );
        return Ok(r);
    }
    let path = req.uri().path().to_string();
    let wallet = if path == "/" || path.is_empty() {
        None
    } else if let Some(name) = path.strip_prefix("/wallet/") {
        Some(percent_decode(name))
    } else {
        return Ok(reply(StatusCode::NOT_FOUND, String::new()));
    };
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, String::new())),
    };
    let out = tokio::task::spawn_blocking(move || process(&node, &body, wallet.as_deref()))
        .await
        .unwrap_or_else(|_| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(error_reply(
                    &RpcError::new(code::MISC_ERROR, "internal error"),
                    &Value::Null,
                    false,
                )),
            )
        });
    Ok(match out {
        (status, Some(json)) => reply(status, json.to_text() + "\n"),
        (status, None) => reply(status, String::new()),
    })
}

/// Handles one HTTP body: a request object or a batch. Returns the status
/// and the reply (none for a JSON-RPC 2.0 notification).
pub fn process(node: &Node, body: &[u8], wallet: Option<&str>) -> (StatusCode, Option<Json>) {
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(error_reply(
                    &RpcError::new(code::PARSE_ERROR, "Parse error"),
                    &Value::Null,
                    false,
                )),
            );
        }
    };
    match parsed {
        Value::Object(_) => {
            let (v2, id, result) = execute(node, &parsed, wallet);
            match result {
                _ if v2 && id.is_none() => (StatusCode::NO_CONTENT, None),
                Ok(r) => (
                    StatusCode::OK,
                    Some(ok_reply(r, id.as_ref().unwrap_or(&Value::Null), v2)),
                ),
                Err(e) => {
                    let status = if v2 {
                        StatusCode::OK
                    } else if e.code == code::INVALID_REQUEST {
                        StatusCode::BAD_REQUEST
                    } else if e.code == code::METHOD_NOT_FOUND {
                        StatusCode::NOT_FOUND
                    } else {
                        StatusCode::INTERNAL_SERVER_ERROR
                    };
                    (
                        status,
                        Some(error_reply(&e, id.as_ref().unwrap_or(&Value::Null), v2)),
                    )
                }
            }
        }
        Value::Array(items) => {
            let replies = items
                .iter()
                .filter_map(|item| {
                    let (v2, id, result) = execute(node, item, wallet);
                    if v2 && id.is_none() {
                        return None;
                    }
                    let id = id.unwrap_or(Value::Null);
                    Some(match result {
                        Ok(r) => ok_reply(r, &id, v2),
                        Err(e) => error_reply(&e, &id, v2),
                    })
                })
                .collect();
            (StatusCode::OK, Some(Json::Arr(replies)))
        }
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Some(error_reply(
                &RpcError::new(code::PARSE_ERROR, "Top-level object parse error"),
                &Value::Null,
                false,
            )),
        ),
    }
}

fn ok_reply(result: Json, id: &Value, v2: bool) -> Json {
    if v2 {
        obj! { "jsonrpc" => "2.0", "result" => result, "id" => id.clone() }
    } else {
        obj! { "result" => result, "error" => Json::Null, "id" => id.clone() }
    }
}

fn error_reply(e: &RpcError, id: &Value, v2: bool) -> Json {
    let err = obj! { "code" => e.code, "message" => e.message.clone() };
    if v2 {
        obj! { "jsonrpc" => "2.0", "error" => err, "id" => id.clone() }
    } else {
        obj! { "result" => Json::Null, "error" => err, "id" => id.clone() }
    }
}

/// Core's `JSONRPCRequest::parse` plus execution: returns whether the
/// request is JSON-RPC 2.0, its id, and the outcome.
fn execute(
    node: &Node,
    req: &Value,
    wallet: Option<&str>,
) -> (bool, Option<Value>, Result<Json, RpcError>) {
    let Value::Object(o) = req else {
        return (
            false,
            None,
            Err(RpcError::new(
                code::INVALID_REQUEST,
                "Invalid Request object",
            )),
        );
    };
    let v2 = o.get("jsonrpc").and_then(Value::as_str) == Some("2.0");
    let id = o.get("id").cloned();
    let id_out = if v2 {
        id.clone()
    } else {
        Some(id.clone().unwrap_or(Value::Null))
    };
    let method = match o.get("method") {
        None | Some(Value::Null) => {
            return (
                v2,
                id_out,
                Err(RpcError::new(code::INVALID_REQUEST, "Missing method")),
            )
        }
        Some(Value::String(m)) => m.clone(),
        Some(_) => {
            return (
                v2,
                id_out,
                Err(RpcError::new(
                    code::INVALID_REQUEST,
                    "Method must be a string",
                )),
            )
        }
    };
    let params = o.get("params").cloned().unwrap_or(Value::Null);
    if !matches!(params, Value::Null | Value::Array(_) | Value::Object(_)) {
        return (
            v2,
            id_out,
            Err(RpcError::new(
                code::INVALID_REQUEST,
                "Params must be an array or object",
            )),
        );
    }
    // Core's `CRPCTable::execute`: warm-up is checked before the method is
    // looked up, so unknown methods get -28 too.
    if let Some(status) = node.warmup_status() {
        return (v2, id_out, Err(RpcError::new(code::IN_WARMUP, status)));
    }
    let (result, persisted) = node.with_chain_persisted(|chain| {
        tracing::debug!(%method, "rpc");
        rpcchain::dispatch(chain, &method, &params)
            .or_else(|| rpcwallet::dispatch(chain, &method, &params, wallet))
            .unwrap_or_else(|| Err(RpcError::new(code::METHOD_NOT_FOUND, "Method not found")))
    });
    // A reply must not suggest that what the chain now holds is on disk
    // when it is not (a client would build on blocks a restart loses).
    let result = match persisted {
        Ok(()) => result,
        Err(e) => Err(persist_error(&e)),
    };
    (v2, id_out, result)
}

/// Core's `RPC_DATABASE_ERROR` for a data directory devchain cannot write.
fn persist_error(e: &crate::error::Error) -> RpcError {
    RpcError::new(
        code::DATABASE_ERROR,
        format!(
            "Failed to write to the data directory: {e}; the change is kept in memory and written again on the next call"
        ),
    )
}
