//! Helpers shared by the `ots` integration tests: running our binary and
//! the reference Python client, and an `otsd --dev` calendar started
//! in-process on 127.0.0.1 port 0 (see `tests/dev.rs` for why in-process).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;

/// Runs our `ots` (without the cache, so `~/.cache/ots` is never touched)
/// in `cwd`.
pub fn ots(args: &[&str], cwd: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ots"))
        .args(["--no-cache"])
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// A process's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether `text` has a line exactly equal to `line`.
pub fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

/// The reference Python client, when `OTS_REFERENCE_CLIENT` names its `ots`
/// executable (`.ci/run` installs it from PyPI into a virtual environment).
pub fn reference_client() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("OTS_REFERENCE_CLIENT")?);
    assert!(
        path.is_file(),
        "OTS_REFERENCE_CLIENT={} is not a file",
        path.display()
    );
    Some(path)
}

/// The notice printed when a reference-client test cannot run.
pub const REFERENCE_SKIPPED: &str =
    "skipped: set OTS_REFERENCE_CLIENT to the reference client's `ots` to run this test";

/// Runs the reference client (without its cache) in `cwd`.
pub fn reference(client: &Path, args: &[&str], cwd: &Path) -> Output {
    std::process::Command::new(client)
        .arg("--no-cache")
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// A port of 127.0.0.1 free a moment ago, for a server whose address
/// must be known before it starts (the TLS proxy's upstream, when the
/// server must name the proxy). Another process could take it in between;
/// with tens of thousands of ephemeral ports that is unlikely, and it
/// would fail the start loudly, not pass wrongly.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Upper bound for `otsd --dev` to start or to stop.
const START_STOP_LIMIT: Duration = Duration::from_secs(60);

/// `otsd --dev` running in-process on its own thread and runtime: the
/// calendar on 127.0.0.1 (a free port), devchain's RPC on another free
/// port, mining a block every second, everything in a temp dir. Stopped
/// (the last round flushed, devchain shut down) on drop.
pub struct DevCalendar {
    /// The calendar's URL, as it names itself in pending attestations
    /// (`http://127.0.0.1:PORT`, or the URI given to
    /// [`DevCalendar::start_as`]; read from `<calendar dir>/uri`).
    pub url: String,
    /// devchain's JSON-RPC URL with user and password (read from
    /// `<calendar dir>/dev-rpc-url`).
    pub rpc_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: mpsc::Receiver<Result<(), String>>,
    _dir: tempfile::TempDir,
}

impl DevCalendar {
    /// Starts the server exactly as the `otsd` binary does for
    /// `otsd --dev -c DIR --rpc-address 127.0.0.1 --rpc-port 0
    /// --dev-rpc-port 0 --dev-block-interval 1 --aggregation-interval 50`.
    pub fn start() -> DevCalendar {
        DevCalendar::launch(None, 0)
    }

    /// The same, but listening on `port` and naming itself `uri` in its
    /// pending attestations: the calendar directory is initialised with
    /// `uri` first (`--dev` keeps an initialised directory's `uri`), as
    /// for a calendar behind a TLS proxy at `uri` forwarding to `port`.
    pub fn start_as(uri: &str, port: u16) -> DevCalendar {
        DevCalendar::launch(Some(uri), port)
    }

    fn launch(uri: Option<&str>, port: u16) -> DevCalendar {
        let dir = tempfile::tempdir().unwrap();
        let cal = dir.path().join("dev");
        if let Some(uri) = uri {
            otsd::calendar::Calendar::init(&cal, uri, "").unwrap();
        }
        let cal_arg = cal.to_str().unwrap().to_owned();
        let port_arg = port.to_string();
        let cli = otsd::config::Cli::try_parse_from([
            "otsd",
            "--dev",
            "-c",
            &cal_arg,
            "--rpc-address",
            "127.0.0.1",
            "--rpc-port",
            &port_arg,
            "--dev-rpc-port",
            "0",
            "--dev-block-interval",
            "1",
            "--aggregation-interval",
            "50",
        ])
        .unwrap();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let result = run(cli, ready_tx, stop_rx);
            let _ = done_tx.send(result);
        });
        match ready_rx.recv_timeout(START_STOP_LIMIT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("otsd --dev did not start: {e}"),
            Err(e) => panic!("otsd --dev did not start in time: {e}"),
        }
        let url = std::fs::read_to_string(cal.join("uri")).unwrap();
        let rpc_url = std::fs::read_to_string(cal.join("dev-rpc-url")).unwrap();
        DevCalendar {
            url: url.trim().to_owned(),
            rpc_url: rpc_url.trim().to_owned(),
            stop: Some(stop_tx),
            done: done_rx,
            _dir: dir,
        }
    }

    /// The block header at `height` on devchain.
    pub fn header(&self, height: u64) -> bitcoin::block::Header {
        let rpc = ots_bitcoin::RpcClient::new(ots_bitcoin::RpcConfig::new(
            self.rpc_url.clone(),
            ots_bitcoin::Auth::None,
        ))
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let hash = rpc
                .block_hash(height)
                .await
                .unwrap()
                .expect("the block exists");
            rpc.block_header(&hash)
                .await
                .unwrap()
                .expect("the header exists")
        })
    }
}

impl Drop for DevCalendar {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.done.recv_timeout(START_STOP_LIMIT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) if !std::thread::panicking() => panic!("otsd --dev stopped with: {e}"),
            Err(_) if !std::thread::panicking() => panic!("otsd --dev did not stop in time"),
            _ => {}
        }
    }
}

/// The `otsd` binary's `main` (minus logging and signals), on the same
/// single-threaded runtime: bind, start devchain and the calendar, serve
/// until `stop`.
fn run(
    cli: otsd::config::Cli,
    ready: mpsc::Sender<Result<(), String>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let started = ready.clone();
    let result = runtime
        .block_on(otsd::server::run(
            &cli.server,
            &cli.calendar_dir(),
            move || {
                let _ = started.send(Ok(()));
            },
            async {
                let _ = stop.await;
            },
        ))
        .map_err(|e| format!("{e:#}"));
    if let Err(e) = &result {
        // Not started at all, or stopped with an error after: a second
        // message is never read.
        let _ = ready.send(Err(e.clone()));
    }
    result
}
