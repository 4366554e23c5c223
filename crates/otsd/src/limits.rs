//! The limits on hostile clients, [`Limits`], and their defaults: what the
//! accept loop ([`crate::listener`]) enforces on each connection and the
//! body read timeout the `/digest` handler ([`crate::http`]) applies.

use std::time::Duration;

/// Default cap on concurrent connections; over it, a new connection takes
/// the slot of one stalled for [`DEFAULT_RECLAIM_AFTER`] or more, or gets a
/// 503 and is closed.
pub const DEFAULT_MAX_CONNECTIONS: usize = 8192;
/// Default time a client has to send a request's head: from the
/// connection's start for its first request, from the first byte for a
/// later one. Past it the client gets a `408`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a keep-alive connection may sit idle between requests
/// before it is closed (quietly: no `408` to a client that sent nothing).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a write may wait for the peer to take any of our bytes
/// before the connection is closed.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default age after which a connection's answers carry `connection:
/// close` (and an idle one is closed); [`CONNECTION_AGE_GRACE`] later it is
/// closed whatever it is doing. Long: it only has to bound how long any
/// one peer keeps a slot, and each close costs a client a new handshake.
pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(600);
/// How long a connection past its age has to finish its last answer.
pub const CONNECTION_AGE_GRACE: Duration = Duration::from_secs(10);
/// Default time a connection must have been stalled (a write the peer does
/// not take, or waiting idle or for a head) before a new client over the
/// cap may take its slot.
pub const DEFAULT_RECLAIM_AFTER: Duration = Duration::from_secs(1);
/// Default time a client has to send a request's body once its headers
/// are in.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit on a request's head (request line and headers); hyper
/// answers 431 beyond it. Hyper's minimum is 8 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;

/// Hostile-client limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Concurrent connections.
    pub max_connections: usize,
    /// Header read timeout.
    pub header_read_timeout: Duration,
    /// Body read timeout.
    pub body_read_timeout: Duration,
    /// Largest request head, bytes.
    pub max_header_bytes: usize,
    /// Keep-alive idle timeout.
    pub idle_timeout: Duration,
    /// Write timeout (no progress).
    pub write_timeout: Duration,
    /// Maximum connection age.
    pub max_connection_age: Duration,
    /// How long a connection must have been stalled for a new client over
    /// the cap to take its slot.
    pub reclaim_after: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_connection_age: DEFAULT_MAX_CONNECTION_AGE,
            reclaim_after: DEFAULT_RECLAIM_AFTER,
        }
    }
}
