//! The `devchain` binary: it prints a working RPC URL (and writes it to a
//! 0600 `--url-file`), persists to `--datadir` across runs, mines on
//! `--block-interval`, stops cleanly on SIGTERM, and fails with a message
//! when it cannot bind.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Client;
use serde_json::json;
use wait_timeout::ChildExt;

/// Bound on waiting for the binary to start, stop or mine.
const WAIT: Duration = Duration::from_secs(60);

/// The running binary, killed by its PID if a test ends early.
struct Running {
    child: Child,
    url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_devchain"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn devchain");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let mut running = Running {
        child,
        url: String::new(),
    };
    let line = rx.recv_timeout(WAIT).expect("devchain printed no URL");
    running.url = line
        .trim_end()
        .strip_prefix("devchain RPC: ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    running
}

/// A client for `http://user:pass@host:port/`.
fn client(url: &str) -> Client {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (creds, hostport) = rest.split_once('@').expect("credentials in URL");
    let (user, password) = creds.split_once(':').expect("user:password");
    let addr: SocketAddr = hostport.trim_end_matches('/').parse().expect("host:port");
    Client {
        addr,
        user: user.to_string(),
        password: password.to_string(),
        path: "/".to_string(),
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn serves_the_printed_url_persists_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("chain");
    let url_file = dir.path().join("rpc.url");
    let args = [
        "--rpc-bind",
        "127.0.0.1",
        "--rpc-port",
        "0",
        "--datadir",
        data.to_str().unwrap(),
        "--prefund",
        "--url-file",
        url_file.to_str().unwrap(),
    ];
    let mut dc = start(&args);
    assert!(dc.url.starts_with("http://devchain:"), "{}", dc.url);
    assert_eq!(
        std::fs::read_to_string(&url_file).unwrap(),
        format!("{}\n", dc.url)
    );
    assert_eq!(mode(&url_file), 0o600);
    let c = client(&dc.url);
    assert_eq!(c.call("getblockcount", json!([])), json!(101));
    let addr = c.call("getnewaddress", json!([]));
    let hashes = c.call("generatetoaddress", json!([1, addr]));
    assert_eq!(hashes.as_array().unwrap().len(), 1);
    assert_eq!(c.call("getblockcount", json!([])), json!(102));
    assert!(data.join(".cookie").exists());

    let pid = dc.child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
    let status = dc
        .child
        .wait_timeout(WAIT)
        .unwrap()
        .expect("devchain did not stop on SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(!url_file.exists(), "URL file left behind");
    assert!(!data.join(".cookie").exists(), "cookie left behind");

    // Same data directory: the mined block is still there; then killed by PID.
    let again = start(&args);
    assert_eq!(
        client(&again.url).call("getblockcount", json!([])),
        json!(102)
    );
}

#[test]
fn block_interval_mines_without_requests() {
    let dc = start(&["--rpc-port", "0", "--block-interval", "1"]);
    let c = client(&dc.url);
    let deadline = Instant::now() + WAIT;
    while c.call("getblockcount", json!([])) == json!(0) {
        assert!(Instant::now() < deadline, "no block mined on the timer");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_port_in_use_is_an_error_with_its_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_devchain"))
        .args(["--rpc-port", &port])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = match child.wait_timeout(WAIT).unwrap() {
        Some(s) => s,
        None => {
            let _ = child.kill();
            panic!("devchain kept running on a port in use");
        }
    };
    let out = child.wait_with_output().unwrap();
    assert!(!status.success());
    assert!(out.stdout.is_empty(), "printed a URL it does not serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("starting devchain on 127.0.0.1:{port}")),
        "{err}"
    );
}
