//! The `otsd` binary's logs as an operator gets them: `--log-format json`
//! lines that parse, no ANSI colour on a pipe, `RUST_LOG` filters (over
//! `-v`/`-q`), a bad `RUST_LOG` refused, and `--version`.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::{get, post_digest, random_digest, IO_LIMIT};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A fresh calendar in a temp dir.
fn calendar() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cal = common::init_calendar(dir.path());
    (dir, cal)
}

/// `otsd` on `cal` without a node, on `port`, stderr piped, `RUST_LOG`
/// set to `rust_log` (or removed).
fn otsd(cal: &std::path::Path, port: u16, rust_log: Option<&str>, extra: &[&str]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_otsd"));
    cmd.arg("-c")
        .arg(cal)
        .args(["--no-bitcoin", "--aggregation-interval", "20"])
        .args([
            "--rpc-address",
            "127.0.0.1",
            "--rpc-port",
            &port.to_string(),
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match rust_log {
        Some(v) => cmd.env("RUST_LOG", v),
        None => cmd.env_remove("RUST_LOG"),
    };
    cmd.env_remove("NO_COLOR");
    cmd.spawn().expect("otsd starts")
}

/// A port that was free a moment ago (bound on 127.0.0.1:0, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits, bounded, until the server at `addr` answers the info page.
async fn wait_serving(addr: SocketAddr) {
    tokio::time::timeout(IO_LIMIT, async {
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("otsd serves in time");
    assert_eq!(get(addr, "/", "").await.status, 200);
}

/// Stops `child` (SIGKILL: the logs so far are what is checked) and
/// returns everything it wrote to stderr.
async fn stop_and_read(mut child: Child) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    child.start_kill().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(IO_LIMIT, stderr.read_to_end(&mut out))
        .await
        .expect("stderr closes")
        .unwrap();
    child.wait().await.unwrap();
    out
}

/// The next stderr line, which must be a JSON object without escapes.
async fn next_json(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
) -> serde_json::Value {
    let line = tokio::time::timeout(IO_LIMIT, lines.next_line())
        .await
        .expect("a log line in time")
        .unwrap()
        .expect("otsd still running");
    assert!(!line.contains('\x1b'), "ANSI escape in {line:?}");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
}

#[tokio::test]
async fn json_lines_parse_and_one_line_per_round() {
    let (_dir, cal) = calendar();
    let mut child = otsd(&cal, 0, None, &["--log-format", "json"]);
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Every line a JSON object, up to the one giving the address.
    let addr: SocketAddr = loop {
        let v = next_json(&mut lines).await;
        assert!(v["timestamp"].is_string() && v["target"].is_string(), "{v}");
        let msg = v["fields"]["message"].as_str().unwrap_or_default();
        if let Some(rest) = msg.strip_prefix("listening on ") {
            assert_eq!(v["level"], "INFO");
            break rest.parse().unwrap();
        }
    };
    assert_eq!(post_digest(addr, &random_digest()).await.status, 200);
    // The round's one info line, its figures as JSON fields.
    let round = loop {
        let v = next_json(&mut lines).await;
        if v["fields"]["message"] == "aggregated" {
            break v;
        }
    };
    assert_eq!(round["level"], "INFO");
    assert_eq!(round["fields"]["digests"], 1);
    assert!(round["fields"]["commitment"].is_string(), "{round}");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

#[tokio::test]
async fn text_on_a_pipe_has_no_colour() {
    let (_dir, cal) = calendar();
    let port = free_port();
    let child = otsd(&cal, port, None, &[]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_serving(addr).await;
    assert_eq!(post_digest(addr, &random_digest()).await.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = String::from_utf8(stop_and_read(child).await).unwrap();
    assert!(log.contains("INFO"), "{log}");
    assert!(log.contains(&format!("listening on {addr}")), "{log}");
    assert!(!log.contains('\x1b'), "ANSI escape on a pipe: {log:?}");
}

#[tokio::test]
async fn rust_log_filters_and_q_still_works_without_it() {
    // RUST_LOG=warn: no info lines, even with -v (RUST_LOG wins).
    let (_dir, cal) = calendar();
    let port = free_port();
    let child = otsd(&cal, port, Some("warn"), &["-v"]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_serving(addr).await;
    assert_eq!(post_digest(addr, &random_digest()).await.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = String::from_utf8(stop_and_read(child).await).unwrap();
    assert!(!log.contains("listening on"), "{log}");
    assert!(!log.contains("INFO") && !log.contains("DEBUG"), "{log}");

    // A per-target directive lets that target's info through alone.
    let port = free_port();
    let child = otsd(&cal, port, Some("warn,otsd::aggregator=info"), &[]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_serving(addr).await;
    assert_eq!(post_digest(addr, &random_digest()).await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = String::from_utf8(stop_and_read(child).await).unwrap();
    assert!(!log.contains("listening on"), "{log}");
    assert!(log.contains("aggregated"), "{log}");

    // Unset: -q is one level less than info, so no info lines either.
    let port = free_port();
    let child = otsd(&cal, port, None, &["-q"]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_serving(addr).await;
    let log = String::from_utf8(stop_and_read(child).await).unwrap();
    assert!(!log.contains("listening on"), "{log}");

    // Empty counts as unset: info as by default.
    let port = free_port();
    let child = otsd(&cal, port, Some(""), &[]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_serving(addr).await;
    let log = String::from_utf8(stop_and_read(child).await).unwrap();
    assert!(log.contains("listening on"), "{log}");
}

#[tokio::test]
async fn a_bad_rust_log_is_refused() {
    let (_dir, cal) = calendar();
    let child = otsd(&cal, 0, Some("otsd=[[bad"), &[]);
    let out = tokio::time::timeout(IO_LIMIT, child.wait_with_output())
        .await
        .expect("otsd exits")
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("RUST_LOG"), "{err}");
}

#[test]
fn version_is_the_crate_version() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_otsd"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("otsd {}", env!("CARGO_PKG_VERSION"))
    );
}
