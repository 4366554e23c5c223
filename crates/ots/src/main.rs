//! `ots`: stamp files, upgrade and verify their proofs, show and prune them.
//! Flags and messages follow the reference Python client.
//!
//! This file holds the command line, the dispatch and the helpers the
//! subcommands share; the subcommands themselves are in [`commands`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ots::bounds::{
    decode_budget, estimate, Estimate, BASE_BUDGET, BUDGET_FACTOR, MAX_PROOF_FILE_BYTES,
};
use ots::cache::{self, Cache};
use ots::esplora::{Esplora, EXPLORER_TIMEOUT};
use ots::log::Log;
use ots::verify::HeaderSource;
use ots::whitelist::Whitelist;
use ots_bitcoin::network::{default_datadir, local_node};
use ots_bitcoin::{Auth, Chain, RpcClient, RpcConfig};
use ots_proof::{DecodeErrorKind, DetachedTimestampFile, HashOp};

mod commands;
mod git_commands;

use commands::{prune_command, stamp_command, upgrade_command, verify_command, StampArgs};

/// The GnuPG program git-gpg-wrapper runs (found in PATH; the
/// reference's default is /usr/bin/gpg).
const DEFAULT_GPG_PROGRAM: &str = "gpg";
/// Default seconds to wait for a calendar.
const DEFAULT_TIMEOUT_SECS: u64 = 5;
/// Default minimum number of calendar replies.
const DEFAULT_MIN_REPLIES: usize = 2;
/// Seconds between polls with `--wait`.
const DEFAULT_WAIT_INTERVAL_SECS: u64 = 30;
/// Timeout of an upgrade request.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(name = "ots", version, about = "OpenTimestamps client.")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Common {
    /// Be more quiet (repeatable).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    quiet: u8,
    /// Be more verbose (repeatable).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Add a calendar to the whitelist.
    #[arg(short = 'l', long = "whitelist", value_name = "URL", global = true)]
    whitelist: Vec<String>,
    /// Do not load the default calendar whitelist.
    #[arg(long, global = true)]
    no_default_whitelist: bool,
    /// Location of the timestamp cache (default: ~/.cache/ots).
    #[arg(
        long = "cache",
        value_name = "DIR",
        global = true,
        conflicts_with = "no_cache"
    )]
    cache_path: Option<PathBuf>,
    /// Disable the timestamp cache.
    #[arg(long, global = true)]
    no_cache: bool,
    /// Use Bitcoin testnet rather than mainnet.
    #[arg(long, global = true, conflicts_with_all = ["btc_regtest", "no_bitcoin"])]
    btc_testnet: bool,
    /// Use Bitcoin regtest rather than mainnet.
    #[arg(long, global = true, conflicts_with = "no_bitcoin")]
    btc_regtest: bool,
    /// Disable Bitcoin entirely.
    #[arg(long, global = true)]
    no_bitcoin: bool,
    /// Wait until a complete timestamp committed in Bitcoin is available.
    #[arg(short, long, global = true)]
    wait: bool,
    /// Seconds between polls with --wait.
    #[arg(long, global = true, default_value_t = DEFAULT_WAIT_INTERVAL_SECS, hide = true)]
    wait_interval: u64,
    /// Bitcoin node URL (http://user:pass@host:port/); default: the local
    /// node's configuration.
    #[arg(long, value_name = "URL", global = true)]
    bitcoin_node: Option<String>,
    /// Get block headers from this Esplora-style block explorer (such as
    /// https://blockstream.info/api) instead of a Bitcoin node. The
    /// explorer is TRUSTED to serve the real header at each height (it
    /// could lie about which block is at a height); a node you run checks
    /// the chain itself and is not trusted that way. Its network is the
    /// one the URL serves, whatever --btc-testnet/--btc-regtest say.
    #[arg(long, value_name = "URL", global = true, conflicts_with = "no_bitcoin")]
    esplora: Option<String>,
    /// Also trust the CA certificates in this PEM file for https
    /// calendars (beside the system's roots).
    #[arg(long, value_name = "PATH", global = true)]
    ca_file: Option<PathBuf>,
    /// Route every calendar and block explorer request through this SOCKS5
    /// proxy, host names included (resolved by the proxy, as Tor needs).
    /// Default port 1080 (Tor's is 9050). Without it, the environment's
    /// ALL_PROXY, HTTPS_PROXY, HTTP_PROXY and NO_PROXY (or lower-case)
    /// are honoured (socks5h://, socks5:// and http:// proxy URLs).
    #[arg(long, value_name = "HOST[:PORT]", global = true)]
    socks5_proxy: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Timestamp files.
    #[command(alias = "s")]
    Stamp {
        /// Calendar to use (repeatable); default: the public calendars.
        #[arg(short, long = "calendar", value_name = "URL")]
        calendar: Vec<String>,
        /// Seconds before giving up on a calendar.
        #[arg(long, default_value_t = DEFAULT_TIMEOUT_SECS)]
        timeout: u64,
        /// Succeed when at least M calendars reply (default: 2, or the
        /// number of calendars if fewer).
        #[arg(short = 'm', value_name = "M")]
        min_replies: Option<usize>,
        /// Timestamp this digest, already computed (hex; repeatable). The
        /// proof is written to HEX.ots, or to -o FILE.
        #[arg(long = "digest", value_name = "HEX")]
        digests: Vec<String>,
        /// The hash that made the --digest values.
        #[arg(
            long,
            value_name = "ALG",
            default_value = "sha256",
            requires = "digests"
        )]
        hash_alg: HashAlg,
        /// Where to write the proof of the one --digest given.
        #[arg(short = 'o', value_name = "FILE", requires = "digests")]
        output: Option<PathBuf>,
        /// Files to stamp (none and no --digest: standard input, proof on
        /// standard output).
        files: Vec<PathBuf>,
        /// Timestamp with the local Bitcoin node's wallet: one OP_RETURN
        /// transaction for everything given, waited for until a block
        /// holds it; the proofs are complete at once. No calendar is asked
        /// unless -c is given too.
        #[arg(short = 'b', long = "btc-wallet")]
        btc_wallet: bool,
    },
    /// Upgrade pending attestations to be locally verifiable.
    ///
    /// Every whitelisted pending attestation in the proofs is asked, once
    /// per calendar and commitment however many files share it; pending
    /// attestations the answers bring are asked in the same run (at most
    /// 8 rounds).
    #[command(alias = "u")]
    Upgrade {
        /// Ask these calendars instead of those in the proof.
        #[arg(short, long = "calendar", value_name = "URL")]
        calendar: Vec<String>,
        /// Trial upgrade: do not modify the proof.
        #[arg(short = 'n', long)]
        dry_run: bool,
        /// Proofs to upgrade; the old one is kept as FILE.bak.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Verify a timestamp.
    #[command(alias = "v")]
    Verify {
        /// The stamped file (default: the proof's name without .ots).
        #[arg(short = 'f', value_name = "FILE", conflicts_with = "digest")]
        file: Option<PathBuf>,
        /// Verify a hex digest rather than a file.
        #[arg(short = 'd', value_name = "DIGEST")]
        digest: Option<String>,
        /// Print the proof's tree, its attestations, each Bitcoin check
        /// (height, block time) and the result as one JSON document on
        /// standard output (messages still go to standard error).
        #[arg(long)]
        json: bool,
        /// The proof.
        timestamp: PathBuf,
    },
    /// Show a timestamp.
    #[command(alias = "i")]
    Info {
        /// Print the tree and its attestations as one JSON document
        /// instead of text.
        #[arg(long)]
        json: bool,
        /// The proof.
        file: PathBuf,
    },
    /// git's gpg.program (through a script that runs `ots git-gpg-wrapper
    /// -- "$@"`): signs with gpg and timestamps the signature, and verifies
    /// such signatures (`git log --show-signature`). Compatible with the
    /// reference's ots-git-gpg-wrapper.
    #[command(name = "git-gpg-wrapper")]
    GitGpgWrapper {
        /// The GnuPG program.
        #[arg(short = 'g', long = "gpg-program", default_value = DEFAULT_GPG_PROGRAM)]
        gpg_program: String,
        /// Calendar to use (repeatable); default: the public calendars.
        #[arg(short, long = "calendar", value_name = "URL")]
        calendar: Vec<String>,
        /// Seconds before giving up on a calendar.
        #[arg(long, default_value_t = DEFAULT_TIMEOUT_SECS)]
        timeout: u64,
        /// Succeed when at least M calendars reply (default: 2, or the
        /// number of calendars if fewer).
        #[arg(short = 'm', value_name = "M")]
        min_replies: Option<usize>,
        /// Timestamp with the local Bitcoin node's wallet (waits for the
        /// transaction to confirm before the commit is made).
        #[arg(short = 'b', long = "btc-wallet")]
        btc_wallet: bool,
        /// Accepted for the reference's sake: trees are always rehashed.
        #[arg(long, hide = true)]
        rehash_trees: bool,
        /// Arguments for GnuPG, after `--`.
        #[arg(last = true, value_name = "GPG ARGS")]
        gpg_args: Vec<String>,
    },
    /// Extract the timestamp of one file from a timestamped git commit
    /// (made by git-gpg-wrapper).
    #[command(name = "git-extract")]
    GitExtract {
        /// Path to the file (from the current directory, inside the
        /// repository).
        path: PathBuf,
        /// Where to write its timestamp (default: PATH.ots).
        timestamp: Option<PathBuf>,
        /// The commit.
        #[arg(default_value = "HEAD")]
        commit: String,
    },
    /// Prune a timestamp.
    #[command(alias = "p")]
    Prune {
        /// Verify attestations of this notary first (only `btc`).
        #[arg(
            long = "verify",
            value_name = "NOTARYSPEC",
            conflicts_with = "no_verify"
        )]
        verify: Vec<String>,
        /// Do not verify any attestation.
        #[arg(long)]
        no_verify: bool,
        /// Discard attestations of this notary (btc, ltc, unknown,
        /// pending:*, pending:URI); default: pending:*.
        #[arg(long = "discard", value_name = "NOTARYSPEC")]
        discard: Vec<String>,
        /// The proof; the old one is kept as FILE.bak.
        timestamp: PathBuf,
    },
}

