//! A small typed client for the Bitcoin Core JSON-RPC calls that a calendar
//! and a verifying client make. It speaks to Bitcoin Core 24+ (and to
//! `devchain`, which answers the same way).
//!
//! Behaviour worth knowing:
//! * Authentication by user/password (also taken from a URL's
//!   `user:pass@`) or by cookie file; the cookie is re-read after a 401,
//!   because Core writes a new one at every start.
//! * Wallet calls go to `/wallet/<name>` when a wallet name is configured,
//!   as Core requires once more than one wallet is loaded.
//! * Transport failures and Core's warm-up (`-28`) are retried with
//!   exponential backoff up to a bound; every other error is returned at once
//!   as a typed [`RpcError`], with Core's code and message.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use thiserror::Error;

/// Per-request timeout, unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a transient failure is retried, unless configured.
pub const DEFAULT_RETRIES: u32 = 3;
/// First backoff delay; doubled at every retry.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
/// Longest backoff delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Core's error code while it is still loading (block index, wallet...).
pub const RPC_IN_WARMUP: i64 = -28;

/// How to authenticate to the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials (only useful behind a proxy that adds them).
    None,
    /// `rpcuser`/`rpcpassword` (or `rpcauth`) credentials.
    UserPass {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// Core's `.cookie` file (`__cookie__:<random>`), read at each
    /// (re)connection.
    CookieFile(PathBuf),
}

/// Where and how to reach the node.
#[derive(Debug, Clone)]
pub struct RpcConfig {
    /// Base URL, such as `http://127.0.0.1:8332`. Credentials in the URL
    /// (`http://user:pass@host:port/`) override `auth`.
    pub url: String,
    /// Credentials.
    pub auth: Auth,
    /// Wallet name for wallet calls (`/wallet/<name>`); `None` for the
    /// node's default wallet.
    pub wallet: Option<String>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries of transport failures and warm-up.
    pub retries: u32,
}

impl RpcConfig {
    /// A configuration with default timeout and retries.
    pub fn new(url: impl Into<String>, auth: Auth) -> Self {
        RpcConfig {
            url: url.into(),
            auth,
            wallet: None,
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
        }
    }
}

