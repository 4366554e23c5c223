//! The HTTP API of PROTOCOL §2: routes and the wire-visible errors (one
//! enum, mapped to statuses in one place); `POST /digest` applies the body
//! read timeout. The accept loop (connection cap, timeouts, header size
//! limit) is [`crate::listener`]; the [`Limits`] are [`crate::limits`]'s.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use tower_http::cors::{Any, CorsLayer};

use crate::aggregator::{AggregatorHandle, SubmitError, MAX_DIGEST_LEN};
use crate::info::{InfoCache, InfoConfig, InfoPage};
use crate::journal::JournalReader;
use crate::refstore::RefStore;
use crate::status::{PendingIndex, StamperView};
use crate::store::Store;

use crate::limits::Limits;
use crate::metrics::{Metrics, Refusal, Route};

/// Cache lifetimes of PROTOCOL §2 and the reference.
pub(crate) mod cache {
    pub const FOREVER: &str = "public, max-age=31536000";
    pub const PENDING: &str = "public, max-age=60";
    pub const TIP: &str = "public, max-age=10";
    /// As long as the server keeps a built page (`info::INFO_TTL`).
    pub const INFO: &str = "public, max-age=5";
    pub const NOT_FOUND: &str = "public, max-age=3600";
    /// An incomplete proof through upstream calendars: it will grow.
    pub const INCOMPLETE: &str = "public, max-age=30";
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Where digests go.
    pub aggregator: AggregatorHandle,
    /// Completed proofs.
    pub store: Arc<Store>,
    /// A reference calendar's `db/`, read-only, asked after `store`
    /// (issue 13).
    pub refstore: Option<RefStore>,
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
    /// What is counted (issue 17).
    pub metrics: Metrics,
    /// Upstream calendars (issue 12), whose replies and proofs are served
    /// too.
    pub upstream: Option<Arc<crate::upstream::Upstreams>>,
    /// Other calendars' proofs, mirrored with `--mirror` (issue 14), asked
    /// after `store` and `refstore`.
    pub mirror: Option<crate::mirror::sync::Mirror>,
    /// Backup chunk builds, bounded and shared
    /// ([`crate::backup::Builds`]).
    pub backup_builds: Arc<crate::backup::Builds>,
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
    /// Too many backup chunk requests in progress
    /// ([`crate::backup::MAX_CHUNK_REQUESTS`]).
    BackupBusy,
    /// An internal fault, already logged.
    Internal,
}

impl ApiError {
    /// The answer's status, text and `Cache-Control`, if any.
    pub fn parts(self) -> (StatusCode, String, Option<&'static str>) {
        use ApiError::*;
        match self {
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
            BackupBusy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many backup chunks asked for at once; try again shortly".into(),
                None,
            ),
            Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error".into(),
                None,
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body, cache) = self.parts();
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
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            log_request,
        ))
        .layer(cors)
        // Shared behind one Arc: handlers clone a pointer, not the whole
        // state, per request (that showed up in profiles).
        .with_state(Arc::new(state))
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// Counts every routed request by route and status (one atomic add), and
/// logs it at debug.
async fn log_request(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let route = Route::of(req.method(), req.uri().path());
    if !tracing::enabled!(tracing::Level::DEBUG) {
        let resp = next.run(req).await;
        metrics.request(route, resp.status().as_u16());
        return resp;
    }
    let (method, uri) = (req.method().clone(), req.uri().path().to_owned());
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    metrics.request(route, resp.status().as_u16());
    tracing::debug!(%method, path = %uri, status = resp.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
    resp
}

async fn post_digest(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    let refuse = |why: Refusal, e: ApiError| {
        st.metrics.digest_refused(why);
        e.into_response()
    };
    let Some(len) = len else {
        return refuse(
            Refusal::InvalidContentLength,
            ApiError::InvalidContentLength,
        );
    };
    if len > MAX_DIGEST_LEN as u64 {
        // Answered before a byte of the body is read.
        return refuse(Refusal::TooLong, ApiError::DigestTooLong);
    }
    let limited = http_body_util::Limited::new(body, MAX_DIGEST_LEN);
    let digest = match tokio::time::timeout(st.limits.body_read_timeout, limited.collect()).await {
        Err(_) => return refuse(Refusal::BodyTimeout, ApiError::BodyTimeout),
        Ok(Err(_)) => return refuse(Refusal::BodyIncomplete, ApiError::BodyIncomplete),
        Ok(Ok(c)) => c.to_bytes(),
    };
    if digest.len() as u64 != len {
        return refuse(Refusal::BodyIncomplete, ApiError::BodyIncomplete);
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
        Err(SubmitError::TooLong) => refuse(Refusal::TooLong, ApiError::DigestTooLong),
        Err(SubmitError::Unavailable) => refuse(Refusal::Unavailable, ApiError::Unavailable),
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
    let (found, cache_control) = match served_proof(&st, &commitment).await? {
        Some((bytes, true)) => (Some(bytes), cache::FOREVER),
        Some((bytes, false)) => (Some(bytes), cache::INCOMPLETE),
        None => (None, cache::FOREVER),
    };
    if let Some(bytes) = found {
        return Ok((
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static(cache_control),
                ),
            ],
            bytes,
        )
            .into_response());
    }
    Err(ApiError::NoProof(reason(&st, &commitment)))
}