/// The hashes a `.ots` file header can name (ots-proof's [`HashOp`]s).
#[derive(Clone, Copy, clap::ValueEnum)]
enum HashAlg {
    Sha1,
    Sha256,
    Ripemd160,
    Keccak256,
}

impl From<HashAlg> for HashOp {
    fn from(alg: HashAlg) -> HashOp {
        match alg {
            HashAlg::Sha1 => HashOp::Sha1,
            HashAlg::Sha256 => HashOp::Sha256,
            HashAlg::Ripemd160 => HashOp::Ripemd160,
            HashAlg::Keccak256 => HashOp::Keccak256,
        }
    }
}

/// The port of a `--socks5-proxy` given without one (the reference's).
const DEFAULT_SOCKS5_PORT: u16 = 1080;

/// The proxy URL of `--socks5-proxy HOST[:PORT]` (`[v6]:PORT` too):
/// `socks5h://`, so host names are resolved by the proxy, never locally.
fn socks5_proxy_url(value: &str) -> Result<String, String> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("SOCKS5 proxy {value:?}: no closing ']'"))?;
        (format!("[{host}]"), after.strip_prefix(':'))
    } else {
        match value.split_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (value.to_string(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(format!("SOCKS5 proxy {value:?}: no host"));
    }
    let port = match port {
        None => DEFAULT_SOCKS5_PORT,
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("SOCKS5 proxy port must be an integer; got {p}"))?,
    };
    Ok(format!("socks5h://{host}:{port}"))
}

