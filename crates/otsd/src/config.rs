//! The server's configuration, in one place: the command line (flags
//! compatible with the reference `otsd`, the `init` step, this server's own
//! limits) and the resolved [`Settings`] that [`crate::server::serve`]
//! takes, with its stamping [`Backend`]. Flags become settings in one step,
//! [`ServerArgs::settings`]; every default is a named constant.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub mod duration;

use duration::{positive_millis, Millis, Secs};

use crate::aggregate::{
    AggregateSettings, DEFAULT_INTERVAL as DEFAULT_AGGREGATE_INTERVAL, DEFAULT_UPSTREAM_GRACE,
    DEFAULT_UPSTREAM_MIN as DEFAULT_AGGREGATE_UPSTREAM_MIN,
    DEFAULT_UPSTREAM_TIMEOUT as DEFAULT_AGGREGATE_UPSTREAM_TIMEOUT,
};
use crate::aggregator::DEFAULT_AGGREGATION_INTERVAL;
use crate::info::DEFAULT_EXPLORER_URL;
use crate::journal::Verify;
use crate::limits::{
    Limits, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTION_AGE, DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_RECLAIM_AFTER, DEFAULT_WRITE_TIMEOUT,
};
use crate::status::StamperView;
use crate::upstream::{
    UpstreamConfig, DEFAULT_UPSTREAM_FALLBACK_AFTER, DEFAULT_UPSTREAM_MIN, DEFAULT_UPSTREAM_POLL,
    DEFAULT_UPSTREAM_TIMEOUT,
};

/// Everything the server needs besides the calendar directory, resolved:
/// no flag parsing or defaults are left to the server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Aggregation interval.
    pub aggregation_interval: Duration,
    /// Hostile-client limits.
    pub limits: Limits,
    /// Block explorer base URL for the info page's links; `None`: no links.
    pub explorer_url: Option<String>,
    /// Lightning invoice file for the info page.
    pub lightning_invoice_file: Option<PathBuf>,
    /// Journal verification at start-up.
    pub journal_verify: Verify,
    /// What completes the journal's commitments.
    pub backend: Backend,
    /// Threads serving HTTP connections, each with a single-threaded
    /// runtime ([`crate::workers`]); 0 serves them on the caller's runtime.
    pub http_threads: usize,
    /// Where `GET /metrics` is served (`HOST:PORT`), apart from the public
    /// port; `None`: not served (the metrics are counted all the same).
    pub metrics_address: Option<String>,
    /// Upstream calendars (`--upstream`); none: off.
    pub upstream: UpstreamConfig,
    /// Other calendars to mirror beside this one (`--mirror`, issue 14).
    pub mirror: Option<crate::mirror::sync::MirrorConfig>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            aggregation_interval: DEFAULT_AGGREGATION_INTERVAL,
            limits: Limits::default(),
            explorer_url: Some(DEFAULT_EXPLORER_URL.to_owned()),
            lightning_invoice_file: None,
            journal_verify: Verify::All,
            backend: Backend::None,
            http_threads: default_http_threads(),
            metrics_address: None,
            upstream: UpstreamConfig::default(),
            mirror: None,
        }
    }
}

/// What completes the journal's commitments: the one place where a way of
/// stamping is chosen. The server starts it after the journal and the
/// store are open, and serves what it reports.
#[derive(Clone, Default)]
pub enum Backend {
    /// Nothing: digests are accepted and journaled, and stay pending
    /// (`--no-bitcoin`).
    #[default]
    None,
    /// The calendar's own wallet on a Bitcoin node.
    Bitcoin(Bitcoin),
    /// Completed by something outside the server that fills the store
    /// itself (an embedding program); the server only shows its view.
    External(Arc<dyn StamperView>),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::None => f.write_str("None"),
            Backend::Bitcoin(b) => f.debug_tuple("Bitcoin").field(b).finish(),
            Backend::External(_) => f.write_str("External"),
        }
    }
}

/// How to reach the Bitcoin node and how to stamp.
#[derive(Debug, Clone)]
pub struct Bitcoin {
    /// The node's JSON-RPC endpoint and credentials.
    pub rpc: ots_bitcoin::RpcConfig,
    /// The stamper's settings.
    pub stamper: ots_stamper::Config,
    /// `estimatesmartfee` target.
    pub conf_target: u32,
    /// How often the chain is polled.
    pub poll: Duration,
}

/// One HTTP thread per CPU but one, and at least one: the remaining CPU
/// is the aggregator's (hashing, proofs, the journal), the stamper's and
/// the system's. On the 2-core bench machine two HTTP threads serve GETs
/// faster but spread a round's replies less evenly (the figures are in
/// `crates/otsd/bench/RESULTS.md`, the 2026-11-21 05:36 run).
pub fn default_http_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// `otsd aggregate`'s HTTP threads: as a calendar's, one per CPU but one.
/// Since plain `POST /digest` skips hyper (`listener/fast.rs`), one
/// thread on the 2-core bench machine gets a round's replies out in time
/// and costs less CPU than two: over 5 minutes, at 16,384 connections
/// 99.1 % of the bound at 14.5 µs per digest against 98.5 % at 17.3 µs,
/// and at 4,096 12.7 against 14.1–16.5 µs, in one sitting
/// (`crates/otsd/bench/RESULTS.md`, 2026-12-02 18:12–18:42).
pub fn default_aggregate_http_threads() -> usize {
    default_http_threads()
}

/// `--dev`'s stamping, fixed so that stamp → upgrade → verify takes well
/// under a minute: the node is the embedded devchain at `rpc`.
#[derive(Debug, Clone)]
pub struct DevNode {
    /// devchain's JSON-RPC endpoint, credentials and wallet.
    pub rpc: ots_bitcoin::RpcConfig,
}

/// Seconds between rounds in dev mode.
pub const DEV_TX_INTERVAL_SECS: u64 = 5;
/// Confirmations in dev mode.
pub const DEV_CONFIRMATIONS: u64 = 2;
/// Chain polling in dev mode.
pub const DEV_POLL: Duration = Duration::from_secs(1);

