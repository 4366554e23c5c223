//! A fake calendar for the mirror's tests and bench: serves backup chunks
//! (crafted, synthetic, or whatever a test puts there, including replies
//! that hang) on 127.0.0.1:0 and answers the two JSON-RPC calls a mirror
//! makes of a Bitcoin node (`getblockhash`, `getblockheader`) from headers
//! it makes up, so every Bitcoin attestation of a synthetic chunk can be
//! checked against "its" header.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, TxMerkleNode};
use ots_proof::codec::write_varbytes;
use ots_proof::{Attestation, MerkleTree, Op, Timestamp};
use serde_json::{json, Value};

/// What the fake answers for one chunk.
#[derive(Clone)]
pub enum Reply {
    /// 200 with these bytes.
    Bytes(Arc<Vec<u8>>),
    /// Never answers.
    Hang,
    /// This status, empty body.
    Status(u16),
    /// `307` to this URL.
    Redirect(String),
    /// 200, then a byte every 10 ms, without end.
    Trickle,
    /// 200, chunked, 64 KB pieces as fast as they are taken, without end.
    Endless,
}

/// A body that never ends and never waits.
struct Endless;

impl hyper::body::Body for Endless {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let piece = axum::body::Bytes::from_static(&[0u8; 64 << 10]);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(piece))))
    }
}

/// A body that never ends: a byte every 10 ms.
struct Trickle(tokio::time::Interval);

impl hyper::body::Body for Trickle {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        self.0.poll_tick(cx).map(|_| {
            Some(Ok(hyper::body::Frame::data(
                axum::body::Bytes::from_static(b"\x01"),
            )))
        })
    }
}

/// Makes chunk `n` on demand (`None`: 404).
pub type Generator = Arc<dyn Fn(u64) -> Option<Vec<u8>> + Send + Sync>;

/// The fake calendar and node.
#[derive(Default)]
pub struct Fake {
    /// Chunks set by the test.
    pub chunks: Mutex<HashMap<u64, Reply>>,
    /// Chunks made on demand, for numbers not in `chunks`.
    pub generator: Mutex<Option<Generator>>,
    headers: Mutex<(BTreeMap<u64, Header>, HashMap<BlockHash, Header>)>,
    /// Chunk requests answered so far.
    pub requests: AtomicU64,
}

impl Fake {
    /// Sets chunk `n`'s reply.
    pub fn set(&self, n: u64, reply: Reply) {
        self.chunks.lock().unwrap().insert(n, reply);
    }

    /// Sets chunk `n` to `bytes`.
    pub fn set_bytes(&self, n: u64, bytes: Vec<u8>) {
        self.set(n, Reply::Bytes(Arc::new(bytes)));
    }

    /// Makes up the header at `height` with this merkle root.
    pub fn add_header(&self, height: u64, merkle_root: [u8; 32]) {
        let header = Header {
            version: Version::from_consensus(4),
            prev_blockhash: BlockHash::from_byte_array(ots_proof::op::sha256(
                &height.to_be_bytes(),
            )),
            merkle_root: TxMerkleNode::from_byte_array(merkle_root),
            time: 1_600_000_000 + height as u32,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce: height as u32,
        };
        let mut h = self.headers.lock().unwrap();
        h.1.insert(header.block_hash(), header);
        h.0.insert(height, header);
    }

    /// The RPC URL of the fake node.
    pub fn rpc_url(addr: SocketAddr) -> String {
        format!("http://u:p@{addr}/")
    }
}

async fn chunk(State(f): State<Arc<Fake>>, Path(n): Path<u64>) -> Response {
    f.requests.fetch_add(1, Ordering::Relaxed);
    let set = f.chunks.lock().unwrap().get(&n).cloned();
    let reply = match set {
        Some(r) => r,
        None => {
            // Called outside the lock: chunks are made in parallel.
            let generator = f.generator.lock().unwrap().clone();
            let made = generator.and_then(|g| g(n));
            match made {
                Some(b) => Reply::Bytes(Arc::new(b)),
                None => Reply::Status(404),
            }
        }
    };
    match reply {
        Reply::Bytes(b) => (StatusCode::OK, b.as_ref().clone()).into_response(),
        Reply::Status(s) => StatusCode::from_u16(s).unwrap().into_response(),
        Reply::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Reply::Redirect(to) => (StatusCode::TEMPORARY_REDIRECT, [("location", to)]).into_response(),
        Reply::Endless => (StatusCode::OK, axum::body::Body::new(Endless)).into_response(),
        Reply::Trickle => {
            let every = tokio::time::interval(std::time::Duration::from_millis(10));
            (StatusCode::OK, axum::body::Body::new(Trickle(every))).into_response()
        }
    }
}