/// What can go wrong talking to the node.
#[derive(Debug, Error)]
pub enum RpcError {
    /// No answer: connection refused, reset, timed out.
    #[error("cannot reach the Bitcoin node at {url}: {message}")]
    Transport {
        /// The URL called.
        url: String,
        /// What the HTTP layer said.
        message: String,
    },
    /// The node refused the credentials (HTTP 401).
    #[error("the Bitcoin node refused our credentials (HTTP 401); check the cookie file or rpcuser/rpcpassword")]
    Unauthorized,
    /// An HTTP answer that is not JSON-RPC.
    #[error("unexpected HTTP {status} from the Bitcoin node: {body}")]
    Http {
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// Core answered with an error object.
    #[error("Bitcoin node error {code}: {message}")]
    Rpc {
        /// Core's error code (RPC_* in rpc/protocol.h).
        code: i64,
        /// Core's message.
        message: String,
    },
    /// The reply did not have the expected shape.
    #[error("malformed reply to {method}: {message}")]
    Decode {
        /// The method called.
        method: String,
        /// What was wrong.
        message: String,
    },
    /// The cookie file could not be read.
    #[error("cannot read the cookie file {path}: {message}")]
    Cookie {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The configuration is unusable (a bad URL).
    #[error("invalid Bitcoin node configuration: {0}")]
    Config(String),
}

impl RpcError {
    /// Whether retrying later may succeed: transport failures and warm-up.
    pub fn is_transient(&self) -> bool {
        matches!(self, RpcError::Transport { .. })
            || matches!(self, RpcError::Rpc { code, .. } if *code == RPC_IN_WARMUP)
    }

    /// Core's error code, if this is an RPC error.
    pub fn code(&self) -> Option<i64> {
        match self {
            RpcError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn decode(method: &str, message: impl ToString) -> Self {
        RpcError::Decode {
            method: method.to_string(),
            message: message.to_string(),
        }
    }
}

/// A JSON-RPC connection to a Bitcoin Core node.
#[derive(Debug)]
pub struct RpcClient {
    http: reqwest::Client,
    base: reqwest::Url,
    auth: Auth,
    wallet: Option<String>,
    retries: u32,
    /// The `Authorization` header value, cached; cleared after a 401 so
    /// that a rewritten cookie is picked up.
    header: Mutex<Option<String>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl RpcClient {
    /// A client for `config`. No connection is made until the first call.
    pub fn new(config: RpcConfig) -> Result<Self, RpcError> {
        let mut base = reqwest::Url::parse(&config.url)
            .map_err(|e| RpcError::Config(format!("bad URL {:?}: {e}", config.url)))?;
        let mut auth = config.auth;
        if !base.username().is_empty() {
            auth = Auth::UserPass {
                user: percent_decode(base.username()),
                password: percent_decode(base.password().unwrap_or("")),
            };
            let _ = base.set_username("");
            let _ = base.set_password(None);
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| RpcError::Config(e.to_string()))?;
        Ok(RpcClient {
            http,
            base,
            auth,
            wallet: config.wallet,
            retries: config.retries,
            header: Mutex::new(None),
            next_id: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// The node's URL, without credentials.
    pub fn url(&self) -> &str {
        self.base.as_str()
    }

    /// Calls a node-level method.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, RpcError> {
        self.call_at(self.base.clone(), method, params).await
    }

    /// Calls a wallet method (at `/wallet/<name>` when a wallet is named).
    pub async fn wallet_call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, RpcError> {
        let url = match &self.wallet {
            Some(name) => self
                .base
                .join(&format!("wallet/{}", percent_encode(name)))
                .map_err(|e| RpcError::Config(e.to_string()))?,
            None => self.base.clone(),
        };
        self.call_at(url, method, params).await
    }

    async fn call_at<T: DeserializeOwned>(
        &self,
        url: reqwest::Url,
        method: &str,
        params: Value,
    ) -> Result<T, RpcError> {
        let mut delay = INITIAL_BACKOFF;
        let mut attempt = 0;
        // Whether the cookie was re-read for this call: once, wherever the
        // 401 comes (a restarting node is often unreachable, then warming
        // up, before it refuses the old cookie).
        let mut reread = false;
        loop {
            match self.call_once(&url, method, &params).await {
                Err(e) if e.is_transient() && attempt < self.retries => {
                    tracing::debug!(method, attempt, error = %e, "retrying Bitcoin RPC");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_BACKOFF);
                    attempt += 1;
                }
                Err(RpcError::Unauthorized)
                    if !reread && matches!(self.auth, Auth::CookieFile(_)) =>
                {
                    // The node may have restarted and written a new cookie.
                    tracing::debug!(method, "HTTP 401: reading the cookie file again");
                    self.clear_header();
                    reread = true;
                }
                Err(e) => return Err(e),
                Ok(value) => {
                    return serde_json::from_value(value).map_err(|e| RpcError::decode(method, e))
                }
            }
        }
    }

    async fn call_once(
        &self,
        url: &reqwest::Url,
        method: &str,
        params: &Value,
    ) -> Result<Value, RpcError> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = json!({"jsonrpc": "1.0", "id": id, "method": method, "params": params});
        let mut request = self.http.post(url.clone()).json(&body);
        if let Some(header) = self.auth_header()? {
            request = request.header(reqwest::header::AUTHORIZATION, header);
        }
        let response = request.send().await.map_err(|e| RpcError::Transport {
            url: self.base.to_string(),
            message: e.to_string(),
        })?;
        let status = response.status().as_u16();
        if status == 401 {
            return Err(RpcError::Unauthorized);
        }
        let text = response.text().await.map_err(|e| RpcError::Transport {
            url: self.base.to_string(),
            message: e.to_string(),
        })?;
        // Core answers RPC errors with HTTP 500 (404 for an unknown method)
        // and a JSON-RPC body; anything without such a body is an HTTP error.
        let reply: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => {
                return Err(RpcError::Http {
                    status,
                    body: text.chars().take(200).collect(),
                })
            }
        };
        match reply.get("error") {
            Some(Value::Null) | None => {}
            Some(error) => {
                return Err(RpcError::Rpc {
                    code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                    message: error
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("(no message)")
                        .to_string(),
                })
            }
        }
        match reply.get("result") {
            Some(result) => Ok(result.clone()),
            None => Err(RpcError::decode(
                method,
                "reply has neither result nor error",
            )),
        }
    }

    fn auth_header(&self) -> Result<Option<String>, RpcError> {
        let mut cached = self.header.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = cached.as_ref() {
            return Ok(Some(h.clone()));
        }
        let credentials = match &self.auth {
            Auth::None => return Ok(None),
            Auth::UserPass { user, password } => format!("{user}:{password}"),
            Auth::CookieFile(path) => std::fs::read_to_string(path)
                .map_err(|e| RpcError::Cookie {
                    path: path.clone(),
                    message: e.to_string(),
                })?
                .trim()
                .to_string(),
        };
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        );
        *cached = Some(header.clone());
        Ok(Some(header))
    }

    fn clear_header(&self) {
        *self.header.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_coding() {
        assert_eq!(percent_decode("a%40b%3A"), "a@b:");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_encode("my wallet"), "my%20wallet");
    }

    #[test]
    fn credentials_in_url_become_auth() {
        let client = RpcClient::new(RpcConfig::new(
            "http://alice:s%40cret@127.0.0.1:18443/",
            Auth::None,
        ))
        .unwrap();
        assert_eq!(
            client.auth,
            Auth::UserPass {
                user: "alice".into(),
                password: "s@cret".into()
            }
        );
        assert!(!client.url().contains("alice"));
    }

    #[test]
    fn transient_errors() {
        assert!(RpcError::Rpc {
            code: -28,
            message: "Loading".into()
        }
        .is_transient());
        assert!(!RpcError::Rpc {
            code: -26,
            message: "min relay fee not met".into()
        }
        .is_transient());
        assert!(RpcError::Transport {
            url: String::new(),
            message: String::new()
        }
        .is_transient());
    }
}
