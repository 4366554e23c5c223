//! A Bitcoin Core `bitcoind` child process on regtest, for tests.
//!
//! The tier is optional: [`exe`] reads `BITCOIND_EXE`, and a test prints
//! its own skip notice and passes when it is unset. [`Bitcoind::start`]
//! then runs the binary with
//!
//! * a fresh temporary data directory ([`Bitcoind::datadir`]), removed on
//!   drop;
//! * its RPC bound to 127.0.0.1 on a free port ([`Bitcoind::rpc_url`]), and
//!   no P2P listening (`-listen=0`), so the node talks to nobody else;
//! * cookie authentication ([`Bitcoind::cookie_file`]) or a fixed user and
//!   password ([`Credentials`]), and any further arguments
//!   ([`Options::args`]);
//!
//! and waits until its RPC answers `getblockcount`: through the time the
//! port is still closed, and through Core's warm-up (error
//! [`RPC_IN_WARMUP`], `-28`, while it loads the block index and wallets).
//! A process that exits meanwhile, or a node silent past
//! [`Options::start_timeout`], fails the test with its last error.
//!
//! [`Bitcoind::stop`] asks the node to shut down (RPC `stop`) and waits,
//! [`Bitcoind::kill`] kills it outright (a crash: the mempool is lost), and
//! [`Bitcoind::restart`] starts it again on the same data directory and
//! ports. Dropping a [`Bitcoind`] kills the process.
//!
//! The functions that wait are `async` and need a Tokio runtime with time
//! and I/O enabled (`#[tokio::test]`, or `Runtime::new()` and `block_on`
//! in a plain `#[test]`).

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The environment variable naming the `bitcoind` binary.
pub const EXE_VAR: &str = "BITCOIND_EXE";

/// Core's JSON-RPC error code while it starts up ("Loading block
/// index…", "Loading wallet…", …).
pub const RPC_IN_WARMUP: i64 = -28;

/// Pause between readiness probes, and between checks for the process's
/// exit after `stop`.
const POLL: Duration = Duration::from_millis(100);
/// Upper bound for one RPC exchange, so a wedged node fails the test
/// instead of hanging it.
const IO_LIMIT: Duration = Duration::from_secs(60);
/// How long [`Bitcoind::stop`] waits for the process to exit before
/// killing it.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The `bitcoind` binary named by `BITCOIND_EXE`, or `None` when it is
/// unset (the caller then prints its skip notice).
pub fn exe() -> Option<PathBuf> {
    std::env::var_os(EXE_VAR).map(PathBuf::from)
}

/// How RPC clients authenticate to the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// Core's cookie file, `<datadir>/regtest/.cookie`, rewritten on every
    /// start.
    #[default]
    Cookie,
    /// `-rpcuser` and `-rpcpassword`.
    UserPassword {
        /// The RPC user.
        user: String,
        /// The RPC password.
        password: String,
    },
}

impl Credentials {
    /// A fixed user and password.
    pub fn user_password(user: &str, password: &str) -> Credentials {
        Credentials::UserPassword {
            user: user.to_string(),
            password: password.to_string(),
        }
    }
}

/// What to start the node with, beyond what [`Bitcoind`] always passes.
#[derive(Debug, Clone)]
pub struct Options {
    /// How clients authenticate; the cookie by default.
    pub credentials: Credentials,
    /// Further arguments, e.g. `-txindex=1`; kept for restarts.
    pub args: Vec<String>,
    /// How long a start may take before the test fails; a minute by
    /// default.
    pub start_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            credentials: Credentials::Cookie,
            args: Vec::new(),
            start_timeout: Duration::from_secs(60),
        }
    }
}

/// Why an RPC call failed.
#[derive(Debug)]
pub enum RpcError {
    /// No exchange: connecting, writing or reading failed or timed out, or
    /// the cookie file could not be read.
    Io(io::Error),
    /// An HTTP error without a JSON-RPC error in its body (e.g. 401).
    Http {
        /// The HTTP status.
        status: u16,
        /// The body, as text.
        body: String,
    },
    /// The node's JSON-RPC error.
    Rpc {
        /// The error code, e.g. [`RPC_IN_WARMUP`].
        code: i64,
        /// The error message.
        message: String,
    },
}

impl RpcError {
    /// Whether the node is still warming up (`-28`).
    pub fn is_warmup(&self) -> bool {
        matches!(self, RpcError::Rpc { code, .. } if *code == RPC_IN_WARMUP)
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::Io(e) => write!(f, "I/O: {e}"),
            RpcError::Http { status, body } => write!(f, "HTTP {status}: {body}"),
            RpcError::Rpc { code, message } => write!(f, "RPC error {code}: {message}"),
        }
    }
}

impl std::error::Error for RpcError {}

impl From<io::Error> for RpcError {
    fn from(e: io::Error) -> RpcError {
        RpcError::Io(e)
    }
}

