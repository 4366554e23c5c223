//! The accept loop of the HTTP API: binds the listening socket with a long
//! backlog, hands connections to the workers, and enforces the connection
//! cap, the header read timeout and the header size limit, answering
//! clients over the cap or too slow with a canned response. [`Limits`]
//! (with the body read timeout the `/digest` handler applies) and its
//! defaults live here too. The routes are in [`crate::http`], which
//! re-exports this module's public items.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::http::{app, AppState};
use crate::workers::Workers;

/// Default cap on concurrent connections; over it, new connections get a
/// 503 and are closed.
pub const DEFAULT_MAX_CONNECTIONS: usize = 8192;
/// Default time a client has to send a request's headers (also the idle
/// time allowed between keep-alive requests).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a client has to send a request's body once its headers
/// are in.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit on a request's head (request line and headers); hyper
/// answers 431 beyond it. Hyper's minimum is 8 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Listen backlog: room for a burst of new connections (thousands of
/// clients connecting at once) without the kernel dropping handshakes,
/// which clients only retry after a second. Capped by `somaxconn`.
pub const LISTEN_BACKLOG: u32 = 8192;
/// How long shutdown waits for in-flight connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a rejected (over-cap or timed-out) client gets to take its
/// canned answer.
const CANNED_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Hostile-client limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Concurrent connections.
    pub max_connections: usize,
    /// Header read timeout (and keep-alive idle timeout).
    pub header_read_timeout: Duration,
    /// Body read timeout.
    pub body_read_timeout: Duration,
    /// Largest request head, bytes.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

/// A complete HTTP/1.1 response for clients we will not serve.
fn canned(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn send_canned(mut stream: TcpStream, bytes: Vec<u8>) {
    let _ = tokio::time::timeout(CANNED_WRITE_TIMEOUT, async {
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Binds `address:port` (first address that works) with
/// [`LISTEN_BACKLOG`]; `TcpListener::bind` would use 1024.
pub async fn bind(address: &str, port: u16) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host((address, port)).await? {
        let socket = match addr {
            std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "address resolves to nothing")
    }))
}

/// Serves `state` on `listener` until `shutdown` resolves, then stops
/// accepting and waits (up to [`SHUTDOWN_GRACE`]) for in-flight requests.
/// Connections are served on `workers` in turn, or without workers on the
/// caller's runtime.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    workers: Option<Arc<Workers>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = state.limits.clone();
    let service = hyper_util::service::TowerToHyperService::new(app(state));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tokio::spawn(send_canned(
                stream,
                canned("503 Service Unavailable", "too many connections"),
            ));
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Out of this runtime's reactor, to join the serving thread's; and
        // a second handle on the socket, to answer 408 if hyper gives up
        // on a slow request head (hyper itself just closes).
        let (stream, spare) = match stream.into_std().and_then(|s| {
            let spare = s.try_clone()?;
            Ok((s, spare))
        }) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "socket setup failed");
                continue;
            }
        };
        let (http, service, watcher) = (http.clone(), service.clone(), graceful.watcher());
        let serve = async move {
            let _permit = permit;
            let stream = match TcpStream::from_std(stream) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "socket setup failed");
                    return;
                }
            };
            let conn = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
            if let Err(e) = conn.await {
                if e.is_timeout() {
                    if let Ok(s) = TcpStream::from_std(spare) {
                        send_canned(s, canned("408 Request Timeout", "header read timeout")).await;
                    }
                } else {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            }
        };
        match &workers {
            Some(w) => w.spawn_next(serve),
            None => drop(tokio::spawn(serve)),
        }
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
    Ok(())
}
