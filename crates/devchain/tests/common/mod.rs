//! Test helpers: a blocking HTTP/1.1 JSON-RPC client for 127.0.0.1 and a
//! devchain started on port 0.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use base64::Engine;
use bitcoin::ScriptBuf;
use devchain::wallet::AddressType;
use devchain::Chain;
use serde_json::{json, Value};

/// Bound on every socket operation so no test can hang.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends a raw HTTP request; returns status and body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let auth_header = auth
        .map(|(u, p)| {
            format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        })
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth_header}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// A JSON-RPC client bound to one devchain.
pub struct Client {
    pub addr: SocketAddr,
    pub user: String,
    pub password: String,
    pub path: String,
}

impl Client {
    /// Calls `method`; returns HTTP status and the whole reply object.
    pub fn raw(&self, method: &str, params: Value) -> (u16, Value) {
        let body =
            json!({"jsonrpc": "1.0", "id": "t", "method": method, "params": params}).to_string();
        let (status, text) = http(
            self.addr,
            "POST",
            &self.path,
            Some((&self.user, &self.password)),
            &body,
        );
        (
            status,
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method}: bad JSON {e}: {text:?}")),
        )
    }

    /// Calls `method` expecting success; returns `result`.
    pub fn call(&self, method: &str, params: Value) -> Value {
        let (status, v) = self.raw(method, params);
        assert_eq!(status, 200, "{method} failed: {v}");
        assert!(v["error"].is_null(), "{method}: {v}");
        v["result"].clone()
    }

    /// Calls `method` expecting an error; returns (HTTP status, code, message).
    pub fn err(&self, method: &str, params: Value) -> (u16, i64, String) {
        let (status, v) = self.raw(method, params);
        assert!(
            v["result"].is_null(),
            "{method} unexpectedly succeeded: {v}"
        );
        (
            status,
            v["error"]["code"].as_i64().unwrap(),
            v["error"]["message"].as_str().unwrap().to_string(),
        )
    }

    /// The same node, wallet endpoint `/wallet/<name>`.
    pub fn wallet(&self, name: &str) -> Client {
        Client {
            addr: self.addr,
            user: self.user.clone(),
            password: self.password.clone(),
            path: format!("/wallet/{name}"),
        }
    }
}

/// The keys of a JSON object, in order.
pub fn keys(v: &Value) -> Vec<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

/// Asserts `v` has exactly `expected` keys (any order) — the reply shape.
pub fn assert_shape(what: &str, v: &Value, expected: &[&str]) {
    let mut got = keys(v);
    got.sort();
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "shape of {what}: {v}");
}

/// A chain with wallet `w` (seed `[seed; 32]`) that mined `blocks` blocks
/// to one of its addresses; returns the chain and that address's script.
pub fn funded(seed: u8, blocks: u32) -> (Chain, ScriptBuf) {
    let mut c = Chain::new();
    c.create_wallet("w", Some([seed; 32])).unwrap();
    let addr = c.new_address("w", AddressType::Bech32, false, "").unwrap();
    c.generate(blocks, &addr.script_pubkey()).unwrap();
    (c, addr.script_pubkey())
}
