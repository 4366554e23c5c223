//! Bitcoin Core's JSON-RPC: the HTTP server ([`server`]) and its start-up
//! model ([`warmup`]), parameter parsing and error codes ([`params`]), the
//! node methods ([`chain`], with [`mempool`] and [`rawtx`] replies and the
//! [`txjson`] renderings) and the wallet methods ([`wallet`], with [`coins`]
//! and [`wallettx`] replies).
//!
//! `server` dispatches to `chain` and `wallet`, which call their reply
//! modules; those use `params` and `txjson`, and none names a module above
//! it.

pub mod chain;
pub mod coins;
pub mod mempool;
pub mod params;
pub mod rawtx;
pub mod server;
pub mod txjson;
pub mod wallet;
pub mod wallettx;
pub mod warmup;

pub use server::{process, serve, Auth, Node, COOKIE_USER, MAX_BODY_BYTES};
