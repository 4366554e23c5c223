//! Test helpers shared by the workspace's crates; not published.
//!
//! * [`bitcoind`]: a real Bitcoin Core node (`bitcoind -regtest`) in a
//!   temporary data directory, its RPC on a free port of 127.0.0.1, for the
//!   optional test tier that runs when `BITCOIND_EXE` names a binary
//!   ([`bitcoind::exe`]). Started and awaited ([`bitcoind::Bitcoind::start`]),
//!   stopped, killed and restarted on the same data directory and ports,
//!   and killed when dropped.
//! * [`tls`]: a TLS-terminating proxy on a free port of 127.0.0.1 in front
//!   of a plain HTTP address, its certificate (for `127.0.0.1` and
//!   `localhost`) signed by a throwaway CA whose PEM file a client is given
//!   ([`tls::TlsProxy`]).
//! * [`socks5`]: a SOCKS5 proxy (no authentication, `CONNECT`) on a free
//!   port of 127.0.0.1 that records the destinations it was asked for
//!   ([`socks5::Socks5Proxy`]).
//!
//! Use it from `[dev-dependencies]`:
//!
//! ```toml
//! [dev-dependencies]
//! test-support = { path = "../test-support" }
//! ```

pub mod bitcoind;
pub mod socks5;
pub mod tls;