/// Default HTTP port (the reference's).
pub const DEFAULT_RPC_PORT: u16 = 14788;
/// Default listen address (the reference's).
pub const DEFAULT_RPC_ADDRESS: &str = "localhost";
/// Default calendar directory, under `$HOME`.
pub const DEFAULT_CALENDAR_DIR: &str = ".otsd/calendar";
/// Default most commitments per stamper transaction.
pub const DEFAULT_MAX_PENDING: u64 = 100_000;
/// Default confirmation target for fee estimation, blocks.
pub const DEFAULT_BTC_CONF_TARGET: u32 = 2;
/// Default minimum relay fee rate, sat/vB.
pub const DEFAULT_BTC_MIN_RELAY_FEERATE: f64 = 1.0;
/// Default maximum fee per transaction, BTC.
pub const DEFAULT_BTC_MAX_FEE: f64 = 0.001;
/// Default confirmations before a proof is saved for good.
pub const DEFAULT_BTC_MIN_CONFIRMATIONS: u32 = 6;
/// Default minimum seconds between timestamp transactions (6 h).
pub const DEFAULT_BTC_MIN_TX_INTERVAL: u64 = 6 * 3600;

/// The OpenTimestamps calendar server.
#[derive(Debug, Parser)]
#[command(name = "otsd", version, about)]
pub struct Cli {
    /// Calendar directory [default: ~/.otsd/calendar].
    #[arg(short = 'c', long = "calendar", global = true)]
    pub calendar: Option<PathBuf>,
    /// More logging (repeatable).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less logging (repeatable).
    #[arg(short = 'q', long = "quiet", action = clap::ArgAction::Count, global = true)]
    pub quiet: u8,
    /// Also write debug-level logs to this file.
    #[arg(long = "debug-file", global = true)]
    pub debug_file: Option<PathBuf>,
    /// Log line format, on stderr and in `--debug-file`.
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Server settings.
    #[command(flatten)]
    pub server: ServerArgs,
    /// An optional step instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event (coloured only on a terminal).
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`),
    /// for journald or a log shipper.
    Json,
}

/// Steps other than serving.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the calendar directory: `uri`, `donation_addr` and a fresh
    /// `hmac-key` (never overwritten).
    Init {
        /// The calendar's public URI (goes into every pending attestation).
        #[arg(long)]
        uri: String,
        /// Bitcoin donation address shown on the info page.
        #[arg(long = "donation-addr", default_value = "")]
        donation_addr: String,
    },
    /// Copy the completed proofs of a reference calendar's LevelDB `db/`
    /// into our store, checking each; resumable (run it again after a
    /// crash or Ctrl-C). Stop otsd first. `db/` is never written.
    ImportReference(ImportArgs),
    /// Run a stateless aggregator in front of upstream calendars instead
    /// of a calendar: no calendar directory, key, wallet or journal.
    Aggregate(AggregateArgs),
    /// Mirror calendars from their backup chunks and serve their proofs
    /// (`otsd mirror -c URL …`; must be the first argument: see
    /// `otsd mirror --help`).
    Mirror,
}

/// `otsd import-reference`'s flags.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The reference calendar directory [default: `-c`'s].
    pub dir: Option<PathBuf>,
    /// Check each Bitcoin attestation's block header with the node of the
    /// `--btc-*` flags (implied by `--bitcoin-node`).
    #[arg(long = "verify-headers")]
    pub verify_headers: bool,
    /// Check each Bitcoin attestation against a file of `HEIGHT
    /// HEADER_HEX` lines instead of a node.
    #[arg(
        long = "headers-file",
        value_name = "FILE",
        conflicts_with = "verify_headers"
    )]
    pub headers_file: Option<PathBuf>,
    /// No progress bar, even on a terminal.
    #[arg(long = "no-progress")]
    pub no_progress: bool,
    /// Start at the journal's first record instead of the saved cursor
    /// (what the store has is skipped): after the reference ran again and
    /// completed more of it.
    #[arg(long = "from-start")]
    pub from_start: bool,
    /// Compare every node of every batch's tree with db/ (about four
    /// LevelDB reads per commitment, several times slower) instead of
    /// finding each batch from its first commitment's path and checking
    /// its tail and a sample of its proofs.
    #[arg(long = "check-every-node")]
    pub check_every_node: bool,
    /// Commitments written per store transaction at most (one fsync each).
    #[arg(long = "commitments-per-transaction", default_value_t = crate::import::WRITE_COMMITMENTS as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub commitments_per_transaction: u64,
    /// The node to check headers with.
    #[command(flatten)]
    pub bitcoin: BitcoinArgs,
}

/// Flags of the server proper.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long = "rpc-address", default_value = DEFAULT_RPC_ADDRESS)]
    pub rpc_address: String,
    /// Port to listen on (0: any free port, printed at start-up).
    #[arg(long = "rpc-port", default_value_t = DEFAULT_RPC_PORT)]
    pub rpc_port: u16,
    /// Aggregation interval, milliseconds.
    #[arg(long = "aggregation-interval", default_value_t = DEFAULT_AGGREGATION_INTERVAL.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub aggregation_interval_ms: u64,
    /// Block explorer base URL for the info page's links [default on
    /// mainnet: `https://blockstream.info`; on testnet, regtest and `--dev`:
    /// none, no links].
    #[arg(long = "explorer-url")]
    pub explorer_url: Option<String>,
    /// File holding a Lightning invoice for the info page.
    #[arg(long = "lightning-invoice-file")]
    pub lightning_invoice_file: Option<PathBuf>,
    /// Most commitments per timestamp transaction.
    #[arg(long = "max-pending", default_value_t = DEFAULT_MAX_PENDING)]
    pub max_pending: u64,
    /// Check only the MACs of the last N journal records at start-up
    /// [default: all].
    #[arg(long = "journal-verify-last")]
    pub journal_verify_last: Option<u64>,
    /// Threads serving HTTP connections [default: one per CPU but one, at
    /// least one].
    #[arg(long = "http-threads", value_parser = clap::value_parser!(u16).range(1..))]
    pub http_threads: Option<u16>,
    /// Serve Prometheus metrics (`GET /metrics`) on this `HOST:PORT`, a
    /// listener of its own: keep it private, never behind the public
    /// proxy [default: off].
    #[arg(long = "metrics-address", value_name = "HOST:PORT")]
    pub metrics_address: Option<String>,
    /// Hostile-client limits.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Bitcoin settings (used by the stamper).
    #[command(flatten)]
    pub bitcoin: BitcoinArgs,
    /// Upstream calendars.
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    /// Mirror this calendar's backup chunks too and serve its proofs after
    /// our own (repeatable; issue 14). Stored in `mirror.redb` in the
    /// calendar directory; Bitcoin attestations are checked against the
    /// calendar's node.
    #[arg(long = "mirror", value_name = "URL")]
    pub mirror: Vec<String>,
    /// `--mirror`: longest wait between polls once caught up, and between
    /// retries after errors, seconds (fractions allowed).
    #[arg(long = "mirror-poll-interval", default_value_t = crate::mirror::sync::DEFAULT_POLL_INTERVAL.as_secs_f64())]
    pub mirror_poll_interval: f64,
}

