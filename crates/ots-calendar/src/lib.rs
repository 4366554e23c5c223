//! A client for OpenTimestamps calendars, over http and https (rustls,
//! the system's roots plus an optional extra CA file): submit a digest
//! ([`Calendar::submit`], `POST /digest`) and fetch the timestamp of a
//! commitment ([`Calendar::get_timestamp`], `GET /timestamp/<hex>`).
//!
//! The protocol's limits are kept whoever is on the other side: replies
//! are read a chunk at a time and given up past [`MAX_REPLY_LEN`] bytes,
//! every request is bounded in time ([`ClientConfig`]), and a reply is
//! decoded as a timestamp of exactly what was asked about or rejected
//! ([`CalendarError::Malformed`]).
//!
//! ```no_run
//! # async fn example() -> Result<(), ots_calendar::CalendarError> {
//! use ots_calendar::{Client, ClientConfig};
//! let client = Client::new(&ClientConfig::default())?;
//! let calendar = client.calendar("https://a.pool.opentimestamps.org")?;
//! let pending = calendar.submit(&[0u8; 32]).await?;
//! # let _ = pending;
//! # Ok(())
//! # }
//! ```
//!
//! Modules: [`protocol`] (limits, media type, 404 reasons), `config`
//! ([`ClientConfig`] and its defaults), `error` ([`CalendarError`]),
//! `client` ([`Client`], [`Calendar`]).
#![warn(missing_docs)]

mod client;
mod config;
mod error;
pub mod protocol;

pub use client::{redirect_policy, Calendar, Client};
pub use config::{
    ClientConfig, Redirects, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, DEFAULT_USER_AGENT,
    MAX_REDIRECTS,
};
pub use error::{error_chain, CalendarError};
pub use protocol::{
    sanitise_reason, ACCEPT, MAX_REASON_LEN, MAX_REPLY_LEN, MAX_REPLY_MESSAGE_BYTES,
};