async fn rpc(State(f): State<Arc<Fake>>, body: axum::body::Bytes) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = req["id"].clone();
    let params = &req["params"];
    let headers = f.headers.lock().unwrap();
    let result = match req["method"].as_str() {
        Some("getblockhash") => params[0]
            .as_u64()
            .and_then(|h| headers.0.get(&h))
            .map(|h| json!(h.block_hash().to_string())),
        Some("getblockheader") => params[0]
            .as_str()
            .and_then(|s| s.parse::<BlockHash>().ok())
            .and_then(|h| headers.1.get(&h))
            .map(|h| json!(hex::encode(bitcoin::consensus::serialize(h)))),
        _ => None,
    };
    match result {
        Some(r) => (
            StatusCode::OK,
            json!({"result": r, "error": null, "id": id}).to_string(),
        )
            .into_response(),
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"result": null, "error": {"code": -8, "message": "not found"}, "id": id})
                .to_string(),
        )
            .into_response(),
    }
}

/// Serves `fake` on 127.0.0.1:0 until the runtime stops.
pub async fn serve(fake: Arc<Fake>) -> SocketAddr {
    let app = Router::new()
        .route("/experimental/backup/{n}", get(chunk))
        .route("/", post(rpc))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// Every node of `ts`, by message, merged (as a calendar builds a chunk).
pub fn collect(ts: &Timestamp, map: &mut BTreeMap<Vec<u8>, Timestamp>) {
    let mut stack = vec![ts];
    while let Some(node) = stack.pop() {
        let mut shallow = Timestamp::new(node.msg().to_vec()).unwrap();
        for a in node.attestations() {
            shallow.add_attestation(a.clone());
        }
        for (op, child) in node.ops() {
            shallow.add_op(op.clone()).unwrap();
            stack.push(child);
        }
        match map.get_mut(node.msg()) {
            Some(existing) => existing.merge(shallow).unwrap(),
            None => {
                map.insert(node.msg().to_vec(), shallow);
            }
        }
    }
}

/// The chunk of these proofs, in the calendar's format.
pub fn chunk_of<'a>(proofs: impl IntoIterator<Item = &'a Timestamp>) -> Vec<u8> {
    let mut map = BTreeMap::new();
    for ts in proofs {
        collect(ts, &mut map);
    }
    let mut out = Vec::new();
    for (msg, node) in &map {
        write_varbytes(&mut out, msg);
        write_varbytes(&mut out, &otsd::backup::node_record(node));
    }
    out
}

/// Commitment `i` of synthetic chunk `n` attested at `height`: 44 bytes,
/// as our calendar's (chunks of different heights share none).
pub fn commitment(n: u64, i: u64, height: u64) -> Vec<u8> {
    let mut c = n.to_be_bytes().to_vec();
    c.extend_from_slice(&i.to_be_bytes());
    let salt = [c.as_slice(), &height.to_be_bytes()].concat();
    c.extend_from_slice(&ots_proof::op::sha256(&salt)[..28]);
    c
}

/// Synthetic chunk `n`: `count` commitments, each hashed to a leaf of one
/// Merkle tree whose root is attested at `height` (whose header the fake
/// node must hold: [`Fake::add_header`] with the returned root).
pub fn synthetic(n: u64, count: u64, height: u64) -> (Vec<Timestamp>, [u8; 32]) {
    let commitments: Vec<Vec<u8>> = (0..count).map(|i| commitment(n, i, height)).collect();
    let leaves = commitments
        .iter()
        .map(|c| ots_proof::op::sha256(c))
        .collect();
    let tree = MerkleTree::new(leaves).unwrap();
    let proofs = commitments
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut ts = Timestamp::new(c.clone()).unwrap();
            let leaf = ts.add_op(Op::Sha256).unwrap();
            let root = leaf.add_path(tree.path(i).unwrap()).unwrap();
            root.add_attestation(Attestation::Bitcoin { height });
            ts
        })
        .collect();
    (proofs, tree.root())
}