impl ServerArgs {
    /// The server's settings from these flags; `dev` is the running
    /// devchain with `--dev` (whose address is known only once it runs).
    pub fn settings(&self, dev: Option<DevNode>) -> Settings {
        let dev_rpc = dev.as_ref().map(|d| d.rpc.clone());
        Settings {
            aggregation_interval: Duration::from_millis(self.aggregation_interval_ms),
            limits: self.limits.limits(),
            explorer_url: self.explorer_url(),
            lightning_invoice_file: self.lightning_invoice_file.clone(),
            journal_verify: self.journal_verify_last.map_or(Verify::All, Verify::Last),
            backend: self.backend(dev),
            http_threads: self
                .http_threads
                .map_or_else(default_http_threads, usize::from),
            metrics_address: self.metrics_address.clone(),
            upstream: self.upstream.config(),
            mirror: self.mirror_config(dev_rpc),
        }
    }

    /// `--mirror`'s settings: the calendars, checked against the
    /// calendar's own node (none with `--no-bitcoin`).
    fn mirror_config(
        &self,
        dev: Option<ots_bitcoin::RpcConfig>,
    ) -> Option<crate::mirror::sync::MirrorConfig> {
        if self.mirror.is_empty() {
            return None;
        }
        let bitcoin = match dev {
            Some(rpc) => Some(rpc),
            None => self.bitcoin.settings().map(|b| b.rpc),
        };
        Some(crate::mirror::sync::MirrorConfig {
            calendars: self.mirror.clone(),
            poll_interval: seconds(self.mirror_poll_interval),
            bitcoin,
            ..Default::default()
        })
    }

    /// The explorer the info page links to: the flag's, or on mainnet
    /// [`DEFAULT_EXPLORER_URL`]; a mainnet explorer's pages of testnet or
    /// regtest blocks would be wrong or missing, so there it is none.
    fn explorer_url(&self) -> Option<String> {
        let b = &self.bitcoin;
        match &self.explorer_url {
            Some(url) => Some(url.clone()),
            None if b.btc_testnet || b.btc_regtest || b.dev => None,
            None => Some(DEFAULT_EXPLORER_URL.to_owned()),
        }
    }

    /// The stamping backend: none with `--no-bitcoin`, else the node of
    /// the Bitcoin flags (or `--dev`'s devchain, with its fixed timings).
    fn backend(&self, dev: Option<DevNode>) -> Backend {
        let Some(mut bitcoin) = self.bitcoin.settings() else {
            return Backend::None;
        };
        bitcoin.stamper.max_pending = self.max_pending;
        if let Some(dev) = dev {
            bitcoin.rpc = dev.rpc;
            bitcoin.stamper.min_confirmations = DEV_CONFIRMATIONS;
            bitcoin.stamper.min_tx_interval_secs = DEV_TX_INTERVAL_SECS;
            bitcoin.poll = DEV_POLL;
        }
        Backend::Bitcoin(bitcoin)
    }
}

/// Limits on clients.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Concurrent connections; over it a new connection takes the slot of
    /// the longest stalled one, or gets 503.
    #[arg(long = "max-connections", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Seconds a client has to send a request head.
    #[arg(long = "header-timeout", default_value_t = DEFAULT_HEADER_READ_TIMEOUT.as_secs())]
    pub header_timeout_secs: u64,
    /// Seconds a keep-alive connection may idle between requests.
    #[arg(long = "idle-timeout", default_value_t = DEFAULT_IDLE_TIMEOUT.as_secs())]
    pub idle_timeout_secs: u64,
    /// Seconds a write may wait for the client to take any byte.
    #[arg(long = "write-timeout", default_value_t = DEFAULT_WRITE_TIMEOUT.as_secs())]
    pub write_timeout_secs: u64,
    /// Seconds after which a connection is closed after its current answer.
    #[arg(long = "max-connection-age", default_value_t = DEFAULT_MAX_CONNECTION_AGE.as_secs())]
    pub max_connection_age_secs: u64,
    /// Seconds a connection must have been stalled before a new client over
    /// the cap may take its slot.
    #[arg(long = "reclaim-after", default_value_t = DEFAULT_RECLAIM_AFTER.as_secs())]
    pub reclaim_after_secs: u64,
    /// Seconds a client has to send a request body.
    #[arg(long = "body-timeout", default_value_t = DEFAULT_BODY_READ_TIMEOUT.as_secs())]
    pub body_timeout_secs: u64,
    /// Largest request head in bytes (at least 8192); 431 beyond it.
    #[arg(long = "max-header-bytes", default_value_t = DEFAULT_MAX_HEADER_BYTES as u64, value_parser = clap::value_parser!(u64).range(8192..))]
    pub max_header_bytes: u64,
}

impl LimitArgs {
    /// As [`Limits`].
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections.max(1),
            header_read_timeout: Duration::from_secs(self.header_timeout_secs.max(1)),
            body_read_timeout: Duration::from_secs(self.body_timeout_secs.max(1)),
            max_header_bytes: usize::try_from(self.max_header_bytes).unwrap_or(usize::MAX),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs.max(1)),
            write_timeout: Duration::from_secs(self.write_timeout_secs.max(1)),
            max_connection_age: Duration::from_secs(self.max_connection_age_secs.max(1)),
            reclaim_after: Duration::from_secs(self.reclaim_after_secs.max(1)),
        }
    }
}

