//! The `ots` binary end to end, against calendars and a Bitcoin node served
//! on 127.0.0.1 by the test: every command, and every error case with its
//! message and exit status.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use common::{ots, reference, reference_client, stderr, REFERENCE_SKIPPED};
use ots_proof::op::sha256;
use ots_proof::{Attestation, DetachedTimestampFile, Op, Timestamp};
use serde_json::{json, Value};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ots-proof/tests/data")
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// What the test calendar does.
#[derive(Default)]
struct CalendarState {
    url: Mutex<String>,
    /// Every commitment handed out, in order.
    commitments: Mutex<Vec<Vec<u8>>>,
    /// Reply to POST /digest with this instead of a proof.
    override_reply: Mutex<Option<Vec<u8>>>,
    /// Whether GET /timestamp has the Bitcoin part yet.
    confirmed: Mutex<bool>,
    /// Reply to GET /timestamp with this (status 200) instead.
    override_timestamp: Mutex<Option<Vec<u8>>>,
    /// How many GET /timestamp requests were made.
    timestamp_requests: Mutex<usize>,
}

/// The Bitcoin part the calendar hands out: sha256, then the attestation
/// at height 1 on the resulting "merkle root".
const HEIGHT: u64 = 1;

async fn post_digest(State(s): State<Arc<CalendarState>>, body: Bytes) -> (StatusCode, Vec<u8>) {
    if let Some(reply) = s.override_reply.lock().unwrap().clone() {
        return (StatusCode::OK, reply);
    }
    let mut t = Timestamp::new(body.to_vec()).unwrap();
    let end = t
        .add_path([
            Op::prepend(b"\x65\x00\x00\x00".to_vec()).unwrap(),
            Op::append(vec![7; 8]).unwrap(),
        ])
        .unwrap();
    s.commitments.lock().unwrap().push(end.msg().to_vec());
    end.add_attestation(Attestation::pending(s.url.lock().unwrap().clone()).unwrap());
    (StatusCode::OK, t.serialize().unwrap())
}

async fn get_timestamp(
    State(s): State<Arc<CalendarState>>,
    UrlPath(hex_c): UrlPath<String>,
) -> (StatusCode, Vec<u8>) {
    *s.timestamp_requests.lock().unwrap() += 1;
    if let Some(reply) = s.override_timestamp.lock().unwrap().clone() {
        return (StatusCode::OK, reply);
    }
    let commitment = hex::decode(hex_c).unwrap_or_default();
    if !s.commitments.lock().unwrap().contains(&commitment) {
        return (StatusCode::NOT_FOUND, b"Not found".to_vec());
    }
    if !*s.confirmed.lock().unwrap() {
        return (
            StatusCode::NOT_FOUND,
            b"Pending confirmation in Bitcoin blockchain\n".to_vec(),
        );
    }
    let mut t = Timestamp::new(commitment).unwrap();
    t.add_op(Op::Sha256)
        .unwrap()
        .add_attestation(Attestation::Bitcoin { height: HEIGHT });
    (StatusCode::OK, t.serialize().unwrap())
}

async fn calendar() -> (String, Arc<CalendarState>) {
    let state = Arc::new(CalendarState::default());
    let app = Router::new()
        .route("/digest", post(post_digest))
        .route("/timestamp/{c}", get(get_timestamp))
        .with_state(state.clone());
    let url = serve(app).await;
    *state.url.lock().unwrap() = url.clone();
    (url, state)
}

/// A node answering getblockcount/getblockhash/getblockheader with one
/// header at `height`, as Bitcoin Core does (error -8 past the tip).
async fn node(height: u64, header: Vec<u8>) -> String {
    let header = Arc::new(header);
    let app = Router::new().route(
        "/",
        post(move |Json(body): Json<Value>| {
            let header = header.clone();
            async move {
                let id = body["id"].clone();
                let result = match body["method"].as_str() {
                    Some("getblockcount") => json!(height),
                    Some("getblockhash") if body["params"][0] == json!(height) => {
                        json!("00000000000000000000000000000000000000000000000000000000000000aa")
                    }
                    Some("getblockhash") => {
                        return (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            Json(json!({"result": null, "error": {"code": -8, "message": "Block height out of range"}, "id": id})),
                        )
                    }
                    Some("getblockheader") => json!(hex::encode(header.as_slice())),
                    _ => {
                        return (
                            StatusCode::NOT_FOUND,
                            Json(json!({"result": null, "error": {"code": -32601, "message": "Method not found"}, "id": id})),
                        )
                    }
                };
                (StatusCode::OK, Json(json!({"result": result, "error": null, "id": id})))
            }
        }),
    );
    serve(app).await
}