/// The proxy every calendar and explorer request goes through, if any.
fn proxy(common: &Common, log: &Log) -> Result<Option<String>, Failed> {
    common
        .socks5_proxy
        .as_deref()
        .map(socks5_proxy_url)
        .transpose()
        .map_err(|e| fail(log, e))
}

/// A failure already reported to the user: exit with status 1.
struct Failed;

type Outcome1 = Result<(), Failed>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = Log::new(i32::from(cli.common.verbose) - i32::from(cli.common.quiet));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log.error(format!("Cannot start: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, &log)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failed) => ExitCode::FAILURE,
    }
}

fn fail(log: &Log, message: impl AsRef<str>) -> Failed {
    log.error(message);
    Failed
}

async fn run(cli: Cli, log: &Log) -> Outcome1 {
    let common = &cli.common;
    match cli.command {
        Command::Stamp {
            calendar,
            timeout,
            min_replies,
            digests,
            hash_alg,
            output,
            files,
            btc_wallet,
        } => {
            let args = StampArgs {
                btc_wallet,
                calendars: calendar,
                timeout,
                min_replies,
                digests,
                hash: hash_alg.into(),
                output,
                files,
            };
            stamp_command(common, log, args).await
        }
        Command::Upgrade {
            calendar,
            dry_run,
            files,
        } => {
            let client = calendar_client(common, log, UPGRADE_TIMEOUT)?;
            upgrade_command(common, log, &client, &calendar, dry_run, &files).await
        }
        Command::Verify {
            file,
            digest,
            json,
            timestamp,
        } => verify_command(common, log, file, digest, json, &timestamp).await,
        Command::Info { json, file } => {
            let proof = read_proof(log, &file)?;
            if json {
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                ots::json::write_info(&mut out, &proof)
                    .and_then(|()| std::io::Write::flush(&mut out))
                    .map_err(|e| fail(log, format!("Could not write standard output: {e}")))?;
            } else {
                print!("{}", ots_proof::display::info(&proof, common.verbose > 0));
            }
            Ok(())
        }
        Command::GitGpgWrapper {
            gpg_program,
            calendar,
            timeout,
            min_replies,
            rehash_trees: _,
            gpg_args,
            btc_wallet,
        } => {
            let args = git_commands::WrapperArgs {
                btc_wallet,
                gpg_program,
                calendars: calendar,
                timeout,
                min_replies,
                gpg_args,
            };
            git_commands::git_gpg_wrapper(common, log, args).await
        }
        Command::GitExtract {
            path,
            timestamp,
            commit,
        } => git_commands::git_extract(log, &path, timestamp, &commit),
        Command::Prune {
            verify,
            no_verify,
            discard,
            timestamp,
        } => prune_command(common, log, verify, no_verify, discard, &timestamp).await,
    }
}

