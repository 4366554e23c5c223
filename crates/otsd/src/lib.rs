//! `otsd`, the OpenTimestamps calendar server, as a library: the binary is
//! a thin wrapper around [`server::serve`], and tests start the same server
//! on `127.0.0.1:0`.
//!
//! Data flow: [`http`] hands each POSTed digest to the [`aggregator`],
//! which once per interval builds a Merkle tree, makes the [`calendar`]
//! commitment, appends it to the [`journal`] with one fsync, records it in
//! the pending index ([`status`]) and answers every request. Completed
//! proofs live in the [`store`] (filled by the stamper; a reference
//! calendar's LevelDB `db/` is read in place by [`refstore`]), served by
//! `GET /timestamp` and as [`backup`] chunks; the [`listener`] accepts
//! connections and serves them on single-threaded [`workers`]; [`info`]
//! renders `GET /` (with [`qr`] codes) and caches it briefly.
//! `dev` is `otsd --dev`: the same server on an embedded regtest chain
//! (the default-on `dev` cargo feature).
//! [`mirror`] replicates other calendars from their backup chunks
//! (`otsd mirror`, or `otsd --mirror URL` beside a calendar's own proofs).
//! With a Bitcoin node configured, [`stamping`] is the runtime of
//! `ots-stamper`'s pure state machine: it polls the node through narrow
//! traits, reads the [`journal`], stores completed batches in the
//! [`store`] and persists the stamper's state.
//! [`metrics`] counts what happens (Prometheus) and serves it on a
//! listener of its own (`--metrics-address`).
//! [`store`] and persists the stamper's state. With `--upstream`,
//! [`upstream`] submits each commitment to other calendars, keeps their
//! replies and upgrades them (a private calendar).
//! [`aggregate`] is `otsd aggregate`, a stateless aggregator in front of
//! upstream calendars, on the same [`listener`] and [`workers`].
#![warn(missing_docs)]

pub mod aggregate;
pub mod aggregator;
pub mod backup;
pub mod calendar;
pub mod config;
pub mod consistency;
#[cfg(feature = "dev")]
pub mod dev;
pub mod html;
pub mod http;
pub mod import;
pub mod info;
pub mod journal;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod mirror;
pub mod qr;
pub mod refstore;
pub mod server;
pub mod stamping;
pub mod status;
pub mod store;
pub mod upstream;
pub mod workers;