/// What `GET /timestamp/<commitment>` serves, and whether it is complete
/// (reaches a Bitcoin attestation; otherwise an upstream's pending reply,
/// served short-lived). The one place deciding where a proof comes from:
/// our store, then a reference calendar's `db/` in place, then a mirror,
/// then the upstreams. Backup chunks take their proofs from here too.
async fn served_proof(
    st: &AppState,
    commitment: &[u8],
) -> Result<Option<(Vec<u8>, bool)>, ApiError> {
    // On the worker itself: a lookup is a few B-tree pages from redb's
    // cache and one journal read from the page cache, microseconds, where
    // handing it to the blocking pool would cost more than the lookup.
    // A corrupt batch is a 500 naming the commitment and the batch, never
    // a proof (the store checks what it serves, see `store`'s Integrity).
    let found = st.store.get_serialized(commitment).map_err(|e| {
        tracing::error!(commitment = %hex::encode(commitment), batch = e.batch(), error = %e, "proof store lookup failed");
        ApiError::Internal
    })?;
    let found = match (found, &st.refstore) {
        (None, Some(r)) => reference_proof(r, commitment).await?,
        (found, _) => found,
    };
    let found = match (found, &st.mirror) {
        // Without a node the mirror checked no attestation: what another
        // calendar says of one of our own pending commitments is not
        // served (it would be taken for complete, and cached for a year).
        (None, Some(m)) if m.checks_headers() || st.pending.lookup(commitment).is_none() => {
            mirrored_proof(&m.store, commitment)?
        }
        (found, _) => found,
    };
    // Issue 12: upstream replies (an incomplete proof, short-lived) and
    // complete upstream proofs (merged with ours when both exist).
    match &st.upstream {
        None => Ok(found.map(|bytes| (bytes, true))),
        Some(up) => up.serve(commitment, found).map_err(|e| {
            tracing::error!(commitment = %hex::encode(commitment), error = %e, "upstream lookup failed");
            ApiError::Internal
        }),
    }
}

/// Issue 13: the proof in the reference's `db/`, only if complete. Bad data
/// is logged naming the key and answered 500 (a proof reaching no Bitcoin
/// attestation: 404 with the reason line), never a proof.
async fn reference_proof(r: &RefStore, commitment: &[u8]) -> Result<Option<Vec<u8>>, ApiError> {
    r.proof(commitment).await.or_else(|e| {
        tracing::error!(commitment = %hex::encode(commitment), error = %e, "reference store lookup failed");
        match e.is_incomplete() {
            true => Ok(None),
            false => Err(ApiError::Internal),
        }
    })
}

