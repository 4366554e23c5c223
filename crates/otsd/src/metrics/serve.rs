//! The metrics listener of `--metrics-address`: its own small server,
//! apart from the public port, so that a reverse proxy in front of the
//! calendar never exposes it. `GET /metrics` answers the OpenMetrics text
//! format to a scraper that asks for it (Prometheus does), else the
//! Prometheus text format 0.0.4; every other request is a 404.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Metrics;

/// The `Content-Type` of the OpenMetrics text format.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The `Content-Type` of the Prometheus text format.
pub const CONTENT_TYPE_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Binds `address` (`HOST:PORT`; port 0 takes a free one).
pub async fn bind(address: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

/// Serves `metrics` on `listener` until `stop` turns true (or its sender
/// is dropped).
pub fn spawn(
    listener: TcpListener,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .fallback(|| async { (StatusCode::NOT_FOUND, "Not found") })
        .with_state(metrics);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics listener failed");
        }
    })
}

async fn scrape(State(metrics): State<Metrics>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    // Off the runtime's threads: counting the pending index walks it.
    let body = match tokio::task::spawn_blocking(move || metrics.encode(openmetrics)).await {
        Ok(body) => body,
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "scrape failed").into_response(),
    };
    let ctype = match openmetrics {
        true => CONTENT_TYPE_OPENMETRICS,
        false => CONTENT_TYPE_TEXT,
    };
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(ctype))],
        body,
    )
        .into_response()
}
