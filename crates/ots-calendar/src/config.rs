//! How a calendar client is set up ([`ClientConfig`]): timeouts, the User-Agent,
//! an extra CA file trusted beside the system's roots, a proxy, and which
//! redirects are followed ([`Redirects`]).

use std::path::PathBuf;
use std::time::Duration;

/// Default bound on a whole request: connecting, the TLS handshake,
/// sending, and reading the reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound on opening the connection (TCP and TLS).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The User-Agent we send by default.
pub const DEFAULT_USER_AGENT: &str =
    concat!("OpenTimestamps-Client-rs/", env!("CARGO_PKG_VERSION"));

/// Most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 10;

/// Which redirects a [`crate::Client`] follows (at most [`MAX_REDIRECTS`]);
/// any other is answered as the redirect's own status
/// ([`crate::CalendarError::Status`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Redirects {
    /// Any, as the reference client does: a person's client, asking the
    /// calendars its proofs name.
    #[default]
    Any,
    /// Only to the same scheme, host and port: a server talking to the
    /// calendars it was configured with must not be sent to other hosts
    /// (its Bitcoin node, a host on its private network) by one of them.
    SameOrigin,
}

/// How a [`crate::Client`] talks to calendars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Bound on each whole request (see [`DEFAULT_TIMEOUT`]); a
    /// [`crate::Calendar`] can override it
    /// ([`crate::Calendar::with_timeout`]).
    pub timeout: Duration,
    /// Bound on opening a connection (see [`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect_timeout: Duration,
    /// A PEM file of CA certificates trusted for https beside the system's
    /// roots (a private calendar, a test server's throwaway certificate).
    pub ca_file: Option<PathBuf>,
    /// The User-Agent header.
    pub user_agent: String,
    /// Send every request through this proxy (a URL: `socks5h://HOST:PORT`
    /// resolves names through the proxy, as Tor needs; `socks5://`,
    /// `http://` and `https://` proxies work too). When `None`, the
    /// environment's `ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY` and
    /// `NO_PROXY` (or their lower-case forms) are honoured, as reqwest
    /// reads them; when set, the environment is ignored.
    pub proxy: Option<String>,
    /// Which redirects are followed (see [`Redirects`]).
    pub redirects: Redirects,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            ca_file: None,
            user_agent: DEFAULT_USER_AGENT.to_string(),
            proxy: None,
            redirects: Redirects::Any,
        }
    }
}