/// Reads and decodes a proof, refusing a file over
/// [`MAX_PROOF_FILE_BYTES`] before reading it, and one whose tree would
/// cost more than [`decode_budget`] before decoding it.
fn read_proof(log: &Log, path: &Path) -> Result<DetachedTimestampFile, Failed> {
    use std::io::Read;
    let unreadable =
        |e: std::io::Error| fail(log, format!("Could not read {}: {e}", path.display()));
    let too_big = |len: u64| {
        fail(
            log,
            format!(
                "Could not read {}: it is {len} bytes, over the {MAX_PROOF_FILE_BYTES}-byte limit for a proof (real proofs are a few KB)",
                path.display()
            ),
        )
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let len = file.metadata().map_err(unreadable)?.len();
    if len > MAX_PROOF_FILE_BYTES {
        return Err(too_big(len));
    }
    // The file may grow between the two: never read past the limit.
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_PROOF_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_PROOF_FILE_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    let budget = decode_budget(bytes.len());
    if estimate(&bytes, budget) == Estimate::OverBudget {
        return Err(fail(
            log,
            format!(
                "Invalid timestamp file {:?}: decoding it would take over {budget} bytes of memory ({BUDGET_FACTOR} times its size and {BASE_BUDGET} more); refused",
                path.display().to_string()
            ),
        ));
    }
    DetachedTimestampFile::deserialize(&bytes).map_err(|e| match e.kind {
        DecodeErrorKind::BadMagic => fail(
            log,
            format!(
                "Error! {:?} is not a timestamp file.",
                path.display().to_string()
            ),
        ),
        _ => fail(
            log,
            format!(
                "Invalid timestamp file {:?}: {e}",
                path.display().to_string()
            ),
        ),
    })
}

fn open_cache(common: &Common, log: &Log) -> Result<Cache, Failed> {
    if common.no_cache {
        return Ok(Cache::disabled());
    }
    match common.cache_path.clone().or_else(cache::default_dir) {
        Some(dir) => Cache::open(&dir).map_err(|e| fail(log, e)),
        None => Ok(Cache::disabled()),
    }
}

/// The client calendars are reached through: the system's roots plus
/// `--ca-file`. `longest` is the longest request bound the command uses
/// (each request sets its own), so connecting is never cut shorter than
/// the request it belongs to.
fn calendar_client(
    common: &Common,
    log: &Log,
    longest: Duration,
) -> Result<ots_calendar::Client, Failed> {
    let config = ots_calendar::ClientConfig {
        timeout: longest,
        connect_timeout: longest,
        ca_file: common.ca_file.clone(),
        proxy: proxy(common, log)?,
        ..ots_calendar::ClientConfig::default()
    };
    ots_calendar::Client::new(&config).map_err(|e| fail(log, e.to_string()))
}

fn whitelist(common: &Common) -> Whitelist {
    let mut w = if common.no_default_whitelist {
        Whitelist::new()
    } else {
        Whitelist::default_calendars()
    };
    for url in &common.whitelist {
        w.add(url);
    }
    w
}

fn chain(common: &Common) -> Chain {
    if common.btc_testnet {
        Chain::Testnet
    } else if common.btc_regtest {
        Chain::Regtest
    } else {
        Chain::Main
    }
}

/// Said when no header source is configured: the two ways to get one.
const NO_SOURCE_HINT: &str = "; give --bitcoin-node URL for a node you run, or --esplora URL for a block explorer (trusted for block headers)";

/// Where block headers come from: `--esplora`, `--bitcoin-node`, or the
/// local node's configuration; `None` with `--no-bitcoin`.
fn header_source(common: &Common, log: &Log) -> Result<Option<HeaderSource>, Failed> {
    // clap's conflicts do not hold between global flags given on either
    // side of the subcommand, so these are checked here.
    if common.no_bitcoin && common.esplora.is_some() {
        return Err(fail(
            log,
            "--esplora is a source of Bitcoin block headers; it cannot be used with --no-bitcoin",
        ));
    }
    if common.no_bitcoin {
        return Ok(None);
    }
    if let Some(url) = &common.esplora {
        if common.bitcoin_node.is_some() {
            return Err(fail(
                log,
                "--esplora and --bitcoin-node are two sources of block headers; give one",
            ));
        }
        return Esplora::with_proxy(url, EXPLORER_TIMEOUT, proxy(common, log)?.as_deref())
            .map(|e| Some(HeaderSource::Explorer(e)))
            .map_err(|e| fail(log, e.to_string()));
    }
    let hint = if common.bitcoin_node.is_none() {
        NO_SOURCE_HINT
    } else {
        ""
    };
    RpcClient::new(node_config(common))
        .map(|rpc| Some(HeaderSource::Node { rpc, hint }))
        .map_err(|e| fail(log, format!("Could not connect to Bitcoin node: {e}{hint}")))
}

/// `--bitcoin-node URL`, or the local node's configuration.
fn node_config(common: &Common) -> RpcConfig {
    match &common.bitcoin_node {
        Some(url) => RpcConfig::new(url.clone(), Auth::None),
        None => local_node(chain(common), &default_datadir()),
    }
}

/// The Bitcoin node (and its wallet) for `stamp -b`.
fn bitcoin_node(common: &Common, log: &Log) -> Result<RpcClient, Failed> {
    RpcClient::new(node_config(common))
        .map_err(|e| fail(log, format!("Could not connect to Bitcoin node: {e}")))
}

fn write_new(log: &Log, path: &Path, proof: &DetachedTimestampFile) -> Outcome1 {
    use std::io::Write;
    let bytes = proof.serialize().map_err(|e| {
        fail(
            log,
            format!("Failed to create timestamp {}: {e}", path.display()),
        )
    })?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| {
            fail(
                log,
                format!(
                    "Failed to create timestamp {:?}: {e}",
                    path.display().to_string()
                ),
            )
        })?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| {
            fail(
                log,
                format!("Failed to write timestamp {}: {e}", path.display()),
            )
        })
}

