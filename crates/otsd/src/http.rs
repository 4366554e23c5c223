//! The HTTP API of PROTOCOL §2: routes, the wire-visible errors (one enum,
//! mapped to statuses in one place), and the accept loop that enforces the
//! connection cap, header and body timeouts and the header size limit.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower_http::cors::{Any, CorsLayer};

use crate::aggregator::{AggregatorHandle, SubmitError, MAX_DIGEST_LEN};
use crate::info::{InfoCache, InfoConfig, InfoPage};
use crate::journal::JournalReader;
use crate::status::{PendingIndex, StamperView};
use crate::store::Store;
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

/// Cache lifetimes of PROTOCOL §2 and the reference.
mod cache {
    pub const FOREVER: &str = "public, max-age=31536000";
    pub const PENDING: &str = "public, max-age=60";
    pub const TIP: &str = "public, max-age=10";
    /// As long as the server keeps a built page (`info::INFO_TTL`).
    pub const INFO: &str = "public, max-age=5";
    pub const NOT_FOUND: &str = "public, max-age=3600";
}

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

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Where digests go.
    pub aggregator: AggregatorHandle,
    /// Completed proofs.
    pub store: Arc<Store>,
    /// Journaled, not yet completed commitments.
    pub pending: Arc<PendingIndex>,
    /// The stamper's view.
    pub stamper: Arc<dyn StamperView>,
    /// The journal, for backup chunks.
    pub journal: JournalReader,
    /// Info page settings.
    pub info: Arc<InfoConfig>,
    /// The info page as last built.
    pub info_cache: Arc<InfoCache>,
    /// Limits.
    pub limits: Limits,
}

/// Every error a client can see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// Content-Length missing or not a number.
    InvalidContentLength,
    /// Content-Length over 64.
    DigestTooLong,
    /// The body did not arrive in time.
    BodyTimeout,
    /// The body ended early or could not be read.
    BodyIncomplete,
    /// `/timestamp/<x>` with `x` not hex.
    BadHex,
    /// A commitment without completed proof, with its reason line.
    NoProof(String),
    /// Backup chunk not (yet) complete.
    ChunkNotReady,
    /// Nothing here.
    NotFound,
    /// The calendar cannot accept digests right now.
    Unavailable,
    /// An internal fault, already logged.
    Internal,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use ApiError::*;
        let (status, body, cache): (_, String, _) = match self {
            InvalidContentLength => (
                StatusCode::BAD_REQUEST,
                "invalid Content-Length".into(),
                None,
            ),
            DigestTooLong => (StatusCode::BAD_REQUEST, "digest too long".into(), None),
            BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "body read timeout".into(),
                None,
            ),
            BodyIncomplete => (StatusCode::BAD_REQUEST, "incomplete body".into(), None),
            BadHex => (
                StatusCode::BAD_REQUEST,
                "commitment must be hex-encoded bytes".into(),
                Some(cache::FOREVER),
            ),
            NoProof(reason) => (StatusCode::NOT_FOUND, reason, Some(cache::PENDING)),
            ChunkNotReady => (
                StatusCode::NOT_FOUND,
                "Not found".into(),
                Some(cache::PENDING),
            ),
            NotFound => (
                StatusCode::NOT_FOUND,
                "Not found".into(),
                Some(cache::NOT_FOUND),
            ),
            Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "calendar unavailable".into(),
                None,
            ),
            Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error".into(),
                None,
            ),
        };
        let mut resp = (status, body).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        if let Some(c) = cache {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static(c));
        }
        resp
    }
}

/// The reason line for a commitment without completed proof.
pub const PENDING_REASON: &str = "Pending confirmation in Bitcoin blockchain";

/// The router, without a socket: tests can call it directly.
pub fn app(state: AppState) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers(Any);
    Router::new()
        .route("/", get(info_page))
        .route("/digest", post(post_digest))
        .route("/timestamp/{commitment}", get(get_timestamp))
        .route("/tip", get(get_tip))
        .route("/experimental/backup/{chunk}", get(get_backup))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(middleware::from_fn(log_request))
        .layer(cors)
        // Shared behind one Arc: handlers clone a pointer, not the whole
        // state, per request (that showed up in profiles).
        .with_state(Arc::new(state))
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn log_request(req: Request, next: Next) -> Response {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return next.run(req).await;
    }
    let (method, uri) = (req.method().clone(), req.uri().path().to_owned());
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    tracing::debug!(%method, path = %uri, status = resp.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
    resp
}

