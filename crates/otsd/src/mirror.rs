//! Mirrors (issue 14): replicate calendars from their backup chunks
//! (`GET /experimental/backup/<n>`, PROTOCOL §2) and serve their proofs.
//! [`chunk`] parses and checks a chunk, [`headers`] checks its Bitcoin
//! attestations against a node, [`fetch`] gets it within a time and size
//! limit, [`db`] stores it (one transaction per chunk, with the calendar's
//! progress) and rebuilds proofs, [`sync`] follows each calendar, and
//! [`serve`] is the HTTP API of `otsd mirror`. A calendar started with
//! `--mirror URL` runs the same [`sync`] and serves the mirrored proofs
//! after its own (see `http`).

pub mod chunk;
pub mod db;
pub mod fetch;
pub mod headers;
pub mod serve;
pub mod sync;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

/// Runs `otsd mirror`: opens the store in `dir`, follows every calendar of
/// `config`, and serves on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    dir: &Path,
    config: &sync::MirrorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = Arc::new(
        db::MirrorStore::open(dir)
            .with_context(|| format!("mirror directory {}", dir.display()))?,
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (mirror, tasks) = sync::start(store, config, stop_rx)?;
    tracing::info!("listening on {}", listener.local_addr()?);
    // The calendar's listener: its connection cap, timeouts and sweep of
    // stalled connections guard the mirror's public port too.
    let served = crate::listener::run_router(
        listener,
        serve::app(mirror),
        None,
        &crate::limits::Limits::default(),
        None,
        None,
        async move {
            shutdown.await;
            tracing::info!("shutting down");
        },
    )
    .await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    served.context("serving")?;
    tracing::info!("stopped");
    Ok(())
}
