//! The aggregator's HTTP routes: `POST /digest` (the calendar's body
//! rules and errors, [`crate::http::ApiError`]), `GET /` (the upstreams'
//! state and the rounds, as JSON with `Accept: application/json`, else a
//! small HTML page), and a 404 with its reason for `GET /timestamp`: an
//! aggregator keeps no proofs, clients upgrade at the calendars.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::json;
use tower_http::cors::{Any, CorsLayer};

use super::round::{Handle, Stats};
use super::upstream::Upstreams;
use crate::aggregator::MAX_DIGEST_LEN;
use crate::html::escape;
use crate::http::ApiError;

/// The 404 reason of `GET /timestamp/…` (a line clients show people).
pub const NO_TIMESTAMPS: &str =
    "Not served by an aggregator; upgrade at the calendars named in the proof";
/// How long the info page may be cached.
const INFO_MAX_AGE: &str = "public, max-age=5";
/// How long the `GET /timestamp` 404 may be cached: it never changes.
const NO_TIMESTAMPS_MAX_AGE: &str = "public, max-age=3600";

/// What the handlers share.
pub struct Shared {
    /// Where digests go.
    pub handle: Handle,
    /// The upstreams, for the info page.
    pub upstreams: Arc<Upstreams>,
    /// The rounds' figures.
    pub stats: Arc<Stats>,
    /// The round interval, for the info page.
    pub interval: Duration,
    /// Time a client has to send its body.
    pub body_read_timeout: Duration,
}

/// The aggregator's router.
pub fn router(shared: Shared) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers(Any);
    Router::new()
        .route("/", get(info))
        .route("/digest", post(post_digest))
        .route("/timestamp/{commitment}", get(no_timestamps))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(cors)
        .with_state(Arc::new(shared))
}

/// The listener's fast path submits to the same rounds as
/// `post_digest`, with the same answers.
impl crate::listener::fast::DigestRoute for Handle {
    fn submit(&self, digest: Vec<u8>) -> crate::listener::fast::Submitted {
        let handle = self.clone();
        Box::pin(async move { handle.submit(digest).await.map_err(|e| e.0.to_string()) })
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn no_timestamps() -> Response {
    (
        StatusCode::NOT_FOUND,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/plain")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(NO_TIMESTAMPS_MAX_AGE),
            ),
        ],
        NO_TIMESTAMPS,
    )
        .into_response()
}

/// The calendar's rules (`crate::http`'s `post_digest`): a numeric
/// Content-Length of at most [`MAX_DIGEST_LEN`], checked before the body
/// is read; the whole body within the body timeout.
async fn post_digest(State(st): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    let Some(len) = len else {
        return ApiError::InvalidContentLength.into_response();
    };
    if len > MAX_DIGEST_LEN as u64 {
        return ApiError::DigestTooLong.into_response();
    }
    let limited = http_body_util::Limited::new(body, MAX_DIGEST_LEN);
    let digest = match tokio::time::timeout(st.body_read_timeout, limited.collect()).await {
        Err(_) => return ApiError::BodyTimeout.into_response(),
        Ok(Err(_)) => return ApiError::BodyIncomplete.into_response(),
        Ok(Ok(c)) => c.to_bytes(),
    };
    if digest.len() as u64 != len {
        return ApiError::BodyIncomplete.into_response();
    }
    match st.handle.submit(digest.to_vec()).await {
        Ok(proof) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )],
            proof,
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
            e.0.to_string(),
        )
            .into_response(),
    }
}

/// The figures of `GET /`.
fn figures(st: &Shared) -> serde_json::Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "role": "aggregator",
        "interval_ms": st.interval.as_millis() as u64,
        "upstream_min": st.upstreams.min(),
        "upstreams": st.upstreams.status(),
        "rounds": st.stats.rounds.load(Relaxed),
        "rounds_unavailable": st.stats.rounds_unavailable.load(Relaxed),
        "digests": st.stats.digests.load(Relaxed),
        "last_round_digests": st.stats.last_round_digests.load(Relaxed),
    })
}

fn html(v: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "never".to_owned(),
        serde_json::Value::String(s) => escape(s),
        other => escape(&other.to_string()),
    };
    let mut rows = String::new();
    for u in v["upstreams"].as_array().into_iter().flatten() {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            text(&u["url"]),
            text(&u["answered"]),
            text(&u["failed"]),
            text(&u["last_success"]),
            text(&u["last_error"]),
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>OpenTimestamps aggregator</title></head><body>\n\
         <p>This is an <a href=\"https://opentimestamps.org\">OpenTimestamps</a> aggregator (otsd v{version}): \
         it submits one Merkle tip per {interval} ms round to its upstream calendars and keeps nothing. \
         Upgrade your proofs at the calendars they name.</p>\n\
         <p>Rounds: {rounds} ({unavailable} unavailable); digests: {digests}; upstreams needed per round: {min}</p>\n\
         <table><tr><th>Upstream</th><th>Answered</th><th>Failed</th><th>Last success (unix time)</th><th>Last error</th></tr>\n{rows}</table>\n\
         </body></html>\n",
        version = text(&v["version"]),
        interval = text(&v["interval_ms"]),
        rounds = text(&v["rounds"]),
        unavailable = text(&v["rounds_unavailable"]),
        digests = text(&v["digests"]),
        min = text(&v["upstream_min"]),
    )
}

async fn info(State(st): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let v = figures(&st);
    let json = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"));
    let (ctype, body) = if json {
        ("application/json", v.to_string())
    } else {
        ("text/html; charset=utf-8", html(&v))
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(INFO_MAX_AGE),
            ),
            (header::VARY, HeaderValue::from_static("Accept")),
        ],
        body,
    )
        .into_response()
}
