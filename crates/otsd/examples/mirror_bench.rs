//! Bench of the mirror (issue 14): mirrors a synthetic calendar of
//! `--chunks` chunks of `--per-chunk` completed commitments each (one
//! Merkle tree per chunk, attested in a made-up block whose header the
//! fake node serves) over loopback with the `otsd mirror` binary, every
//! Bitcoin attestation checked against its header; reports the time to
//! hold every chunk, the mirror's peak RSS (`VmHWM`), and the rate of
//! `GET /timestamp` on the mirror (every reply checked to be 200, a sample
//! compared byte for byte with the expected proof).
//!
//! ```text
//! cargo build --release -p otsd --bin otsd --example mirror_bench
//! target/release/examples/mirror_bench --chunks 1000
//! ```
//!
//! Targets for 1000 chunks (1,000,000 commitments): at most 60 s and
//! 200 MB RSS. `--otsd PATH` picks the binary (default: `otsd` next to the
//! example's directory, that is, of the same profile).

#[path = "../tests/mirror_support/mod.rs"]
mod mirror_support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mirror_support::{chunk_of, commitment, synthetic, Fake};
use tokio::io::AsyncBufReadExt;

/// Height of chunk 0's block.
const FIRST_HEIGHT: u64 = 1_000;
/// Chunks mirrored by default.
const DEFAULT_CHUNKS: u64 = 1_000;
/// Commitments per chunk (a calendar's chunk).
const DEFAULT_PER_CHUNK: u64 = 1_000;
/// GETs by default.
const DEFAULT_GETS: u64 = 50_000;
/// Concurrent GET connections by default.
const DEFAULT_CONCURRENCY: u64 = 8;
/// Chunks fetched at once by the mirror.
const IN_FLIGHT: &str = "8";
/// How long the bench waits for the mirror at most.
const MAX_WAIT: Duration = Duration::from_secs(3600);

struct Args {
    chunks: u64,
    per_chunk: u64,
    gets: u64,
    concurrency: u64,
    otsd: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        chunks: DEFAULT_CHUNKS,
        per_chunk: DEFAULT_PER_CHUNK,
        gets: DEFAULT_GETS,
        concurrency: DEFAULT_CONCURRENCY,
        otsd: std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.parent()?.join("otsd")))
            .unwrap_or_else(|| PathBuf::from("otsd")),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--chunks" => a.chunks = value().parse().expect("--chunks N"),
            "--per-chunk" => a.per_chunk = value().parse().expect("--per-chunk N"),
            "--gets" => a.gets = value().parse().expect("--gets N"),
            "--concurrency" => a.concurrency = value().parse().expect("--concurrency N"),
            "--otsd" => a.otsd = PathBuf::from(value()),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// `VmHWM` and `VmRSS` of process `pid`, kB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[tokio::main]
async fn main() {
    let a = args();
    let fake = Arc::new(Fake::default());
    let (chunks, per_chunk) = (a.chunks, a.per_chunk);
    let weak = Arc::downgrade(&fake);
    *fake.generator.lock().unwrap() = Some(Arc::new(move |n| {
        if n >= chunks {
            return None;
        }
        let (proofs, root) = synthetic(n, per_chunk, FIRST_HEIGHT + n);
        weak.upgrade()?.add_header(FIRST_HEIGHT + n, root);
        Some(chunk_of(&proofs))
    }));
    let addr = mirror_support::serve(fake.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(&a.otsd)
        .arg("mirror")
        .arg("-p")
        .arg(dir.path())
        .args(["-c", &format!("http://{addr}")])
        .args(["--rpc-address", "127.0.0.1", "--rpc-port", "0"])
        .args(["--bitcoin-node", &Fake::rpc_url(addr), "--btc-regtest"])
        .args(["--poll-interval", "0.2", "--in-flight", IN_FLIGHT])
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", a.otsd.display()));
    let pid = child.id().expect("a pid");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    // The address, from its "listening on" line.
    let mirror_addr = loop {
        let line = lines.next_line().await.unwrap().expect("the mirror exited");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.trim().parse::<std::net::SocketAddr>().unwrap();
        }
        eprintln!("{line}");
    };
    tokio::spawn(async move {
        // Drained so the mirror never blocks on a full pipe; only its
        // warnings and errors are shown.
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("WARN")
                || line.contains("ERROR")
                || std::env::var_os("MIRROR_BENCH_LOG").is_some()
            {
                eprintln!("mirror: {line}");
            }
        }
    });
    let started = Instant::now();
    let http = reqwest::Client::new();
    let info_url = format!("http://{mirror_addr}/");
    loop {
        let held = async {
            let v: serde_json::Value = serde_json::from_slice(
                &http
                    .get(&info_url)
                    .header("Accept", "application/json")
                    .send()
                    .await
                    .ok()?
                    .bytes()
                    .await
                    .ok()?,
            )
            .ok()?;
            v["mirrors"][0]["chunks_held"].as_u64()
        }
        .await
        .unwrap_or(0);
        if held >= a.chunks {
            break;
        }
        assert!(started.elapsed() < MAX_WAIT, "the mirror did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mirrored = started.elapsed();
    let (hwm_sync, _) = memory(pid);
    println!(
        "mirrored {} chunks ({} commitments) in {:.1} s ({:.1} chunks/s); peak RSS {} MB",
        a.chunks,
        a.chunks * a.per_chunk,
        mirrored.as_secs_f64(),
        a.chunks as f64 / mirrored.as_secs_f64(),
        hwm_sync / 1024
    );
    // GET /timestamp: spread over every chunk, C connections at once.
    let sample = synthetic(a.chunks / 2, a.per_chunk, FIRST_HEIGHT + a.chunks / 2).0;
    let want = sample[0].serialize().unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..a.concurrency {
        let (http, done) = (http.clone(), done.clone());
        let (gets, conc, chunks, per) = (a.gets, a.concurrency, a.chunks, a.per_chunk);
        tasks.push(tokio::spawn(async move {
            let mut k = t;
            while k < gets {
                let n = k % chunks;
                let i = (k / chunks) % per;
                let c = commitment(n, i, FIRST_HEIGHT + n);
                let r = http
                    .get(format!(
                        "http://{mirror_addr}/timestamp/{}",
                        hex::encode(&c)
                    ))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "chunk {n} commitment {i}");
                let _ = r.bytes().await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
                k += conc;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let got = http
        .get(format!(
            "http://{mirror_addr}/timestamp/{}",
            hex::encode(sample[0].msg())
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        got.as_ref(),
        want.as_slice(),
        "the served proof is the calendar's"
    );
    let (hwm, rss) = memory(pid);
    println!(
        "GET /timestamp: {} in {:.1} s = {:.0} req/s ({} connections); peak RSS {} MB, now {} MB",
        done.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64(),
        a.concurrency,
        hwm / 1024,
        rss / 1024
    );
    let _ = child.kill().await;
}
