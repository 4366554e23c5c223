//! The accept loop of the HTTP API: binds the listening socket with a long
//! backlog, hands connections to the workers, and enforces the connection
//! cap and the limits on each connection's life: the header read, write
//! and idle timeouts, the maximum age and the header size limit. A client
//! over the cap takes the slot of the connection stalled the longest (see
//! [`run`]) or, if none is, gets a canned `503`. The limits themselves are
//! [`crate::limits`]'s (re-exported here); the per-connection bookkeeping
//! is in `conns`. The routes are in [`crate::http`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http::{app, AppState};
use crate::workers::Workers;

mod conns;
pub mod fast;

pub use conns::SWEEP_INTERVAL;

pub use crate::limits::*;

/// How long a client over the cap waits for the slot it reclaimed.
const RECLAIM_WAIT: Duration = Duration::from_secs(1);
/// Listen backlog: room for a burst of new connections (thousands of
/// clients connecting at once) without the kernel dropping handshakes,
/// which clients only retry after a second. Capped by `somaxconn`.
pub const LISTEN_BACKLOG: u32 = 8192;
/// How long shutdown waits for in-flight connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a rejected (over-cap or timed-out) client gets to take its
/// canned answer.
const CANNED_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// A complete HTTP/1.1 response for clients we will not serve.
pub(crate) fn canned(status: &str, body: &str) -> Vec<u8> {
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

type Service = hyper_util::service::TowerToHyperService<axum::Router>;

/// What starting a connection takes, shared with the tasks that wait for a
/// reclaimed slot.
struct Server {
    http: hyper::server::conn::http1::Builder,
    service: Service,
    workers: Option<Arc<Workers>>,
    tracker: Arc<conns::Tracker>,
    /// The aggregator's `POST /digest` path, tried first on each
    /// connection.
    fast: Option<Arc<fast::Fast>>,
}

impl Server {
    /// Serves `stream` on the next worker (or this runtime), holding
    /// `permit` until the connection ends.
    fn start(
        &self,
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let _ = stream.set_nodelay(true);
        // Out of this runtime's reactor, to join the serving thread's.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "socket setup failed");
                return;
            }
        };
        let conn = self.tracker.register();
        let (http, tracker, fast) = (self.http.clone(), self.tracker.clone(), self.fast.clone());
        let service = conns::Tracked {
            inner: self.service.clone(),
            conn: conn.clone(),
        };
        let serve = async move {
            let _permit = permit;
            let _registered = Registered(&tracker, &conn);
            let io = match TcpStream::from_std(stream) {
                Ok(io) => conns::Watched {
                    io,
                    conn: conn.clone(),
                    prefix: Vec::new(),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "socket setup failed");
                    return;
                }
            };
            // The watcher is held meanwhile: shutdown waits for it.
            let io = match fast {
                None => Some(io),
                Some(fast) => match fast::serve(&fast, &tracker, io).await {
                    fast::Outcome::Done => None,
                    fast::Outcome::Handoff(io) => Some(io),
                },
            };
            let served = match io {
                None => Ok(()),
                Some(io) => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(io), service))
                        .await
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        };
        match &self.workers {
            Some(w) => w.spawn_next(serve),
            None => drop(tokio::spawn(serve)),
        }
    }
}

/// Unregisters a connection when its task ends or is dropped.
struct Registered<'a>(&'a conns::Tracker, &'a conns::Conn);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.unregister(self.1);
    }
}

/// Serves `state` on `listener` until `shutdown` resolves, then stops
/// accepting and waits (up to [`SHUTDOWN_GRACE`]) for in-flight requests.
/// Connections are served on `workers` in turn, or without workers on the
/// caller's runtime.
///
/// At the cap, a new client takes the slot of the connection that has
/// been stalled the longest, if one has been for [`Limits::reclaim_after`]:
/// one whose peer does not take the bytes we write, or that sits idle or
/// has not finished its request head. Refusing newcomers instead would let
/// whoever holds the slots keep them (slow readers hold them until the
/// write timeout, and can come back), and reserving a few slots would only
/// move the line; a stalled connection is making no use of its slot, while
/// the newcomer has a request to make. Connections busy with a request
/// (waiting for their round, or sending their body within the body
/// timeout) are never taken, so a flood of newcomers only ever evicts
/// connections that do nothing, oldest stall first, and holding a slot
/// costs an attacker a connection that keeps reading.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    workers: Option<Arc<Workers>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = state.limits.clone();
    let open = Some(state.metrics.open_connections());
    run_router(listener, app(state), None, &limits, open, workers, shutdown).await
}

/// [`run`] for any router: the same accept loop, connection registry,
/// limits and workers for another set of routes (the stateless
/// aggregator's, `otsd aggregate`); `open_connections`, when given,
/// follows the number of open connections (a metric). With `digests`,
/// plain `POST /digest` requests are answered by [`fast`] without the
/// router.
pub async fn run_router(
    listener: TcpListener,
    router: axum::Router,
    digests: Option<Arc<dyn fast::DigestRoute>>,
    limits: &Limits,
    open_connections: Option<prometheus_client::metrics::gauge::Gauge>,
    workers: Option<Arc<Workers>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    // The sweep enforces the header read timeout; hyper's would also count
    // the idle time between requests, and answer it with a 408.
    http.header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(8192));
    let mut tracker = conns::Tracker::new(limits, CONNECTION_AGE_GRACE);
    if let Some(gauge) = open_connections {
        tracker.count_in(gauge);
    }
    let tracker = Arc::new(tracker);
    let _sweep = tracker.clone().start_sweep()?;
    let server = Arc::new(Server {
        http,
        service: hyper_util::service::TowerToHyperService::new(router),
        workers,
        tracker: tracker.clone(),
        fast: digests.map(|route| {
            Arc::new(fast::Fast {
                route,
                body_timeout: limits.body_read_timeout,
                max_head: limits.max_header_bytes.max(8192),
            })
        }),
    });
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
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            server.start(stream, permit, graceful.watcher());
        } else if tracker.reclaim() {
            let (server, slots, watcher) = (server.clone(), slots.clone(), graceful.watcher());
            tokio::spawn(async move {
                match tokio::time::timeout(RECLAIM_WAIT, slots.acquire_owned()).await {
                    Ok(Ok(permit)) => server.start(stream, permit, watcher),
                    _ => {
                        send_canned(
                            stream,
                            canned("503 Service Unavailable", "too many connections"),
                        )
                        .await
                    }
                }
            });
        } else {
            tokio::spawn(send_canned(
                stream,
                canned("503 Service Unavailable", "too many connections"),
            ));
        }
    }
    drop(listener);
    tracker.drain();
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
    Ok(())
}