/// Flags of `otsd aggregate`.
#[derive(Debug, Args)]
pub struct AggregateArgs {
    /// An upstream calendar's URL, http or https (repeatable, at least
    /// one): each round's tip is submitted to every one.
    #[arg(long = "upstream", value_name = "URL", required = true)]
    pub upstreams: Vec<String>,
    /// How many upstreams must answer a round for its clients to get a
    /// proof (at most the number of upstreams); fewer: 503.
    #[arg(long = "upstream-min", value_name = "N", default_value_t = DEFAULT_AGGREGATE_UPSTREAM_MIN as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub upstream_min: u64,
    /// Bound on an upstream's answer to a round: milliseconds when bare,
    /// or with a unit (`250ms`, `2s`).
    #[arg(long = "upstream-timeout", value_name = "DURATION", default_value_t = Millis(DEFAULT_AGGREGATE_UPSTREAM_TIMEOUT), value_parser = positive_millis)]
    pub upstream_timeout: Millis,
    /// Once `--upstream-min` upstreams have answered, how much longer the
    /// others get: milliseconds when bare, or with a unit.
    #[arg(long = "upstream-grace", value_name = "DURATION", default_value_t = Millis(DEFAULT_UPSTREAM_GRACE))]
    pub upstream_grace: Millis,
    /// Round interval: milliseconds when bare, or with a unit (`1s`).
    #[arg(long = "interval", value_name = "DURATION", default_value_t = Millis(DEFAULT_AGGREGATE_INTERVAL), value_parser = positive_millis)]
    pub interval: Millis,
    /// A PEM file of CA certificates trusted for https upstreams beside
    /// the system's roots.
    #[arg(long = "ca-file", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long = "rpc-address", default_value = DEFAULT_RPC_ADDRESS)]
    pub rpc_address: String,
    /// Port to listen on (0: any free port, printed at start-up).
    #[arg(long = "rpc-port", default_value_t = DEFAULT_RPC_PORT)]
    pub rpc_port: u16,
    /// Threads serving HTTP connections [default: one per CPU but one, at least one].
    #[arg(long = "http-threads", value_parser = clap::value_parser!(u16).range(1..))]
    pub http_threads: Option<u16>,
    /// Hostile-client limits.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Serve Prometheus metrics on `HOST:PORT` at `/metrics` (its own
    /// listener, off by default; never put it behind the public proxy).
    #[arg(long = "metrics-address", value_name = "HOST:PORT")]
    pub metrics_address: Option<String>,
}

impl AggregateArgs {
    /// The aggregator's settings from these flags.
    pub fn settings(&self) -> AggregateSettings {
        AggregateSettings {
            upstreams: self.upstreams.clone(),
            upstream_min: usize::try_from(self.upstream_min).unwrap_or(usize::MAX),
            upstream_timeout: self.upstream_timeout.0,
            upstream_grace: self.upstream_grace.0,
            interval: self.interval.0,
            limits: self.limits.limits(),
            http_threads: self
                .http_threads
                .map_or_else(default_aggregate_http_threads, usize::from),
            ca_file: self.ca_file.clone(),
            metrics_address: self.metrics_address.clone(),
        }
    }
}

/// The reference's Bitcoin flags; the stamper reads them.
#[derive(Debug, Args)]
pub struct BitcoinArgs {
    /// Use Bitcoin testnet.
    #[arg(long = "btc-testnet", conflicts_with = "btc_regtest")]
    pub btc_testnet: bool,
    /// Use Bitcoin regtest.
    #[arg(long = "btc-regtest")]
    pub btc_regtest: bool,
    /// Confirmation target for fee estimation, blocks: a round's first
    /// version and every bump pay at least `estimatesmartfee` for it
    /// (capped by --btc-max-fee).
    #[arg(long = "btc-conf-target", default_value_t = DEFAULT_BTC_CONF_TARGET)]
    pub btc_conf_target: u32,
    /// Minimum relay fee rate, sat/vB.
    #[arg(long = "btc-min-relay-feerate", default_value_t = DEFAULT_BTC_MIN_RELAY_FEERATE)]
    pub btc_min_relay_feerate: f64,
    /// Maximum fee per transaction, BTC.
    #[arg(long = "btc-max-fee", default_value_t = DEFAULT_BTC_MAX_FEE)]
    pub btc_max_fee: f64,
    /// Confirmations before a proof is final (at least 2).
    #[arg(long = "btc-min-confirmations", default_value_t = DEFAULT_BTC_MIN_CONFIRMATIONS, value_parser = clap::value_parser!(u32).range(2..))]
    pub btc_min_confirmations: u32,
    /// Minimum seconds between timestamp transactions.
    #[arg(long = "btc-min-tx-interval", default_value_t = DEFAULT_BTC_MIN_TX_INTERVAL)]
    pub btc_min_tx_interval: u64,
    /// Bitcoin Core JSON-RPC URL (`http://user:pass@host:port/`); default:
    /// the local node of the chosen network (`~/.bitcoin`: bitcoin.conf or
    /// the cookie file, the network's default port).
    #[arg(long = "bitcoin-node", value_name = "URL")]
    pub bitcoin_node: Option<String>,
    /// Wallet to use (`/wallet/<name>`), when the node has several.
    #[arg(long = "btc-wallet", value_name = "NAME")]
    pub btc_wallet: Option<String>,
    /// Run without a Bitcoin node: accept and journal digests, never stamp.
    #[arg(long = "no-bitcoin")]
    pub no_bitcoin: bool,
    /// Seconds between polls of the node for new blocks (fractions
    /// allowed, at least 0.05).
    #[arg(long = "btc-poll-interval", default_value_t = DEFAULT_BTC_POLL_INTERVAL)]
    pub btc_poll_interval: f64,
    /// Development mode: an embedded regtest chain (devchain), its own
    /// calendar directory (`~/.otsd/dev` unless `-c`), blocks every few
    /// seconds, short rounds and 2 confirmations.
    #[arg(long = "dev", conflicts_with_all = ["btc_testnet", "bitcoin_node", "no_bitcoin"])]
    pub dev: bool,
    /// `--dev`: seconds between mined blocks.
    #[arg(long = "dev-block-interval", default_value_t = DEFAULT_DEV_BLOCK_INTERVAL)]
    pub dev_block_interval: u64,
    /// `--dev`: the devchain JSON-RPC port.
    #[arg(long = "dev-rpc-port", default_value_t = DEFAULT_DEV_RPC_PORT)]
    pub dev_rpc_port: u16,
}

