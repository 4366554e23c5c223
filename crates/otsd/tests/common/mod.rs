//! Shared test helpers: a calendar in a temp dir, an in-process server on
//! 127.0.0.1:0, and a minimal raw HTTP/1.1 client (raw, so that tests can
//! also send what a hostile client would).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ots_proof::{Attestation, Timestamp};
use otsd::calendar::Calendar;
use otsd::config::Settings;
use otsd::server::{serve, ServeError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The URI test calendars use.
pub const URI: &str = "https://calendar.test";
/// Upper bound for any single exchange, so a broken server fails the test
/// instead of hanging it.
pub const IO_LIMIT: Duration = Duration::from_secs(60);

pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

pub fn init_calendar(dir: &Path) -> PathBuf {
    let cal = dir.join("calendar");
    Calendar::init(&cal, URI, "bcrt1qdonation").unwrap();
    cal
}

impl TestServer {
    pub async fn start(settings: Settings) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let cal = init_calendar(dir.path());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve(listener, &cal, settings, async {
                let _ = rx.await;
            })
            .await
        });
        TestServer {
            addr,
            dir,
            stop: Some(tx),
            task,
        }
    }

    pub fn calendar_dir(&self) -> PathBuf {
        self.dir.path().join("calendar")
    }

    /// Signals shutdown; returns the serve() result and the calendar's
    /// temp dir (kept alive for inspection).
    pub async fn stop(mut self) -> Result<tempfile::TempDir, ServeError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(IO_LIMIT, &mut self.task)
            .await
            .expect("server stops")
            .unwrap()?;
        Ok(self.dir)
    }
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Parses one response from `buf`; `None` if incomplete.
pub fn parse_response(buf: &[u8]) -> Option<(Resp, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let start = end + 4;
    if buf.len() < start + len {
        return None;
    }
    let body = buf[start..start + len].to_vec();
    Some((
        Resp {
            status,
            headers,
            body,
        },
        start + len,
    ))
}

/// Reads one response from `stream`; `None` if the server closed first.
pub async fn read_response(stream: &mut TcpStream) -> Option<Resp> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    tokio::time::timeout(IO_LIMIT, async {
        loop {
            if let Some((r, _)) = parse_response(&buf) {
                return Some(r);
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("response within the I/O limit")
}

/// Sends raw bytes on a fresh connection and reads one response.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> Option<Resp> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.ok()?;
    read_response(&mut s).await
}

pub fn post_request(digest: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST /digest HTTP/1.1\r\nHost: calendar.test\r\nContent-Length: {}\r\nAccept: application/vnd.opentimestamps.v1\r\nConnection: close\r\n\r\n",
        digest.len()
    )
    .into_bytes();
    req.extend_from_slice(digest);
    req
}

pub async fn post_digest(addr: SocketAddr, digest: &[u8]) -> Resp {
    raw(addr, &post_request(digest)).await.expect("a response")
}

pub async fn get(addr: SocketAddr, path: &str, extra: &str) -> Resp {
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: calendar.test\r\n{extra}Connection: close\r\n\r\n");
    raw(addr, req.as_bytes()).await.expect("a response")
}

/// Checks a POST /digest reply: a timestamp of `digest` whose only
/// attestation is the calendar's pending one; returns the commitment.
pub fn check_proof(digest: &[u8], body: &[u8]) -> Vec<u8> {
    let ts = Timestamp::deserialize(body, digest).expect("reply deserializes");
    assert_eq!(ts.msg(), digest);
    let atts = ts.all_attestations();
    assert_eq!(atts.len(), 1, "one attestation");
    let (msg, att) = atts[0];
    assert_eq!(
        att,
        &Attestation::Pending {
            uri: URI.to_owned()
        }
    );
    assert_eq!(msg.len(), 44, "a 44-byte commitment");
    msg.to_vec()
}

pub fn random_digest() -> Vec<u8> {
    use rand::RngCore;
    let mut d = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut d);
    d
}

pub mod node;

/// Checks a complete proof of `commitment` (a `GET /timestamp` body)
/// against `node`'s best chain: its Bitcoin attestation's message is the
/// merkle root of the header at that height. Returns the proof and header.
pub async fn verify_on_node(
    node: &ots_bitcoin::RpcClient,
    commitment: &[u8],
    body: &[u8],
) -> (Timestamp, bitcoin::block::Header) {
    let proof = Timestamp::deserialize(body, commitment).expect("the proof deserializes");
    let (msg, height) = proof
        .all_attestations()
        .into_iter()
        .find_map(|(msg, a)| match a {
            Attestation::Bitcoin { height } => Some((msg.to_vec(), *height)),
            _ => None,
        })
        .expect("a Bitcoin attestation");
    let hash = node
        .block_hash(height)
        .await
        .unwrap()
        .expect("the block exists");
    let header = node.block_header(&hash).await.unwrap().unwrap();
    ots_proof::verify::verify_bitcoin_header(&msg, &header)
        .expect("the proof verifies against the best chain");
    (proof, header)
}

/// Starts the `otsd` binary with `args` (stderr piped, killed on drop) and
/// returns it with the address from its "listening on" log line; its log
/// keeps being drained so it never blocks on a full pipe.
pub async fn spawn_otsd<I, S>(args: I) -> (tokio::process::Child, SocketAddr)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let (child, addr, _) = spawn_otsd_logged(args).await;
    (child, addr)
}

/// The log lines a child `otsd` wrote to stderr so far.
pub type Log = Arc<std::sync::Mutex<Vec<String>>>;

/// [`spawn_otsd`], keeping the log lines.
pub async fn spawn_otsd_logged<I, S>(args: I) -> (tokio::process::Child, SocketAddr, Log)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_otsd"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("otsd starts");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let log: Log = Arc::default();
    let keep = |line: &str| log.lock().unwrap().push(line.to_string());
    let addr = tokio::time::timeout(IO_LIMIT, async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("otsd exited before listening");
            keep(&line);
            if let Some(rest) = line.split("listening on ").nth(1) {
                return rest.trim().parse::<SocketAddr>().unwrap();
            }
        }
    })
    .await
    .expect("otsd listens in time");
    let kept = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            kept.lock().unwrap().push(line);
        }
    });
    (child, addr, log)
}

/// A reply of fewer than 10,000 bytes that decodes to megabytes: one
/// append to a 4,000-byte message of `msg`, then `chains` chains of
/// `reverse` (a byte each, the message kept whole) from 4,001-byte
/// messages, each ending in a pending attestation to `uri`.
pub fn decoding_bomb(msg: &[u8], uri: &str, chains: u8) -> Timestamp {
    use ots_proof::Op;
    let mut ts = Timestamp::new(msg.to_vec()).unwrap();
    let big = ts.add_op(Op::Append(vec![0xbb; 3968])).unwrap();
    for b in 0..chains {
        big.add_op(Op::Append(vec![b]))
            .unwrap()
            .add_path(std::iter::repeat_n(Op::Reverse, 180))
            .unwrap()
            .add_attestation(Attestation::pending(uri).unwrap());
    }
    ts
}