fn header_with_root(root: &[u8], time: u32) -> Vec<u8> {
    let mut h = vec![0u8; 80];
    h[0] = 2;
    h[36..68].copy_from_slice(root);
    h[68..72].copy_from_slice(&time.to_le_bytes());
    h
}

#[test]
fn info_prints_the_reference_text_for_every_example() {
    let dir = vectors();
    for entry in std::fs::read_dir(dir.join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "ots") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let out = ots(&["info", path.to_str().unwrap()], &dir);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let expected =
            std::fs::read_to_string(dir.join("expected-info").join(format!("{name}.txt"))).unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), expected, "{name}");
    }
}

#[test]
fn info_errors() {
    let dir = vectors();
    let out = ots(&["info", "examples/invalid/bad-major-version.ots"], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Invalid timestamp file")
            && stderr(&out).contains("unsupported major version 255")
    );
    let out = ots(&["info", "examples/hello-world.txt"], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not a timestamp file"),
        "{}",
        stderr(&out)
    );
    let out = ots(&["info", "no-such-file.ots"], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Could not read no-such-file.ots"));
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_hello_world_against_block_358391() {
    let dir = vectors();
    let header = hex::decode(
        std::fs::read_to_string(dir.join("block-358391.hex"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let url = node(358_391, header.clone()).await;
    let out = ots(
        &[
            "--bitcoin-node",
            &url,
            "verify",
            "examples/hello-world.txt.ots",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out)
        .contains("Success! Bitcoin block 358391 attests existence as of 2015-05-28 UTC"));

    // The wrong header: verification fails, exit 1.
    let mut wrong = header;
    wrong[40] ^= 1;
    let url = node(358_391, wrong).await;
    let out = ots(
        &[
            "--bitcoin-node",
            &url,
            "verify",
            "examples/hello-world.txt.ots",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Bitcoin verification failed: digest"),
        "{}",
        stderr(&out)
    );

    // A node that does not have the block yet.
    let url = node(1000, vec![0; 80]).await;
    let out = ots(
        &[
            "--bitcoin-node",
            &url,
            "verify",
            "examples/hello-world.txt.ots",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Bitcoin block height 358391 not found; 1000 is highest known block")
    );

    // No node at all.
    let out = ots(
        &[
            "--bitcoin-node",
            "http://127.0.0.1:9/",
            "verify",
            "examples/hello-world.txt.ots",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Could not connect to Bitcoin node"),
        "{}",
        stderr(&out)
    );

    // --no-bitcoin: nothing verified, the manual check is explained.
    let out = ots(
        &["--no-bitcoin", "verify", "examples/hello-world.txt.ots"],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("check that Bitcoin block 358391 has merkleroot 8a1b66ec"));

    // Digest and file mismatches.
    let out = ots(
        &[
            "--no-bitcoin",
            "verify",
            "-d",
            "00",
            "examples/hello-world.txt.ots",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Digest provided does not match digest in timestamp"));
    let out = ots(
        &[
            "--no-bitcoin",
            "verify",
            "-f",
            "examples/empty",
            "examples/hello-world.txt.ots",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("File does not match original!"));
}

/// An Esplora-style explorer with one block at `height`: `header`, named by
/// `hash` (the header's own hash unless the test wants a lying explorer).
async fn esplora(height: u64, header: Vec<u8>, hash: Option<String>) -> String {
    let hash = hash.unwrap_or_else(|| {
        let parsed: bitcoin::block::Header = bitcoin::consensus::deserialize(&header).unwrap();
        parsed.block_hash().to_string()
    });
    let served = hash.clone();
    let app = Router::new()
        .route(
            "/api/block-height/{h}",
            get(move |UrlPath(h): UrlPath<u64>| {
                let hash = served.clone();
                async move {
                    if h == height {
                        (StatusCode::OK, hash)
                    } else {
                        (StatusCode::NOT_FOUND, "Block not found".to_string())
                    }
                }
            }),
        )
        .route(
            "/api/block/{hash}/header",
            get(move |UrlPath(asked): UrlPath<String>| {
                let header = hex::encode(&header);
                let hash = hash.clone();
                async move {
                    if asked == hash {
                        (StatusCode::OK, header)
                    } else {
                        (StatusCode::NOT_FOUND, "Block not found".to_string())
                    }
                }
            }),
        )
        .route(
            "/api/blocks/tip/height",
            get(move || async move { height.to_string() }),
        );
    format!("{}/api", serve(app).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_hello_world_with_an_esplora_explorer() {
    let dir = vectors();
    let header = hex::decode(
        std::fs::read_to_string(dir.join("block-358391.hex"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let verify = |url: &str| {
        ots(
            &["verify", "--esplora", url, "examples/hello-world.txt.ots"],
            &dir,
        )
    };
    let url = esplora(358_391, header.clone(), None).await;
    let out = verify(&url);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("Success! Bitcoin block 358391 attests existence as of 2015-05-28 UTC"),
        "{}",
        stderr(&out)
    );
    // A trailing slash on the base URL is the same explorer.
    let out = verify(&format!("{url}/"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // A header whose merkle root is not the attested digest (served
    // consistently under its own hash): refused.
    let mut wrong = header.clone();
    wrong[40] ^= 1;
    let url = esplora(358_391, wrong, None).await;
    let out = verify(&url);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Bitcoin verification failed: digest"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("Success!"), "{}", stderr(&out));

    // An explorer naming one hash and serving a header of another block.
    let other = "00".repeat(32);
    let url = esplora(358_391, header.clone(), Some(other.clone())).await;
    let out = verify(&url);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "Could not get the block header from the explorer: explorer {url}/block/{other}/header: malformed reply: the header hashes to "
        )),
        "{}",
        stderr(&out)
    );

    // An explorer without the block: its tip is reported.
    let url = esplora(1000, header, None).await;
    let out = verify(&url);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Bitcoin block height 358391 not found; 1000 is highest known block"),
        "{}",
        stderr(&out)
    );

    // No explorer there.
    let out = verify("http://127.0.0.1:9/api");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "Could not get the block header from the explorer: explorer http://127.0.0.1:9/api/block-height/358391: "
        ),
        "{}",
        stderr(&out)
    );
    // Not a URL; and an explorer with a node is a usage error.
    let out = verify("not a url");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("explorer URL \"not a url\": "),
        "{}",
        stderr(&out)
    );
    let out = ots(
        &[
            "--bitcoin-node",
            "http://127.0.0.1:9/",
            "verify",
            "--esplora",
            "http://127.0.0.1:9/",
            "examples/hello-world.txt.ots",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("--esplora and --bitcoin-node are two sources of block headers; give one"),
        "{}",
        stderr(&out)
    );
    let out = ots(
        &[
            "--no-bitcoin",
            "verify",
            "--esplora",
            "http://127.0.0.1:9/",
            "examples/hello-world.txt.ots",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "--esplora is a source of Bitcoin block headers; it cannot be used with --no-bitcoin"
        ),
        "{}",
        stderr(&out)
    );
    // --help says what is trusted.
    let out = ots(&["verify", "--help"], &dir);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--esplora <URL>"), "{help}");
    assert!(
        help.contains("The explorer is TRUSTED to serve the real header at each height")
            && help.contains("a node you run checks the chain itself and is not trusted that way"),
        "{help}"
    );
}

/// Standard output as one JSON document.
fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn info_json_describes_every_example() {
    let dir = vectors();
    for entry in std::fs::read_dir(dir.join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "ots") {
            continue;
        }
        let name = path.display().to_string();
        let out = ots(&["info", "--json", path.to_str().unwrap()], &dir);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        let v = stdout_json(&out);
        let proof = DetachedTimestampFile::deserialize(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["file_hash"], proof.hash_op().name(), "{name}");
        assert_eq!(v["file_digest"], hex::encode(proof.file_digest()), "{name}");
        // Every attestation, on the message it is made on, in order.
        let all = proof.timestamp().all_attestations();
        let listed = v["attestations"].as_array().unwrap();
        assert_eq!(listed.len(), all.len(), "{name}");
        for (l, (msg, a)) in listed.iter().zip(&all) {
            assert_eq!(l["msg"], hex::encode(msg), "{name}");
            match a {
                Attestation::Bitcoin { height } => {
                    assert_eq!(l["type"], "bitcoin");
                    assert_eq!(l["height"], *height);
                }
                Attestation::Pending { uri } => {
                    assert_eq!(l["type"], "pending");
                    assert_eq!(l["uri"], uri.as_str());
                }
                _ => assert!(l["type"].is_string()),
            }
            // The node it names holds the same message.
            let node = &v["tree"][l["node"].as_u64().unwrap() as usize];
            assert_eq!(node["msg"], l["msg"], "{name}");
        }
        // The tree: each node's message is its op applied to its parent's.
        let tree = v["tree"].as_array().unwrap();
        assert_eq!(tree[0]["msg"], hex::encode(proof.file_digest()));
        for (i, node) in tree.iter().enumerate().skip(1) {
            assert_eq!(node["id"], i);
            let parent = &tree[node["parent"].as_u64().unwrap() as usize];
            let arg = node["op"]["argument"]
                .as_str()
                .map(|a| hex::decode(a).unwrap());
            let op = match (node["op"]["name"].as_str().unwrap(), arg) {
                ("append", Some(a)) => Op::append(a).unwrap(),
                ("prepend", Some(a)) => Op::prepend(a).unwrap(),
                ("sha256", None) => Op::Sha256,
                ("sha1", None) => Op::Sha1,
                ("ripemd160", None) => Op::Ripemd160,
                ("keccak256", None) => Op::Keccak256,
                ("reverse", None) => Op::Reverse,
                ("hexlify", None) => Op::Hexlify,
                other => panic!("{name}: unexpected op {other:?}"),
            };
            let parent_msg = hex::decode(parent["msg"].as_str().unwrap()).unwrap();
            assert_eq!(
                node["msg"],
                hex::encode(op.apply(&parent_msg).unwrap()),
                "{name}: node {i}"
            );
        }
        let heights: Vec<u64> = all
            .iter()
            .filter_map(|(_, a)| match a {
                Attestation::Bitcoin { height } => Some(*height),
                _ => None,
            })
            .collect();
        let mut sorted = heights.clone();
        sorted.sort();
        assert_eq!(v["bitcoin_heights"], json!(sorted), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_json_reports_checks_heights_and_times() {
    let dir = vectors();
    let header = hex::decode(
        std::fs::read_to_string(dir.join("block-358391.hex"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let time = u32::from_le_bytes(header[68..72].try_into().unwrap());
    let url = esplora(358_391, header.clone(), None).await;
    let out = ots(
        &[
            "verify",
            "--json",
            "--esplora",
            &url,
            "examples/hello-world.txt.ots",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = stdout_json(&out);
    assert_eq!(
        v["result"],
        json!({"verified": true, "height": 358391, "time": time, "date": "2015-05-28 UTC"})
    );
    assert_eq!(v["checks"][0]["result"], "verified");
    assert_eq!(v["checks"][0]["height"], 358_391);
    assert_eq!(v["checks"][0]["time"], time);
    assert_eq!(v["attestations"][0]["type"], "bitcoin");
    assert_eq!(v["bitcoin_heights"], json!([358391]));
    assert!(v["tree"].as_array().unwrap().len() > 1);

    // The wrong header: not verified, the check says why.
    let mut wrong = header;
    wrong[40] ^= 1;
    let url = esplora(358_391, wrong, None).await;
    let out = ots(
        &[
            "verify",
            "--json",
            "--esplora",
            &url,
            "examples/hello-world.txt.ots",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1));
    let v = stdout_json(&out);
    assert_eq!(v["result"]["verified"], false);
    assert_eq!(v["checks"][0]["result"], "mismatch");
    assert!(v["checks"][0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("digest"));

    // Bitcoin disabled: not checked.
    let out = ots(
        &[
            "--no-bitcoin",
            "verify",
            "--json",
            "examples/hello-world.txt.ots",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1));
    let v = stdout_json(&out);
    assert_eq!(v["checks"][0]["result"], "not_checked");
    assert_eq!(v["result"]["verified"], false);

    // The file does not match: the reason, and no check made.
    let out = ots(
        &[
            "--no-bitcoin",
            "verify",
            "--json",
            "-f",
            "examples/empty",
            "examples/hello-world.txt.ots",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1));
    let v = stdout_json(&out);
    assert_eq!(
        v["result"],
        json!({"verified": false, "reason": "File does not match original!"})
    );
    assert_eq!(v["checks"], json!([]));
}

/// A hostile proof: `n` sibling append operations on the root, each to a
/// Bitcoin attestation: every 25 input bytes a node of its own (the shape
/// that made a 100 MB proof cost 2.9 GB).
fn sibling_ops_proof(n: u64) -> Vec<u8> {
    let mut out = ots_proof::detached::MAGIC.to_vec();
    out.extend_from_slice(&[1, 0x08]);
    out.extend_from_slice(&sha256(b"hostile"));
    for i in 0..n {
        if i + 1 < n {
            out.push(0xff);
        }
        out.extend_from_slice(&[0xf0, 11]);
        out.extend_from_slice(&i.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0]);
        out.push(0x00);
        out.extend_from_slice(&hex::decode("0588960d73d71901").unwrap());
        out.extend_from_slice(&[1, 0]);
    }
    out
}

/// A hostile proof far under the size limit whose tree is huge: from a
/// 4095-byte message, `chains` siblings each append one distinct byte
/// (to 4096 bytes) and then reverse it `len` times, one input byte per
/// 4 KiB node: about 4,000 times its size in memory, decoded.
fn reverse_chains_proof(chains: u8, len: usize) -> Vec<u8> {
    let mut out = ots_proof::detached::MAGIC.to_vec();
    out.extend_from_slice(&[1, 0x08]);
    out.extend_from_slice(&sha256(b"hostile"));
    // The root's one item: append 4063 bytes (varuint df 1f).
    out.extend_from_slice(&[0xf0, 0xdf, 0x1f]);
    out.extend_from_slice(&[7; 4063]);
    for c in 0..chains {
        if c + 1 < chains {
            out.push(0xff);
        }
        out.extend_from_slice(&[0xf0, 1, c]);
        out.extend(std::iter::repeat_n(0xf2, len));
        out.push(0x00);
        out.extend_from_slice(&hex::decode("0588960d73d71901").unwrap());
        out.extend_from_slice(&[1, 0]);
    }
    out
}

#[test]
fn hostile_proofs_are_refused_or_bounded() {
    let work = tempfile::tempdir().unwrap();
    let limit = ots::bounds::MAX_PROOF_FILE_BYTES;
    // Sibling operations, 25 bytes each after a 64-byte header.
    let over = sibling_ops_proof((limit - 64) / 25 + 1);
    assert!(over.len() as u64 > limit && over.len() as u64 <= limit + 25);
    let under = sibling_ops_proof((limit - 64) / 25);
    assert!(under.len() as u64 <= limit && under.len() as u64 > limit - 25);
    std::fs::write(work.path().join("over.ots"), &over).unwrap();
    std::fs::write(work.path().join("under.ots"), &under).unwrap();

    for command in ["info", "verify"] {
        let out = ots(&["--no-bitcoin", command, "over.ots"], work.path());
        assert_eq!(out.status.code(), Some(1), "{command}");
        assert!(
            stderr(&out).contains(&format!(
                "Could not read over.ots: it is {} bytes, over the {limit}-byte limit for a proof (real proofs are a few KB)",
                over.len()
            )),
            "{command}: {}",
            stderr(&out)
        );
    }

    // Just under: read, decoded within the budget, shown.
    assert!(matches!(
        ots::bounds::estimate(&under, ots::bounds::decode_budget(under.len())),
        ots::bounds::Estimate::Within(_)
    ));
    let out = ots(&["info", "--json", "under.ots"], work.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = stdout_json(&out);
    assert_eq!(
        v["attestations"].as_array().unwrap().len() as u64,
        (limit - 64) / 25
    );
    let digest = hex::encode(sha256(b"hostile"));
    let out = ots(
        &["--no-bitcoin", "-q", "verify", "-d", &digest, "under.ots"],
        work.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // Far under the size limit, but a tree of some 50 MB: refused before
    // it is built.
    let chains = reverse_chains_proof(64, 200);
    assert!(chains.len() < 20_000, "{}", chains.len());
    let budget = ots::bounds::decode_budget(chains.len());
    assert_eq!(
        ots::bounds::estimate(&chains, budget),
        ots::bounds::Estimate::OverBudget
    );
    std::fs::write(work.path().join("chains.ots"), &chains).unwrap();
    let out = ots(&["info", "chains.ots"], work.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "Invalid timestamp file \"chains.ots\": decoding it would take over {budget} bytes of memory"
        )),
        "{}",
        stderr(&out)
    );
    // The same shape, small enough, is an ordinary proof.
    let few = reverse_chains_proof(2, 10);
    assert!(matches!(
        ots::bounds::estimate(&few, ots::bounds::decode_budget(few.len())),
        ots::bounds::Estimate::Within(_)
    ));
    std::fs::write(work.path().join("few.ots"), &few).unwrap();
    let out = ots(&["info", "few.ots"], work.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_asks_about_a_bounded_number_of_attestations() {
    let dir = vectors();
    let header = hex::decode(
        std::fs::read_to_string(dir.join("block-358391.hex"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let url = esplora(358_391, header, None).await;
    // 100 Bitcoin attestations, each at a height the explorer lacks.
    let mut proof = DetachedTimestampFile::from_data(ots_proof::HashOp::Sha256, b"many");
    for i in 0..100u64 {
        proof
            .timestamp_mut()
            .add_op(Op::append(i.to_be_bytes().to_vec()).unwrap())
            .unwrap()
            .add_attestation(Attestation::Bitcoin {
                height: 1_000_000 + i,
            });
    }
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("many.ots"), proof.serialize().unwrap()).unwrap();
    let digest = hex::encode(sha256(b"many"));
    let out = ots(
        &[
            "verify",
            "--json",
            "--esplora",
            &url,
            "-d",
            &digest,
            "many.ots",
        ],
        work.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let max = ots::verify::MAX_BITCOIN_CHECKS;
    let err = stderr(&out);
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("Bitcoin block height "))
            .count(),
        max,
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "Not checking {} more Bitcoin attestation(s): at most {max} are checked",
            100 - max
        )),
        "{err}"
    );
    let v = stdout_json(&out);
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 100);
    assert_eq!(
        checks
            .iter()
            .filter(|c| c["result"] == "no_such_block")
            .count(),
        max
    );
    assert_eq!(
        checks
            .iter()
            .filter(|c| c["result"] == "not_checked")
            .count(),
        100 - max
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stamp_upgrade_verify_prune() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("a.txt"), b"first").unwrap();
    std::fs::write(work.path().join("b.txt"), b"second").unwrap();
    let (url, state) = calendar().await;

    let out = ots(&["stamp", "-c", &url, "a.txt", "b.txt"], work.path());
    assert!(out.status.success(), "{}", stderr(&out));
    for name in ["a.txt", "b.txt"] {
        let proof = DetachedTimestampFile::deserialize(
            &std::fs::read(work.path().join(format!("{name}.ots"))).unwrap(),
        )
        .unwrap();
        let data = std::fs::read(work.path().join(name)).unwrap();
        assert_eq!(proof.file_digest(), sha256(&data));
        let pending: Vec<_> = proof
            .timestamp()
            .all_attestations()
            .into_iter()
            .map(|(_, a)| a.clone())
            .collect();
        assert_eq!(pending, vec![Attestation::pending(url.clone()).unwrap()]);
    }
    // Stamping again would overwrite: refused.
    let out = ots(&["stamp", "-c", &url, "a.txt"], work.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Failed to create timestamp \"a.txt.ots\""),
        "{}",
        stderr(&out)
    );

    // Not whitelisted: the calendar is not contacted.
    let out = ots(&["upgrade", "a.txt.ots"], work.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Calendar not in whitelist"));
    // Whitelisted but pending: its reason is shown.
    let out = ots(&["-l", &url, "upgrade", "a.txt.ots"], work.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Pending confirmation in Bitcoin blockchain"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("Failed! Timestamp not complete"));

    *state.confirmed.lock().unwrap() = true;
    let out = ots(&["-l", &url, "upgrade", "-n", "a.txt.ots"], work.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !work.path().join("a.txt.ots.bak").exists(),
        "dry run wrote nothing"
    );
    let out = ots(&["-l", &url, "upgrade", "a.txt.ots"], work.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Success! Timestamp complete"));
    assert!(work.path().join("a.txt.ots.bak").exists());

    // Verify against a node whose block 1 has the calendar's root.
    // a.txt and b.txt were stamped together: the first commitment.
    let root = sha256(&state.commitments.lock().unwrap()[0]);
    let node_url = node(HEIGHT, header_with_root(&root, 1_700_000_000)).await;
    // The proof is complete: as the reference, neither verify nor upgrade
    // asks its calendar again (whitelisted or not), nor mentions it.
    let requests = *state.timestamp_requests.lock().unwrap();
    for whitelist in [&[][..], &["-l", &url][..]] {
        let mut args = whitelist.to_vec();
        args.extend(["--bitcoin-node", &node_url, "verify", "a.txt.ots"]);
        let out = ots(&args, work.path());
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            stderr(&out),
            "Assuming target filename is \"a.txt\"\n\
             Success! Bitcoin block 1 attests existence as of 2023-11-14 UTC\n"
        );
        let mut args = whitelist.to_vec();
        args.extend(["upgrade", "a.txt.ots"]);
        let out = ots(&args, work.path());
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stderr(&out), "Success! Timestamp complete\n");
    }
    assert_eq!(*state.timestamp_requests.lock().unwrap(), requests);

    // Prune drops the pending attestation; a second backup is refused.
    let out = ots(
        &["--bitcoin-node", &node_url, "prune", "a.txt.ots"],
        work.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    std::fs::remove_file(work.path().join("a.txt.ots.bak")).unwrap();
    let out = ots(
        &["--bitcoin-node", &node_url, "prune", "a.txt.ots"],
        work.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let pruned =
        DetachedTimestampFile::deserialize(&std::fs::read(work.path().join("a.txt.ots")).unwrap())
            .unwrap();
    let all = pruned.timestamp().all_attestations();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].1, &Attestation::Bitcoin { height: HEIGHT });
}

#[tokio::test(flavor = "multi_thread")]
async fn stamp_errors() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("a.txt"), b"x").unwrap();
    // Unreachable calendar.
    let out = ots(&["stamp", "-c", "http://127.0.0.1:9", "a.txt"], work.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("calendar http://127.0.0.1:9/: unreachable: "),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains(
        "Failed to create timestamp: need at least 1 attestation but received 0 within timeout"
    ));
    assert!(!work.path().join("a.txt.ots").exists());
    // m larger than the calendars given.
    let out = ots(
        &["stamp", "-c", "http://127.0.0.1:9", "-m", "2", "a.txt"],
        work.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("m (2) cannot be greater than available calendars (1)"));
    // Oversized and malformed replies.
    let (url, state) = calendar().await;
    *state.override_reply.lock().unwrap() = Some(vec![0; 10_001]);
    let out = ots(&["stamp", "-c", &url, "a.txt"], work.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("calendar {url}/: reply exceeds 10000 bytes")),
        "{}",
        stderr(&out)
    );
    assert!(!work.path().join("a.txt.ots").exists());
    *state.override_reply.lock().unwrap() = Some(vec![0xff, 0x42]);
    let out = ots(&["stamp", "-c", &url, "a.txt"], work.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("calendar {url}/: malformed reply: ")),
        "{}",
        stderr(&out)
    );
    assert!(!work.path().join("a.txt.ots").exists());
    // A calendar that never answers in time.
    let slow = serve(Router::new().route(
        "/digest",
        post(|| async {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            Vec::<u8>::new()
        }),
    ))
    .await;
    let out = ots(
        &["stamp", "-c", &slow, "--timeout", "1", "a.txt"],
        work.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("calendar {slow}/: timed out")),
        "{}",
        stderr(&out)
    );
    // A missing file.
    let out = ots(&["stamp", "-c", &url, "nope.txt"], work.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Could not read \"nope.txt\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn stamp_digest_errors() {
    let work = tempfile::tempdir().unwrap();
    let (url, state) = calendar().await;
    let sha256_hex = "00".repeat(32);
    let sha1_hex = "00".repeat(20);
    for (args, message) in [
        (
            vec!["--digest", "abcd"],
            "Digest \"abcd\" is 2 bytes long; a sha256 digest is 32 bytes (64 hex digits)",
        ),
        (
            vec!["--hash-alg", "sha1", "--digest", &sha256_hex],
            "is 32 bytes long; a sha1 digest is 20 bytes (40 hex digits)",
        ),
        (
            vec![
                "--hash-alg",
                "ripemd160",
                "--digest",
                &sha1_hex,
                "--digest",
                &sha256_hex,
            ],
            "is 32 bytes long; a ripemd160 digest is 20 bytes (40 hex digits)",
        ),
        (
            vec!["--hash-alg", "keccak256", "--digest", &sha1_hex],
            "is 20 bytes long; a keccak256 digest is 32 bytes (64 hex digits)",
        ),
        (vec!["--digest", "xyz"], "Digest \"xyz\" is not hexadecimal"),
        (
            vec![
                "--digest",
                &sha256_hex,
                "--digest",
                &sha256_hex,
                "-o",
                "x.ots",
            ],
            "-o names the proof of a single --digest; give one --digest and no file",
        ),
    ] {
        let mut all = vec!["stamp", "-c", &url];
        all.extend(args);
        let out = ots(&all, work.path());
        assert_eq!(out.status.code(), Some(1), "{all:?}");
        assert!(stderr(&out).contains(message), "{all:?}: {}", stderr(&out));
    }
    // Refused before any calendar is asked, and nothing written.
    assert!(state.commitments.lock().unwrap().is_empty());
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
    // -o and --hash-alg mean nothing without --digest: a usage error.
    let out = ots(&["stamp", "-c", &url, "-o", "x.ots", "a.txt"], work.path());
    assert_eq!(out.status.code(), Some(2));
    // An existing proof is not overwritten.
    std::fs::write(work.path().join(format!("{sha256_hex}.ots")), b"keep").unwrap();
    let out = ots(&["stamp", "-c", &url, "--digest", &sha256_hex], work.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read(work.path().join(format!("{sha256_hex}.ots"))).unwrap(),
        b"keep"
    );
}

/// Stamps `a.txt` in `work` with the test calendar; returns the proof.
async fn stamped(work: &Path) -> (String, Arc<CalendarState>, Vec<u8>) {
    std::fs::write(work.join("a.txt"), b"to upgrade").unwrap();
    let (url, state) = calendar().await;
    let out = ots(&["stamp", "-c", &url, "a.txt"], work);
    assert!(out.status.success(), "{}", stderr(&out));
    let proof = std::fs::read(work.join("a.txt.ots")).unwrap();
    (url, state, proof)
}

/// A failed upgrade: exit 1, `message` on a line of its own, the proof
/// left as it was and no backup.
fn assert_upgrade_fails(out: &Output, message: &str, work: &Path, proof: &[u8]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.lines().any(|l| l.starts_with(message)), "{err}");
    assert!(
        err.lines().any(|l| l == "Failed! Timestamp not complete"),
        "{err}"
    );
    assert_eq!(std::fs::read(work.join("a.txt.ots")).unwrap(), proof);
    assert!(!work.join("a.txt.ots.bak").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_errors() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let (url, state, proof) = stamped(work).await;
    // Unreachable (the calendar given with -c instead of the proof's).
    let out = ots(&["upgrade", "-c", "http://127.0.0.1:9", "a.txt.ots"], work);
    assert_upgrade_fails(
        &out,
        "calendar http://127.0.0.1:9/: unreachable: ",
        work,
        &proof,
    );
    // The proof's calendar, whitelisted, answering 10,001 bytes.
    *state.override_timestamp.lock().unwrap() = Some(vec![0; 10_001]);
    let out = ots(&["-l", &url, "upgrade", "a.txt.ots"], work);
    assert_upgrade_fails(
        &out,
        &format!("calendar {url}/: reply exceeds 10000 bytes"),
        work,
        &proof,
    );
    // Exactly 10,000 bytes is read (and is not a timestamp).
    *state.override_timestamp.lock().unwrap() = Some(vec![0; 10_000]);
    let out = ots(&["-l", &url, "upgrade", "a.txt.ots"], work);
    assert_upgrade_fails(
        &out,
        &format!("calendar {url}/: malformed reply: "),
        work,
        &proof,
    );
    // Malformed.
    *state.override_timestamp.lock().unwrap() = Some(vec![0xff, 0x42]);
    let out = ots(&["-l", &url, "upgrade", "a.txt.ots"], work);
    assert_upgrade_fails(
        &out,
        &format!("calendar {url}/: malformed reply: "),
        work,
        &proof,
    );
    // Not whitelisted: named, not contacted.
    let out = ots(&["upgrade", "a.txt.ots"], work);
    assert_upgrade_fails(
        &out,
        &format!("Ignoring attestation from calendar {url}: Calendar not in whitelist"),
        work,
        &proof,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_timeout() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let (_, _, proof) = stamped(work).await;
    // Answers after 30 s; upgrade gives up after its 10 s.
    let slow = serve(Router::new().route(
        "/timestamp/{c}",
        get(|| async {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            Vec::<u8>::new()
        }),
    ))
    .await;
    let started = std::time::Instant::now();
    let out = ots(&["upgrade", "-c", &slow, "a.txt.ots"], work);
    assert!(started.elapsed() < std::time::Duration::from_secs(25));
    assert_upgrade_fails(&out, &format!("calendar {slow}/: timed out"), work, &proof);
}

#[test]
fn verify_without_a_configured_node() {
    // No --bitcoin-node and no local node configuration: HOME is empty.
    let home = tempfile::tempdir().unwrap();
    let dir = vectors();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ots"))
        .args(["--no-cache", "--btc-regtest", "verify"])
        .arg(dir.join("examples/hello-world.txt.ots"))
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let cookie = home.path().join(".bitcoin/regtest/.cookie");
    assert!(
        stderr(&out).lines().any(|l| l.starts_with(&format!(
            "Could not connect to Bitcoin node: cannot read the cookie file {}: ",
            cookie.display()
        ))),
        "{}",
        stderr(&out)
    );
    // The message names both ways to get block headers.
    assert!(
        stderr(&out).contains(
            "; give --bitcoin-node URL for a node you run, or --esplora URL for a block explorer (trusted for block headers)"
        ),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("Success!"));
}

#[tokio::test(flavor = "multi_thread")]
async fn reference_client_interoperates() {
    let Some(python_ots) = reference_client() else {
        eprintln!("{REFERENCE_SKIPPED}");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("ours.txt"), b"stamped by us").unwrap();
    std::fs::write(work.path().join("theirs.txt"), b"stamped by the reference").unwrap();
    let (url, state) = calendar().await;

    // Ours stamps, theirs reads the pending proof.
    let out = ots(&["stamp", "-c", &url, "ours.txt"], work.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let theirs_info = reference(&python_ots, &["info", "ours.txt.ots"], work.path());
    let ours_info = ots(&["info", "ours.txt.ots"], work.path());
    assert!(theirs_info.status.success(), "{}", stderr(&theirs_info));
    assert_eq!(theirs_info.stdout, ours_info.stdout);

    // Theirs stamps against the same calendar.
    let out = reference(
        &python_ots,
        &["stamp", "-c", &url, "-m", "1", "theirs.txt"],
        work.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // The calendar confirms; ours upgrades both, theirs verifies ours and
    // ours verifies theirs, against the same node.
    *state.confirmed.lock().unwrap() = true;
    for proof in ["ours.txt.ots", "theirs.txt.ots"] {
        let out = ots(&["-l", &url, "upgrade", proof], work.path());
        assert!(out.status.success(), "{proof}: {}", stderr(&out));
    }
    let commitments = state.commitments.lock().unwrap().clone();
    assert_eq!(commitments.len(), 2);
    for (i, proof) in ["ours.txt.ots", "theirs.txt.ots"].iter().enumerate() {
        let node_url = node(
            HEIGHT,
            header_with_root(&sha256(&commitments[i]), 1_700_000_000),
        )
        .await;
        let theirs = reference(
            &python_ots,
            &["--bitcoin-node", &node_url, "verify", proof],
            work.path(),
        );
        assert!(
            String::from_utf8_lossy(&theirs.stderr)
                .contains("Success! Bitcoin block 1 attests existence"),
            "reference verify of {proof}: {}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        let ours = ots(&["--bitcoin-node", &node_url, "verify", proof], work.path());
        assert!(ours.status.success(), "{proof}: {}", stderr(&ours));
    }
}