async fn post_digest(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    let Some(len) = len else {
        return ApiError::InvalidContentLength.into_response();
    };
    if len > MAX_DIGEST_LEN as u64 {
        // Answered before a byte of the body is read.
        return ApiError::DigestTooLong.into_response();
    }
    let limited = http_body_util::Limited::new(body, MAX_DIGEST_LEN);
    let digest = match tokio::time::timeout(st.limits.body_read_timeout, limited.collect()).await {
        Err(_) => return ApiError::BodyTimeout.into_response(),
        Ok(Err(_)) => return ApiError::BodyIncomplete.into_response(),
        Ok(Ok(c)) => c.to_bytes(),
    };
    if digest.len() as u64 != len {
        return ApiError::BodyIncomplete.into_response();
    }
    match st.aggregator.submit(digest.to_vec()).await {
        Ok(proof) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )],
            proof,
        )
            .into_response(),
        Err(SubmitError::TooLong) => ApiError::DigestTooLong.into_response(),
        Err(SubmitError::Unavailable) => ApiError::Unavailable.into_response(),
    }
}

async fn get_timestamp(
    State(st): State<Arc<AppState>>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Ok(Path(hex_str)) = path else {
        return Err(ApiError::BadHex);
    };
    let commitment = hex::decode(&hex_str).map_err(|_| ApiError::BadHex)?;
    // On the worker itself: a lookup is a few B-tree pages from redb's
    // cache and one journal read from the page cache, microseconds, where
    // handing it to the blocking pool would cost more than the lookup.
    let found = st.store.get_serialized(&commitment).map_err(|e| {
        tracing::error!(error = %e, "proof store lookup failed");
        ApiError::Internal
    })?;
    if let Some(bytes) = found {
        return Ok((
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static(cache::FOREVER),
                ),
            ],
            bytes,
        )
            .into_response());
    }
    Err(ApiError::NoProof(reason(&st, &commitment)))
}

/// The 404 line for a commitment without a completed proof.
fn reason(st: &AppState, commitment: &[u8]) -> String {
    if let Some(w) = st.stamper.waiting(commitment) {
        return format!(
            "Timestamped by transaction {}; waiting for {} confirmations",
            w.txid, w.confirmations_needed
        );
    }
    if st.pending.lookup(commitment).is_some() {
        return PENDING_REASON.to_owned();
    }
    match commitment.len() {
        36 | 44 => "Not found".to_owned(),
        n => format!(
            "Not found (a {n}-byte value looks like a submitted digest, not a calendar \
             commitment: ask for the commitment in the proof's pending attestation)"
        ),
    }
}

async fn get_tip(State(st): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let tip = st.stamper.tip().ok_or(ApiError::NotFound)?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache::TIP)),
        ],
        tip,
    )
        .into_response())
}

async fn info_page(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let page = st
        .info_cache
        .get(std::time::Instant::now(), || {
            InfoPage::new(
                &st.info,
                st.pending.len() as u64,
                st.stamper.tip(),
                st.stamper.chain_info(),
            )
        })
        .await;
    let json = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"));
    let (ctype, body) = if json {
        ("application/json", page.json.clone())
    } else {
        ("text/html; charset=utf-8", page.html.clone())
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache::INFO)),
            (header::VARY, HeaderValue::from_static("Accept")),
        ],
        body,
    )
        .into_response()
}

async fn get_backup(
    State(st): State<Arc<AppState>>,
    Path(chunk): Path<String>,
) -> Result<Response, ApiError> {
    let n: u64 = chunk.parse().map_err(|_| ApiError::ChunkNotReady)?;
    let (store, journal) = (st.store.clone(), st.journal.clone());
    let bytes = tokio::task::spawn_blocking(move || crate::backup::chunk(&store, &journal, n))
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|e| {
            tracing::error!(error = %e, chunk = n, "backup chunk failed");
            ApiError::Internal
        })?
        .ok_or(ApiError::ChunkNotReady)?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(cache::FOREVER),
            ),
        ],
        bytes,
    )
        .into_response())
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