/// `--dev`: seconds between mined blocks.
pub const DEFAULT_DEV_BLOCK_INTERVAL: u64 = 5;
/// `--dev`: devchain's JSON-RPC port (Bitcoin Core's regtest default).
pub const DEFAULT_DEV_RPC_PORT: u16 = 18443;
/// `--dev`: the calendar directory under `$HOME`.
pub const DEFAULT_DEV_DIR: &str = ".otsd/dev";

/// Seconds between polls of the node for new blocks.
pub const DEFAULT_BTC_POLL_INTERVAL: f64 = 5.0;
/// Shortest poll interval accepted, seconds.
pub const MIN_BTC_POLL_INTERVAL: f64 = 0.05;

impl BitcoinArgs {
    /// The node and stamper settings (but `--max-pending`, a server flag),
    /// or `None` with `--no-bitcoin`.
    fn settings(&self) -> Option<Bitcoin> {
        if self.no_bitcoin {
            return None;
        }
        let chain = if self.btc_testnet {
            ots_bitcoin::Chain::Testnet
        } else if self.btc_regtest {
            ots_bitcoin::Chain::Regtest
        } else {
            ots_bitcoin::Chain::Main
        };
        let mut rpc = match &self.bitcoin_node {
            Some(url) => ots_bitcoin::RpcConfig::new(url.clone(), ots_bitcoin::Auth::None),
            None => {
                ots_bitcoin::network::local_node(chain, &ots_bitcoin::network::default_datadir())
            }
        };
        rpc.wallet = self.btc_wallet.clone();
        // sat/vB → sat/kvB, rounded up; BTC → sat, clamped to what Bitcoin
        // can hold, so no flag value can overflow the fee arithmetic.
        let relay = (self.btc_min_relay_feerate.max(0.0) * 1000.0)
            .ceil()
            .min(1e12) as u64;
        let max_fee =
            bitcoin::Amount::from_sat((self.btc_max_fee.max(0.0) * 1e8).round().min(21e14) as u64);
        Some(Bitcoin {
            rpc,
            stamper: ots_stamper::Config {
                min_confirmations: u64::from(self.btc_min_confirmations),
                min_tx_interval_secs: self.btc_min_tx_interval,
                relay_feerate: relay,
                max_fee,
                max_pending: 0,
            },
            conf_target: self.btc_conf_target,
            poll: std::time::Duration::from_secs_f64(if self.btc_poll_interval.is_finite() {
                self.btc_poll_interval
                    .clamp(MIN_BTC_POLL_INTERVAL, 86_400.0)
            } else {
                DEFAULT_BTC_POLL_INTERVAL
            }),
        })
    }
}

impl BitcoinArgs {
    /// The node these flags name, `None` with `--no-bitcoin`.
    pub fn rpc_config(&self) -> Option<ots_bitcoin::RpcConfig> {
        self.settings().map(|b| b.rpc)
    }
}

/// Upstream calendars: this calendar submits every commitment to them and
/// serves their proofs (a private calendar; see docs/topologies.md).
#[derive(Debug, Args)]
pub struct UpstreamArgs {
    /// An upstream calendar to submit every commitment to (repeatable).
    #[arg(long = "upstream", value_name = "URL")]
    pub upstream: Vec<String>,
    /// Upstreams that must accept a commitment before our own wallet (with
    /// a Bitcoin backend) stops counting on itself for it.
    #[arg(long = "upstream-min", default_value_t = DEFAULT_UPSTREAM_MIN, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub upstream_min: usize,
    /// After how long a commitment not complete upstream is stamped by our
    /// own wallet (with a Bitcoin backend): seconds when bare, or with a
    /// unit (`24h`).
    #[arg(long = "upstream-fallback-after", value_name = "DURATION", default_value_t = Secs(DEFAULT_UPSTREAM_FALLBACK_AFTER))]
    pub upstream_fallback_after: Secs,
    /// How long each request to an upstream may take: seconds when bare
    /// (fractions allowed), or with a unit (`500ms`, `10s`).
    #[arg(long = "upstream-timeout", value_name = "DURATION", default_value_t = Secs(DEFAULT_UPSTREAM_TIMEOUT))]
    pub upstream_timeout: Secs,
    /// Between polls of an upstream for completed proofs (each pending
    /// proof backs off from there): seconds when bare, or with a unit.
    #[arg(long = "upstream-poll-interval", value_name = "DURATION", default_value_t = Secs(DEFAULT_UPSTREAM_POLL))]
    pub upstream_poll_interval: Secs,
}

/// Shortest upstream timeout and poll interval accepted, seconds.
pub const MIN_UPSTREAM_SECS: f64 = 0.05;

impl UpstreamArgs {
    /// As [`UpstreamConfig`]; `--upstream-min` is at most the number of
    /// upstreams.
    pub fn config(&self) -> UpstreamConfig {
        let secs = |v: Secs| {
            v.0.clamp(
                Duration::from_secs_f64(MIN_UPSTREAM_SECS),
                Duration::from_secs(86_400),
            )
        };
        UpstreamConfig {
            urls: self.upstream.clone(),
            min: self.upstream_min.clamp(1, self.upstream.len().max(1)),
            fallback_after: self.upstream_fallback_after.0,
            timeout: secs(self.upstream_timeout),
            poll: secs(self.upstream_poll_interval),
        }
    }
}

impl Cli {
    /// The calendar directory, defaulting to `~/.otsd/calendar`.
    pub fn calendar_dir(&self) -> PathBuf {
        self.calendar.clone().unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
            home.join(if self.server.bitcoin.dev {
                DEFAULT_DEV_DIR
            } else {
                DEFAULT_CALENDAR_DIR
            })
        })
    }
}