/// Keeps the old proof as `FILE.bak` and writes the new one in its place.
fn replace_with_backup(log: &Log, path: &Path, proof: &DetachedTimestampFile) -> Outcome1 {
    let mut backup = path.as_os_str().to_owned();
    backup.push(".bak");
    let backup = PathBuf::from(backup);
    if backup.exists() {
        return Err(fail(
            log,
            format!(
                "Could not backup timestamp: {:?} already exists",
                backup.display().to_string()
            ),
        ));
    }
    std::fs::rename(path, &backup)
        .map_err(|e| fail(log, format!("Could not backup timestamp: {e}")))?;
    write_new(log, path, proof)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socks5_proxy_values_become_socks5h_urls() {
        assert_eq!(
            socks5_proxy_url("localhost:9050").unwrap(),
            "socks5h://localhost:9050"
        );
        assert_eq!(
            socks5_proxy_url("127.0.0.1").unwrap(),
            "socks5h://127.0.0.1:1080"
        );
        assert_eq!(
            socks5_proxy_url("[::1]:9050").unwrap(),
            "socks5h://[::1]:9050"
        );
        assert_eq!(socks5_proxy_url("[::1]").unwrap(), "socks5h://[::1]:1080");
        assert_eq!(
            socks5_proxy_url("h:tor").unwrap_err(),
            "SOCKS5 proxy port must be an integer; got tor"
        );
        assert!(socks5_proxy_url(":9050").is_err());
        assert!(socks5_proxy_url("[::1").is_err());
    }
}
