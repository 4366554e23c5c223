//! HTTP requests by route and status: a fixed table of atomic counters,
//! one `fetch_add` per request (no lock, no allocation, no label built on
//! the hot path), encoded as `otsd_http_requests_total{route,status}` at
//! scrape time. Routes and statuses are small fixed sets, never the raw
//! path, so a client cannot make new series.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;

/// A route of the public API, as labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /`, the info page.
    Info,
    /// `POST /digest`.
    Digest,
    /// `GET /timestamp/{commitment}`.
    Timestamp,
    /// `GET /tip`.
    Tip,
    /// `GET /experimental/backup/{chunk}`.
    Backup,
    /// Anything else (another method, another path, CORS preflights).
    Other,
}

impl Route {
    const ALL: [Route; 6] = [
        Route::Info,
        Route::Digest,
        Route::Timestamp,
        Route::Tip,
        Route::Backup,
        Route::Other,
    ];

    /// The route of a request for `path` with `method`.
    pub fn of(method: &axum::http::Method, path: &str) -> Route {
        use axum::http::Method;
        match (method, path) {
            (&Method::GET, "/") => Route::Info,
            (&Method::POST, "/digest") => Route::Digest,
            (&Method::GET, "/tip") => Route::Tip,
            (&Method::GET, p) if p.starts_with("/timestamp/") => Route::Timestamp,
            (&Method::GET, p) if p.starts_with("/experimental/backup/") => Route::Backup,
            _ => Route::Other,
        }
    }

    /// The `route` label.
    pub fn label(self) -> &'static str {
        match self {
            Route::Info => "GET /",
            Route::Digest => "POST /digest",
            Route::Timestamp => "GET /timestamp/{commitment}",
            Route::Tip => "GET /tip",
            Route::Backup => "GET /experimental/backup/{chunk}",
            Route::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The statuses counted one by one; any other is `other`.
pub struct Statuses;

impl Statuses {
    /// The statuses the API answers with.
    pub const KNOWN: [u16; 6] = [200, 400, 404, 408, 500, 503];

    fn index(status: u16) -> usize {
        Self::KNOWN
            .iter()
            .position(|&s| s == status)
            .unwrap_or(Self::KNOWN.len())
    }

    fn label(i: usize) -> &'static str {
        const LABELS: [&str; 7] = ["200", "400", "404", "408", "500", "503", "other"];
        LABELS[i]
    }
}

const STATUSES: usize = Statuses::KNOWN.len() + 1;

/// The table: every route × status cell is an atomic.
#[derive(Debug)]
pub(crate) struct Requests {
    cells: [[AtomicU64; STATUSES]; Route::ALL.len()],
}

impl Default for Requests {
    fn default() -> Self {
        Requests {
            cells: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

impl Requests {
    /// Counts one request.
    pub(crate) fn count(&self, route: Route, status: u16) {
        self.cells[route.index()][Statuses::index(status)].fetch_add(1, Relaxed);
    }
}

impl Collector for Requests {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "http_requests",
            "HTTP requests on the public port by route and status (those refused before routing, over the connection cap or timed out, are not counted).",
            None,
            MetricType::Counter,
        )?;
        // Every cell, zeros included: a series that exists from the start
        // makes rate() exact from the first request.
        for route in Route::ALL {
            for (i, cell) in self.cells[route.index()].iter().enumerate() {
                let labels = [("route", route.label()), ("status", Statuses::label(i))];
                let counter = ConstCounter::new(cell.load(Relaxed));
                counter.encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