/// Seconds as a duration: fractions allowed, clamped to
/// [`MIN_SECONDS_FLAG`]..=1 day, a non-finite value read as the minimum.
pub fn seconds(v: f64) -> Duration {
    let v = if v.is_finite() { v } else { MIN_SECONDS_FLAG };
    Duration::from_secs_f64(v.clamp(MIN_SECONDS_FLAG, 86_400.0))
}

/// The shortest duration a seconds flag takes.
pub const MIN_SECONDS_FLAG: f64 = 0.05;

/// `otsd mirror`'s default directory, under `$HOME` (the reference's).
pub const DEFAULT_MIRROR_DIR: &str = ".otsd/backups";
/// `otsd mirror`'s default HTTP port (the reference's `otsd-backup.py`).
pub const DEFAULT_MIRROR_RPC_PORT: u16 = 14799;

/// `otsd mirror`: the reference mirror's flags (`otsd-backup.py`) where
/// they exist, and this mirror's limits. Parsed on its own, as the first
/// argument, since its `-c` is a calendar URL, not a directory.
#[derive(Debug, Parser)]
#[command(
    name = "otsd mirror",
    version,
    about = "Mirror OpenTimestamps calendars from their backup chunks and serve their proofs."
)]
pub struct MirrorCli {
    /// More logging (repeatable).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less logging (repeatable).
    #[arg(short = 'q', long = "quiet", action = clap::ArgAction::Count)]
    pub quiet: u8,
    /// Also write debug-level logs to this file.
    #[arg(long = "debug-file")]
    pub debug_file: Option<PathBuf>,
    /// Log line format.
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The mirror's directory (holds `mirror.redb`) [default:
    /// ~/.otsd/backups].
    #[arg(short = 'p', long = "path")]
    pub path: Option<PathBuf>,
    /// A calendar URL to mirror (repeatable).
    #[arg(short = 'c', long = "calendar", value_name = "URL", required = true)]
    pub calendars: Vec<String>,
    /// Address to listen on.
    #[arg(long = "rpc-address", default_value = DEFAULT_RPC_ADDRESS)]
    pub rpc_address: String,
    /// Port to listen on (0: any free port, printed at start-up).
    #[arg(long = "rpc-port", default_value_t = DEFAULT_MIRROR_RPC_PORT)]
    pub rpc_port: u16,
    /// Use Bitcoin testnet.
    #[arg(long = "btc-testnet", conflicts_with = "btc_regtest")]
    pub btc_testnet: bool,
    /// Use Bitcoin regtest.
    #[arg(long = "btc-regtest")]
    pub btc_regtest: bool,
    /// Bitcoin Core JSON-RPC URL (`http://user:pass@host:port/`) that checks
    /// each Bitcoin attestation against its block header; default: the
    /// local node of the chosen network.
    #[arg(long = "bitcoin-node", value_name = "URL")]
    pub bitcoin_node: Option<String>,
    /// Do not check Bitcoin attestations against a node (the chunks' other
    /// checks still apply).
    #[arg(long = "no-bitcoin", conflicts_with = "bitcoin_node")]
    pub no_bitcoin: bool,
    /// Chunks fetched at once per calendar.
    #[arg(long = "in-flight", default_value_t = crate::mirror::sync::DEFAULT_IN_FLIGHT as u16, value_parser = clap::value_parser!(u16).range(1..256))]
    pub in_flight: u16,
    /// Seconds a chunk request may take (fractions allowed).
    #[arg(long = "fetch-timeout", default_value_t = crate::mirror::fetch::DEFAULT_FETCH_TIMEOUT.as_secs_f64())]
    pub fetch_timeout: f64,
    /// Largest chunk accepted, bytes.
    #[arg(long = "max-chunk-bytes", default_value_t = crate::mirror::fetch::DEFAULT_MAX_CHUNK_BYTES)]
    pub max_chunk_bytes: usize,
    /// Longest wait between polls once caught up, and between retries
    /// after errors, seconds (fractions allowed).
    #[arg(long = "poll-interval", default_value_t = crate::mirror::sync::DEFAULT_POLL_INTERVAL.as_secs_f64())]
    pub poll_interval: f64,
}