/// Issue 14: the proof in the mirror's store. Damage is logged naming the
/// commitment and answered 500, never a proof.
pub(crate) fn mirrored_proof(
    store: &crate::mirror::db::MirrorStore,
    commitment: &[u8],
) -> Result<Option<Vec<u8>>, ApiError> {
    store.proof_serialized(commitment).map_err(|e| {
        tracing::error!(commitment = %hex::encode(commitment), error = %e, "mirror store lookup failed");
        ApiError::Internal
    })
}

/// The 404 line for a commitment without a completed proof.
fn reason(st: &AppState, commitment: &[u8]) -> String {
    // One lookup in the pending index; the stamper answers by position.
    if let Some(position) = st.pending.lookup(commitment) {
        return match st.stamper.waiting(position) {
            Some(w) => format!(
                "Timestamped by transaction {}; waiting for {} confirmations",
                w.txid, w.confirmations_needed
            ),
            None => PENDING_REASON.to_owned(),
        };
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
            let mut page = InfoPage::new(
                &st.info,
                st.pending.len() as u64,
                st.stamper.tip(),
                st.stamper.chain_info(),
            );
            if let Some(up) = &st.upstream {
                page.upstreams = up.statuses();
            }
            if let Some(m) = &st.mirror {
                page.mirrors = m.statuses();
            }
            page
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
    let journal = st.journal.clone();
    let commitments = tokio::task::spawn_blocking(move || crate::backup::commitments(&journal, n))
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|e| {
            tracing::error!(error = %e, chunk = n, "backup chunk: journal read failed");
            ApiError::Internal
        })?
        .ok_or(ApiError::ChunkNotReady)?;
    // The newest commitment first: a chunk not yet complete usually lacks
    // its last proofs, and mirrors ask for the next chunk again and again.
    let newest = commitments.last().ok_or(ApiError::ChunkNotReady)?;
    if !matches!(served_proof(&st, newest).await?, Some((_, true))) {
        return Err(ApiError::ChunkNotReady);
    }
    let bytes = st
        .backup_builds
        .run(n, |turn| build_chunk(&st, n, commitments, turn))
        .await
        .map_err(|e| match e {
            crate::backup::RunError::Busy => ApiError::BackupBusy,
            crate::backup::RunError::Build(e) => e,
        })?;
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
        bytes.as_ref().clone(),
    )
        .into_response())
}

/// Builds chunk `n` of `commitments` (its newest proof already found
/// complete), holding `turn` until the work is done, blocking-pool work
/// included (see [`crate::backup::Builds::run`]).
async fn build_chunk(
    st: &AppState,
    n: u64,
    commitments: Vec<Vec<u8>>,
    turn: tokio::sync::OwnedSemaphorePermit,
) -> Result<Vec<u8>, ApiError> {
    let store = st.store.clone();
    let (found, turn) = tokio::task::spawn_blocking(move || {
        (crate::backup::Chunk::from_store(&store, &commitments), turn)
    })
    .await
    .map_err(|_| ApiError::Internal)?;
    let mut found = found.map_err(|e| {
        tracing::error!(error = %e, chunk = n, "backup chunk failed");
        ApiError::Internal
    })?;
    // Proofs served from elsewhere (`db/` in place, upstreams, a mirror)
    // go in as served, and only complete ones.
    let mut elsewhere = Vec::with_capacity(found.missing().len());
    for commitment in found.missing() {
        match served_proof(st, commitment).await? {
            Some((bytes, true)) => elsewhere.push((commitment.clone(), bytes)),
            _ => return Err(ApiError::ChunkNotReady),
        }
    }
    // Merging a thousand proof trees is milliseconds: off the HTTP worker.
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        for (commitment, bytes) in &elsewhere {
            let ts = ots_proof::Timestamp::deserialize(bytes, commitment).map_err(|e| {
                tracing::error!(commitment = %hex::encode(commitment), error = %e, chunk = n, "backup chunk: a served proof does not parse");
                ApiError::Internal
            })?;
            found.add(&ts);
        }
        Ok(found.encode())
    })
    .await
    .map_err(|_| ApiError::Internal)?
}
