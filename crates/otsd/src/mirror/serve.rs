//! The mirror's own HTTP API: `GET /timestamp/<commitment>` with the
//! calendar's statuses and headers, `GET /experimental/backup/<n>` (this
//! mirror's own chunks, in the calendar's format, so mirrors chain), and
//! `GET /` (per mirrored calendar: chunks held, last chunk, last error; as
//! JSON with `Accept: application/json`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use super::db::MirrorStore;
use super::sync::{CalendarStatus, Mirror};
use crate::http::{cache, ApiError};
use crate::info::mirrors_html;

/// The router of a mirror process.
pub fn app(mirror: Mirror) -> Router {
    Router::new()
        .route("/", get(info))
        .route("/timestamp/{commitment}", get(timestamp))
        .route("/experimental/backup/{chunk}", get(backup))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .with_state(Arc::new(mirror))
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// The completed proof of `commitment` from `store`, as `GET /timestamp`
/// serves it; damage is logged and answered 500, never a proof.
fn lookup(store: &MirrorStore, commitment: &[u8]) -> Result<Option<Vec<u8>>, ApiError> {
    crate::http::mirrored_proof(store, commitment)
}

fn octets(bytes: Vec<u8>) -> Response {
    (
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
        .into_response()
}

async fn timestamp(
    State(m): State<Arc<Mirror>>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Ok(Path(hex_str)) = path else {
        return Err(ApiError::BadHex);
    };
    let commitment = hex::decode(&hex_str).map_err(|_| ApiError::BadHex)?;
    match lookup(&m.store, &commitment)? {
        Some(bytes) => Ok(octets(bytes)),
        None => Err(ApiError::NoProof("Not found".into())),
    }
}

async fn backup(
    State(m): State<Arc<Mirror>>,
    Path(chunk): Path<String>,
) -> Result<Response, ApiError> {
    let n: u64 = chunk.parse().map_err(|_| ApiError::ChunkNotReady)?;
    let store = m.store.clone();
    let bytes = tokio::task::spawn_blocking(move || store.own_chunk(n))
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|e| {
            tracing::error!(error = %e, chunk = n, "mirror chunk failed");
            ApiError::Internal
        })?
        .ok_or(ApiError::ChunkNotReady)?;
    Ok(octets(bytes))
}

/// The mirror's info page, as JSON.
#[derive(Debug, Serialize)]
struct Info {
    version: &'static str,
    own_chunks: u64,
    mirrors: Vec<CalendarStatus>,
}

async fn info(State(m): State<Arc<Mirror>>, headers: HeaderMap) -> Result<Response, ApiError> {
    let store = m.store.clone();
    let own_chunks = tokio::task::spawn_blocking(move || store.own_chunks())
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|e| {
            tracing::error!(error = %e, "mirror store");
            ApiError::Internal
        })?;
    let page = Info {
        version: env!("CARGO_PKG_VERSION"),
        own_chunks,
        mirrors: m.statuses(),
    };
    let json = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"));
    let (ctype, body) = if json {
        (
            "application/json",
            serde_json::to_string(&page).map_err(|_| ApiError::Internal)?,
        )
    } else {
        let mut html = format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>OpenTimestamps mirror</title></head><body>\n<h1>OpenTimestamps mirror</h1>\n<p>Version: {}</p>\n<p>Chunks held: {}</p>\n",
            page.version, page.own_chunks
        );
        html.push_str(&mirrors_html(&page.mirrors));
        html.push_str("</body></html>\n");
        ("text/html; charset=utf-8", html)
    };
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache::INFO)),
            (header::VARY, HeaderValue::from_static("Accept")),
        ],
        body,
    )
        .into_response())
}