impl MirrorCli {
    /// The mirror's directory, defaulting to `~/.otsd/backups`.
    pub fn dir(&self) -> PathBuf {
        self.path.clone().unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
            home.join(DEFAULT_MIRROR_DIR)
        })
    }

    /// The mirroring settings of these flags.
    pub fn config(&self) -> crate::mirror::sync::MirrorConfig {
        let chain = if self.btc_testnet {
            ots_bitcoin::Chain::Testnet
        } else if self.btc_regtest {
            ots_bitcoin::Chain::Regtest
        } else {
            ots_bitcoin::Chain::Main
        };
        let bitcoin = match (&self.bitcoin_node, self.no_bitcoin) {
            (_, true) => None,
            (Some(url), _) => Some(ots_bitcoin::RpcConfig::new(
                url.clone(),
                ots_bitcoin::Auth::None,
            )),
            (None, _) => Some(ots_bitcoin::network::local_node(
                chain,
                &ots_bitcoin::network::default_datadir(),
            )),
        };
        crate::mirror::sync::MirrorConfig {
            calendars: self.calendars.clone(),
            in_flight: usize::from(self.in_flight),
            fetch_timeout: seconds(self.fetch_timeout),
            max_chunk_bytes: self.max_chunk_bytes,
            poll_interval: seconds(self.poll_interval),
            bitcoin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_reference_flags_parse() {
        let cli = Cli::try_parse_from(["otsd"]).unwrap();
        assert_eq!(cli.server.rpc_port, DEFAULT_RPC_PORT);
        assert_eq!(cli.server.aggregation_interval_ms, 1000);
        assert_eq!(cli.log_format, LogFormat::Text);
        let cli = Cli::try_parse_from(["otsd", "--log-format", "json"]).unwrap();
        assert_eq!(cli.log_format, LogFormat::Json);
        assert!(Cli::try_parse_from(["otsd", "--log-format", "xml"]).is_err());
        assert!(cli.calendar_dir().ends_with(DEFAULT_CALENDAR_DIR));
        let cli = Cli::try_parse_from([
            "otsd",
            "-c",
            "/tmp/x",
            "--rpc-address",
            "127.0.0.1",
            "--rpc-port",
            "0",
            "-vv",
            "--btc-regtest",
            "--explorer-url",
            "http://e",
            "--max-pending",
            "5",
            "--btc-min-confirmations",
            "3",
            "--aggregation-interval",
            "10",
        ])
        .unwrap();
        assert_eq!(cli.verbose, 2);
        assert!(cli.server.bitcoin.btc_regtest);
        assert_eq!(cli.server.aggregation_interval_ms, 10);
        assert!(Cli::try_parse_from(["otsd", "--btc-testnet", "--btc-regtest"]).is_err());
        assert!(Cli::try_parse_from(["otsd", "--btc-min-confirmations", "1"]).is_err());
        assert!(Cli::try_parse_from(["otsd", "--max-header-bytes", "100"]).is_err());
        // One HTTP thread per CPU but one by default; 0 is not a choice.
        let cli = Cli::try_parse_from(["otsd"]).unwrap();
        assert_eq!(
            cli.server.settings(None).http_threads,
            default_http_threads()
        );
        assert!(default_http_threads() >= 1);
        let cli = Cli::try_parse_from(["otsd", "--http-threads", "3"]).unwrap();
        assert_eq!(cli.server.settings(None).http_threads, 3);
        assert!(Cli::try_parse_from(["otsd", "--http-threads", "0"]).is_err());
        let cli =
            Cli::try_parse_from(["otsd", "-c", "/tmp/c", "init", "--uri", "https://x"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Init { .. })));
    }

    #[test]
    fn explorer_links_by_default_on_mainnet_only() {
        let explorer = |args: &[&str]| {
            let cli = Cli::try_parse_from(std::iter::once("otsd").chain(args.iter().copied()));
            cli.unwrap().server.settings(None).explorer_url
        };
        let default = Some(DEFAULT_EXPLORER_URL.to_owned());
        assert_eq!(explorer(&[]), default);
        assert_eq!(explorer(&["--no-bitcoin"]), default);
        assert_eq!(explorer(&["--btc-testnet"]), None);
        assert_eq!(explorer(&["--btc-regtest"]), None);
        assert_eq!(explorer(&["--dev"]), None);
        let mine = Some("https://mempool.space/testnet".to_owned());
        assert_eq!(
            explorer(&[
                "--btc-testnet",
                "--explorer-url",
                "https://mempool.space/testnet"
            ]),
            mine
        );
        assert_eq!(
            explorer(&["--explorer-url", "https://x"]),
            Some("https://x".into())
        );
    }

    #[test]
    fn upstream_flags_resolve() {
        let cli = Cli::try_parse_from(["otsd"]).unwrap();
        assert_eq!(
            cli.server.settings(None).upstream,
            UpstreamConfig::default()
        );
        let cli = Cli::try_parse_from([
            "otsd",
            "--no-bitcoin",
            "--upstream",
            "http://a/",
            "--upstream",
            "http://b/",
            "--upstream-min",
            "5",
            "--upstream-fallback-after",
            "7",
            "--upstream-poll-interval",
            "0.5",
        ])
        .unwrap();
        let up = cli.server.settings(None).upstream;
        assert_eq!(up.urls, ["http://a/", "http://b/"]);
        assert_eq!(up.min, 2, "at most the number of upstreams");
        assert_eq!(up.fallback_after, Duration::from_secs(7));
        assert_eq!(up.poll, Duration::from_millis(500));
        assert_eq!(up.timeout, DEFAULT_UPSTREAM_TIMEOUT);
        assert!(Cli::try_parse_from(["otsd", "--upstream-min", "0"]).is_err());
    }

    /// `--upstream-timeout` is milliseconds bare under `otsd aggregate` and
    /// seconds bare under a calendar; with a unit it means the same under
    /// both.
    #[test]
    fn durations_with_a_unit_mean_the_same_under_both_commands() {
        let calendar = |v: &str| {
            Cli::try_parse_from(["otsd", "--upstream", "http://a/", "--upstream-timeout", v])
                .map(|c| c.server.settings(None).upstream.timeout)
        };
        let aggregate = |v: &str| -> Result<Duration, clap::Error> {
            let cli = Cli::try_parse_from([
                "otsd",
                "aggregate",
                "--upstream",
                "http://a/",
                "--upstream-timeout",
                v,
            ])?;
            match cli.command {
                Some(Command::Aggregate(a)) => Ok(a.settings().upstream_timeout),
                _ => panic!("the aggregate subcommand"),
            }
        };
        for (v, want) in [
            ("2s", 2000),
            ("1500ms", 1500),
            ("0.5s", 500),
            ("1m", 60_000),
        ] {
            let want = Duration::from_millis(want);
            assert_eq!(calendar(v).unwrap(), want, "{v}");
            assert_eq!(aggregate(v).unwrap(), want, "{v}");
        }
        assert_eq!(calendar("2").unwrap(), Duration::from_secs(2));
        assert_eq!(aggregate("2").unwrap(), Duration::from_millis(2));
        for bad in ["2x", "-1s", "0ms"] {
            assert!(aggregate(bad).is_err(), "{bad}");
        }
        assert!(calendar("2x").is_err());
        let agg = Cli::try_parse_from([
            "otsd",
            "aggregate",
            "--upstream",
            "http://a/",
            "--interval",
            "1s",
            "--upstream-grace",
            "250ms",
        ])
        .unwrap();
        let Some(Command::Aggregate(a)) = agg.command else {
            panic!("the aggregate subcommand");
        };
        assert_eq!(a.settings().interval, Duration::from_secs(1));
        assert_eq!(a.settings().upstream_grace, Duration::from_millis(250));
        let cal = Cli::try_parse_from([
            "otsd",
            "--upstream-fallback-after",
            "6h",
            "--upstream-poll-interval",
            "250ms",
        ])
        .unwrap();
        let up = cal.server.settings(None).upstream;
        assert_eq!(up.fallback_after, Duration::from_secs(6 * 3600));
        assert_eq!(up.poll, Duration::from_millis(250));
    }

    #[test]
    fn flags_resolve_to_one_backend() {
        let cli = Cli::try_parse_from(["otsd", "--no-bitcoin"]).unwrap();
        assert!(matches!(cli.server.settings(None).backend, Backend::None));
        let cli = Cli::try_parse_from([
            "otsd",
            "--btc-regtest",
            "--bitcoin-node",
            "http://u:p@127.0.0.1:1/",
            "--max-pending",
            "7",
            "--btc-min-confirmations",
            "4",
        ])
        .unwrap();
        let Backend::Bitcoin(b) = cli.server.settings(None).backend else {
            panic!("a Bitcoin backend");
        };
        assert_eq!(b.rpc.url, "http://u:p@127.0.0.1:1/");
        assert_eq!(b.stamper.max_pending, 7);
        assert_eq!(b.stamper.min_confirmations, 4);
        assert_eq!(b.poll, Duration::from_secs_f64(DEFAULT_BTC_POLL_INTERVAL));
        // --dev: devchain's node, and the dev timings over the flags'.
        let cli = Cli::try_parse_from(["otsd", "--dev", "--max-pending", "9"]).unwrap();
        let dev = DevNode {
            rpc: ots_bitcoin::RpcConfig::new("http://d:e@127.0.0.1:2/", ots_bitcoin::Auth::None),
        };
        let Backend::Bitcoin(b) = cli.server.settings(Some(dev)).backend else {
            panic!("a Bitcoin backend");
        };
        assert_eq!(b.rpc.url, "http://d:e@127.0.0.1:2/");
        assert_eq!(b.stamper.max_pending, 9);
        assert_eq!(b.stamper.min_confirmations, DEV_CONFIRMATIONS);
        assert_eq!(b.stamper.min_tx_interval_secs, DEV_TX_INTERVAL_SECS);
        assert_eq!(b.poll, DEV_POLL);
    }

    #[test]
    fn aggregate_flags_resolve_to_settings() {
        let parse =
            |args: &[&str]| Cli::try_parse_from(["otsd", "aggregate"].iter().chain(args).copied());
        let Some(Command::Aggregate(a)) = parse(&["--upstream", "http://a"]).unwrap().command
        else {
            panic!("the aggregate subcommand");
        };
        let s = a.settings();
        assert_eq!(s.upstreams, ["http://a"]);
        assert_eq!(s.upstream_min, crate::aggregate::DEFAULT_UPSTREAM_MIN);
        assert_eq!(s.upstream_timeout, DEFAULT_AGGREGATE_UPSTREAM_TIMEOUT);
        assert_eq!(s.upstream_grace, DEFAULT_UPSTREAM_GRACE);
        assert_eq!(s.interval, DEFAULT_AGGREGATE_INTERVAL);
        assert_eq!(s.http_threads, default_aggregate_http_threads());
        assert_eq!(a.rpc_port, DEFAULT_RPC_PORT);
        assert_eq!(s.limits.max_connections, DEFAULT_MAX_CONNECTIONS);
        let Some(Command::Aggregate(a)) = parse(&[
            "--upstream",
            "http://a",
            "--upstream",
            "https://b",
            "--upstream-min",
            "2",
            "--upstream-timeout",
            "250",
            "--upstream-grace",
            "0",
            "--interval",
            "100",
            "--ca-file",
            "/tmp/ca.pem",
            "--rpc-port",
            "0",
            "--max-connections",
            "20000",
            "--http-threads",
            "2",
        ])
        .unwrap()
        .command
        else {
            panic!("the aggregate subcommand");
        };
        let s = a.settings();
        assert_eq!(s.upstreams, ["http://a", "https://b"]);
        assert_eq!(s.upstream_min, 2);
        assert_eq!(s.upstream_timeout, Duration::from_millis(250));
        assert_eq!(s.upstream_grace, Duration::ZERO);
        assert_eq!(s.interval, Duration::from_millis(100));
        assert_eq!(s.ca_file, Some(PathBuf::from("/tmp/ca.pem")));
        assert_eq!(s.limits.max_connections, 20000);
        assert_eq!(s.http_threads, 2);
        // At least one upstream; no zero minimum, timeout or interval.
        assert!(parse(&[]).is_err());
        for bad in ["--upstream-min", "--upstream-timeout", "--interval"] {
            assert!(
                parse(&["--upstream", "http://a", bad, "0"]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn mirror_flags_are_the_reference_mirrors() {
        let m = MirrorCli::try_parse_from(["otsd mirror", "-c", "https://a", "-c", "https://b/"])
            .unwrap();
        assert_eq!(m.rpc_port, DEFAULT_MIRROR_RPC_PORT);
        assert!(m.dir().ends_with(DEFAULT_MIRROR_DIR));
        let c = m.config();
        assert_eq!(c.calendars, vec!["https://a", "https://b/"]);
        assert_eq!(c.in_flight, crate::mirror::sync::DEFAULT_IN_FLIGHT);
        assert_eq!(c.poll_interval, crate::mirror::sync::DEFAULT_POLL_INTERVAL);
        assert!(c.bitcoin.is_some(), "the local node by default");
        let m = MirrorCli::try_parse_from([
            "otsd mirror",
            "-p",
            "/tmp/m",
            "-c",
            "http://x",
            "--no-bitcoin",
            "--fetch-timeout",
            "0.5",
        ])
        .unwrap();
        assert!(m.config().bitcoin.is_none());
        assert_eq!(m.config().fetch_timeout, Duration::from_millis(500));
        assert!(
            MirrorCli::try_parse_from(["otsd mirror"]).is_err(),
            "a calendar is required"
        );
        let cli = Cli::try_parse_from([
            "otsd",
            "--mirror",
            "http://a",
            "--mirror",
            "http://b",
            "--no-bitcoin",
        ])
        .unwrap();
        let s = cli.server.settings(None);
        let m = s.mirror.unwrap();
        assert_eq!(m.calendars.len(), 2);
        assert!(m.bitcoin.is_none());
        assert!(Cli::try_parse_from(["otsd"])
            .unwrap()
            .server
            .settings(None)
            .mirror
            .is_none());
    }
}