/// A `bitcoind -regtest` child process and its data directory.
#[derive(Debug)]
pub struct Bitcoind {
    exe: PathBuf,
    options: Options,
    rpc_port: u16,
    p2p_port: u16,
    /// `None` while stopped.
    child: Option<Child>,
    /// Declared after `child`, and the process is killed in `drop`, so the
    /// directory is removed only once nothing writes to it.
    datadir: tempfile::TempDir,
}

impl Bitcoind {
    /// Starts `exe` on a fresh data directory and free ports of 127.0.0.1,
    /// and waits until its RPC answers.
    ///
    /// # Panics
    ///
    /// When the process cannot be spawned, exits before answering, or
    /// does not answer within [`Options::start_timeout`].
    pub async fn start(exe: impl Into<PathBuf>, options: Options) -> Bitcoind {
        let datadir = tempfile::Builder::new()
            .prefix("bitcoind-")
            .tempdir()
            .expect("a temporary data directory for bitcoind");
        let (rpc_port, p2p_port) = free_ports();
        let mut node = Bitcoind {
            exe: exe.into(),
            options,
            rpc_port,
            p2p_port,
            child: None,
            datadir,
        };
        node.launch().await;
        node
    }

    /// The RPC URL, `http://127.0.0.1:<port>/`, without credentials.
    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.rpc_port)
    }

    /// The RPC address, 127.0.0.1 and the RPC port.
    pub fn rpc_addr(&self) -> SocketAddr {
        (Ipv4Addr::LOCALHOST, self.rpc_port).into()
    }

    /// The RPC port; the same across restarts.
    pub fn rpc_port(&self) -> u16 {
        self.rpc_port
    }

    /// The data directory (`-datadir`); the same across restarts.
    pub fn datadir(&self) -> &Path {
        self.datadir.path()
    }

    /// Where the node writes its cookie (with [`Credentials::Cookie`]):
    /// `<datadir>/regtest/.cookie`.
    pub fn cookie_file(&self) -> PathBuf {
        self.datadir().join("regtest").join(".cookie")
    }

    /// The credentials the node is started with.
    pub fn credentials(&self) -> &Credentials {
        &self.options.credentials
    }

    /// The node's log, `<datadir>/regtest/debug.log`.
    pub fn debug_log(&self) -> PathBuf {
        self.datadir().join("regtest").join("debug.log")
    }

    /// Whether the process runs (it was started and not stopped, killed,
    /// nor has it exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Calls a node-level `method` once, no retries: a minimal JSON-RPC 1.0
    /// client over HTTP/1.1, for the node's lifecycle and for tests that
    /// need no more.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let auth = match &self.options.credentials {
            Credentials::Cookie => std::fs::read_to_string(self.cookie_file())?
                .trim()
                .to_string(),
            Credentials::UserPassword { user, password } => format!("{user}:{password}"),
        };
        let body = json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params});
        match tokio::time::timeout(IO_LIMIT, post(self.rpc_addr(), &auth, &body.to_string())).await
        {
            Ok(reply) => reply,
            Err(_) => {
                Err(io::Error::new(io::ErrorKind::TimedOut, "no reply within a minute").into())
            }
        }
    }

    /// Shuts the node down cleanly: RPC `stop`, then waits for the process
    /// to exit (killing it after a minute). Nothing when it is not running.
    pub async fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        let _ = self.call("stop", json!([])).await;
        let Some(mut child) = self.child.take() else {
            return;
        };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the process outright, as a crash would: what the node had not
    /// written yet (its mempool, a lazily flushed chain state) is lost.
    /// Nothing when it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the node again on the same data directory and ports, and
    /// waits until its RPC answers; a node still running is first stopped
    /// ([`Bitcoind::stop`]).
    ///
    /// # Panics
    ///
    /// As [`Bitcoind::start`].
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    /// Spawns the process and waits for its RPC.
    async fn launch(&mut self) {
        let mut command = Command::new(&self.exe);
        command
            .arg("-regtest")
            .arg(format!("-datadir={}", self.datadir().display()))
            .args(["-server", "-listen=0", "-printtoconsole=0"])
            .args(["-rpcbind=127.0.0.1", "-rpcallowip=127.0.0.1"])
            .arg(format!("-rpcport={}", self.rpc_port))
            .arg(format!("-port={}", self.p2p_port));
        if let Credentials::UserPassword { user, password } = &self.options.credentials {
            command
                .arg(format!("-rpcuser={user}"))
                .arg(format!("-rpcpassword={password}"));
        }
        let child = command
            .args(&self.options.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.exe.display()));
        self.child = Some(child);
        self.until_ready().await;
    }

    /// Polls `getblockcount` until it succeeds. Everything else is taken as
    /// "not yet": a closed port, a missing or stale cookie, warm-up.
    async fn until_ready(&mut self) {
        let deadline = Instant::now() + self.options.start_timeout;
        loop {
            let last = match self.call("getblockcount", json!([])).await {
                Ok(_) => return,
                Err(e) => e,
            };
            if let Some(status) = self.exited() {
                panic!(
                    "bitcoind exited ({status}) before its RPC answered ({last}); see {}",
                    self.debug_log().display()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "bitcoind did not answer within {:?} ({last}); see {}",
                    self.options.start_timeout,
                    self.debug_log().display()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The exit status, once the process has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }
}

impl Drop for Bitcoind {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Two distinct free ports of 127.0.0.1 (RPC, P2P), both held while the
/// second is picked.
fn free_ports() -> (u16, u16) {
    let bind = || TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port on 127.0.0.1");
    let (a, b) = (bind(), bind());
    let port = |l: &TcpListener| l.local_addr().expect("a bound address").port();
    (port(&a), port(&b))
}

/// One POST of `body` to `/` at `addr`, with basic authentication `auth`
/// (`user:password`); the reply's result or error.
async fn post(addr: SocketAddr, auth: &str, body: &str) -> Result<Value, RpcError> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let auth = base64::engine::general_purpose::STANDARD.encode(auth);
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await?;
    let (status, body) = parse_http(&reply)?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(reply) if !reply["error"].is_null() => Err(RpcError::Rpc {
            code: reply["error"]["code"].as_i64().unwrap_or(0),
            message: reply["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }),
        Ok(mut reply) if status == 200 => Ok(reply["result"].take()),
        _ => Err(RpcError::Http {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        }),
    }
}

/// The status and the (de-chunked) body of an HTTP/1.1 response.
fn parse_http(reply: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no complete HTTP head"))?;
    let head = String::from_utf8_lossy(&reply[..split]).to_ascii_lowercase();
    let body = &reply[split + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no HTTP status"))?;
    if !head.contains("transfer-encoding: chunked") {
        return Ok((status, body.to_vec()));
    }
    let mut rest = body;
    let mut out = Vec::new();
    loop {
        let line = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("a truncated chunk"))?;
        let size = std::str::from_utf8(&rest[..line])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .ok_or_else(|| bad("a bad chunk size"))?;
        if size == 0 {
            return Ok((status, out));
        }
        let chunk = rest
            .get(line + 2..line + 2 + size)
            .ok_or_else(|| bad("a truncated chunk"))?;
        out.extend_from_slice(chunk);
        rest = rest.get(line + 4 + size..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_replies_parse() {
        let plain = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_http(plain).unwrap(), (500, b"{}".to_vec()));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(parse_http(chunked).unwrap(), (200, b"{\"a\":1}".to_vec()));
        assert!(parse_http(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn ports_are_distinct() {
        let (rpc, p2p) = free_ports();
        assert_ne!(rpc, p2p);
    }

    #[test]
    fn warmup_is_recognised() {
        let warmup = RpcError::Rpc {
            code: RPC_IN_WARMUP,
            message: "Loading block index…".into(),
        };
        assert!(warmup.is_warmup());
        assert!(!RpcError::Http {
            status: 401,
            body: String::new()
        }
        .is_warmup());
    }

    /// Start, a call, a clean stop, a restart on the same data (the chain
    /// kept), a kill, a restart after it: against the real node when
    /// `BITCOIND_EXE` is set.
    #[tokio::test(flavor = "multi_thread")]
    async fn lifecycle() {
        let Some(exe) = exe() else {
            eprintln!(
                "skipped: set BITCOIND_EXE to a bitcoind binary to run the Bitcoin Core tier"
            );
            return;
        };
        for credentials in [Credentials::Cookie, Credentials::user_password("u", "p")] {
            let mut node = Bitcoind::start(
                &exe,
                Options {
                    credentials,
                    ..Options::default()
                },
            )
            .await;
            let (url, datadir) = (node.rpc_url(), node.datadir().to_path_buf());
            assert!(url.starts_with("http://127.0.0.1:"));
            assert!(node.is_running());
            let addr = node
                .call("getnewaddress", json!([]))
                .await
                .expect_err("no wallet loaded");
            assert!(matches!(addr, RpcError::Rpc { code: -18, .. }), "{addr}");
            let _ = node.call("createwallet", json!(["w"])).await.unwrap();
            let to = node.call("getnewaddress", json!([])).await.unwrap();
            let _ = node
                .call("generatetoaddress", json!([3, to]))
                .await
                .unwrap();

            node.stop().await;
            assert!(!node.is_running());
            assert!(node.call("getblockcount", json!([])).await.is_err());
            node.restart().await;
            assert_eq!((node.rpc_url(), node.datadir()), (url.clone(), &*datadir));
            let height = node.call("getblockcount", json!([])).await.unwrap();
            assert_eq!(height, json!(3), "the chain survives a clean stop");

            node.kill();
            assert!(!node.is_running());
            node.restart().await;
            assert_eq!(node.rpc_url(), url);
            node.call("getblockcount", json!([])).await.unwrap();
            drop(node);
            assert!(!datadir.exists(), "the data directory is removed");
        }
    }
}
