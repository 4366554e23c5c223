//! `ots`: stamp files, upgrade and verify their proofs, show and prune them.
//! Flags and messages follow the reference Python client.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ots::cache::{self, Cache};
use ots::log::Log;
use ots::prune::{prune, Discard};
use ots::stamp;
use ots::upgrade::{is_complete, upgrade, UpgradeOptions};
use ots::verify::{check, verify, Outcome};
use ots::whitelist::{Whitelist, DEFAULT_AGGREGATORS};
use ots_bitcoin::network::{default_datadir, local_node};
use ots_bitcoin::{Auth, Chain, RpcClient, RpcConfig};
use ots_proof::{DecodeErrorKind, DetachedTimestampFile, HashOp};

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
        /// Files to stamp (none: standard input, proof on standard output).
        files: Vec<PathBuf>,
    },
    /// Upgrade pending attestations to be locally verifiable.
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
        /// The proof.
        timestamp: PathBuf,
    },
    /// Show a timestamp.
    #[command(alias = "i")]
    Info {
        /// The proof.
        file: PathBuf,
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
            files,
        } => stamp_command(common, log, calendar, timeout, min_replies, files).await,
        Command::Upgrade {
            calendar,
            dry_run,
            files,
        } => {
            let mut result = Ok(());
            for file in files {
                result = result.and(upgrade_command(common, log, &calendar, dry_run, &file).await);
            }
            result
        }
        Command::Verify {
            file,
            digest,
            timestamp,
        } => verify_command(common, log, file, digest, &timestamp).await,
        Command::Info { file } => {
            let proof = read_proof(log, &file)?;
            print!("{}", ots_proof::display::info(&proof, common.verbose > 0));
            Ok(())
        }
        Command::Prune {
            verify,
            no_verify,
            discard,
            timestamp,
        } => prune_command(common, log, verify, no_verify, discard, &timestamp).await,
    }
}

fn read_proof(log: &Log, path: &Path) -> Result<DetachedTimestampFile, Failed> {
    let bytes = std::fs::read(path)
        .map_err(|e| fail(log, format!("Could not read {}: {e}", path.display())))?;
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

fn bitcoin_node(common: &Common, log: &Log) -> Result<Option<RpcClient>, Failed> {
    if common.no_bitcoin {
        return Ok(None);
    }
    let config = match &common.bitcoin_node {
        Some(url) => RpcConfig::new(url.clone(), Auth::None),
        None => local_node(chain(common), &default_datadir()),
    };
    RpcClient::new(config)
        .map(Some)
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

async fn stamp_command(
    common: &Common,
    log: &Log,
    calendars: Vec<String>,
    timeout: u64,
    min_replies: Option<usize>,
    files: Vec<PathBuf>,
) -> Outcome1 {
    let calendars = if calendars.is_empty() {
        DEFAULT_AGGREGATORS.iter().map(|s| s.to_string()).collect()
    } else {
        calendars
    };
    let n = calendars.len();
    let m = min_replies.unwrap_or(DEFAULT_MIN_REPLIES.min(n));
    if m > n || m == 0 {
        return Err(fail(
            log,
            format!(
                "m ({m}) cannot be greater than available calendars ({n}) neither less or equal 0"
            ),
        ));
    }
    let mut proofs = Vec::new();
    if files.is_empty() {
        let digest = HashOp::Sha256
            .digest_reader(std::io::stdin().lock())
            .map_err(|e| fail(log, format!("Could not read standard input: {e}")))?;
        proofs.push(
            DetachedTimestampFile::new(
                HashOp::Sha256,
                ots_proof::Timestamp::new(digest).map_err(|e| fail(log, e.to_string()))?,
            )
            .map_err(|e| fail(log, e.to_string()))?,
        );
    }
    for path in &files {
        let file = std::fs::File::open(path).map_err(|e| {
            fail(
                log,
                format!("Could not read {:?}: {e}", path.display().to_string()),
            )
        })?;
        let digest = HashOp::Sha256
            .digest_reader(std::io::BufReader::new(file))
            .map_err(|e| {
                fail(
                    log,
                    format!("Could not read {:?}: {e}", path.display().to_string()),
                )
            })?;
        let timestamp = ots_proof::Timestamp::new(digest).map_err(|e| fail(log, e.to_string()))?;
        proofs.push(
            DetachedTimestampFile::new(HashOp::Sha256, timestamp)
                .map_err(|e| fail(log, e.to_string()))?,
        );
    }
    let (tip, paths) = stamp::prepare(&mut proofs).ok_or_else(|| fail(log, "Nothing to stamp"))?;
    for url in &calendars {
        log.info(format!("Submitting to remote calendar {url}"));
    }
    let tip_timestamp =
        ots_proof::Timestamp::new(tip.to_vec()).map_err(|e| fail(log, e.to_string()))?;
    let spinner = ots::progress::Spinner::start(format!("waiting for {n} calendar(s)"));
    let submission = stamp::submit(tip_timestamp, &calendars, Duration::from_secs(timeout)).await;
    drop(spinner);
    for failure in &submission.failures {
        log.warn(failure.to_string());
    }
    if submission.replies < m {
        return Err(fail(
            log,
            format!(
                "Failed to create timestamp: need at least {m} attestation{} but received {} within timeout",
                if m == 1 { "" } else { "s" },
                submission.replies
            ),
        ));
    }
    let mut tip_timestamp = submission.timestamp;
    if common.wait {
        let options = UpgradeOptions {
            calendars: Vec::new(),
            whitelist: whitelist(common),
            timeout: UPGRADE_TIMEOUT,
        };
        let cache = open_cache(common, log)?;
        let interval = Duration::from_secs(common.wait_interval);
        upgrade(&mut tip_timestamp, &cache, &options, Some(interval), log).await;
        log.info("Timestamp complete; saving");
    }
    stamp::attach(&mut proofs, paths, &tip_timestamp).map_err(|e| fail(log, e.to_string()))?;
    if files.is_empty() {
        use std::io::Write;
        let bytes = proofs[0]
            .serialize()
            .map_err(|e| fail(log, e.to_string()))?;
        return std::io::stdout()
            .write_all(&bytes)
            .map_err(|e| fail(log, format!("Could not write standard output: {e}")));
    }
    for (path, proof) in files.iter().zip(&proofs) {
        let mut out = path.as_os_str().to_owned();
        out.push(".ots");
        write_new(log, Path::new(&out), proof)?;
    }
    Ok(())
}

async fn upgrade_command(
    common: &Common,
    log: &Log,
    calendars: &[String],
    dry_run: bool,
    path: &Path,
) -> Outcome1 {
    log.debug(format!("Upgrading {}", path.display()));
    let mut proof = read_proof(log, path)?;
    let cache = open_cache(common, log)?;
    let options = UpgradeOptions {
        calendars: calendars.to_vec(),
        whitelist: whitelist(common),
        timeout: UPGRADE_TIMEOUT,
    };
    let wait = common
        .wait
        .then(|| Duration::from_secs(common.wait_interval));
    let changed = upgrade(proof.timestamp_mut(), &cache, &options, wait, log).await;
    if changed && !dry_run {
        log.debug("Got new timestamp data; renaming existing timestamp");
        replace_with_backup(log, path, &proof)?;
    }
    if is_complete(proof.timestamp()) {
        log.info("Success! Timestamp complete");
        Ok(())
    } else {
        log.warn("Failed! Timestamp not complete");
        Err(Failed)
    }
}

async fn verify_command(
    common: &Common,
    log: &Log,
    target: Option<PathBuf>,
    digest: Option<String>,
    proof_path: &Path,
) -> Outcome1 {
    let mut proof = read_proof(log, proof_path)?;
    let hash = proof.hash_op();
    if let Some(hex_digest) = digest {
        let digest =
            hex::decode(hex_digest.trim()).map_err(|_| fail(log, "Digest must be hexadecimal"))?;
        if digest != proof.file_digest() {
            return Err(fail(
                log,
                format!(
                    "Digest provided does not match digest in timestamp, {} ({})",
                    hex::encode(proof.file_digest()),
                    hash.name()
                ),
            ));
        }
    } else {
        let target = match target {
            Some(t) => t,
            None => {
                let name = proof_path.to_string_lossy();
                let Some(stem) = name.strip_suffix(".ots") else {
                    return Err(fail(log, "Timestamp filename does not end in .ots"));
                };
                log.info(format!("Assuming target filename is {stem:?}"));
                PathBuf::from(stem)
            }
        };
        let file = std::fs::File::open(&target)
            .map_err(|e| fail(log, format!("Could not open target: {e}")))?;
        log.debug(format!("Hashing file, algorithm {}", hash.name()));
        let actual = ots::progress::hash_file(hash, file, &target)
            .map_err(|e| fail(log, format!("Could not read target: {e}")))?;
        if actual != proof.file_digest() {
            log.debug(format!(
                "Expected digest {}",
                hex::encode(proof.file_digest())
            ));
            return Err(fail(log, "File does not match original!"));
        }
    }
    let cache = open_cache(common, log)?;
    let options = UpgradeOptions {
        calendars: Vec::new(),
        whitelist: whitelist(common),
        timeout: UPGRADE_TIMEOUT,
    };
    upgrade(proof.timestamp_mut(), &cache, &options, None, log).await;
    let rpc = bitcoin_node(common, log)?;
    if ots::verify::bitcoin_attestations(proof.timestamp()).is_empty() {
        return Err(fail(
            log,
            "Timestamp has no Bitcoin attestation yet; nothing to verify",
        ));
    }
    match verify(proof.timestamp(), rpc.as_ref(), log).await {
        Some(_) => Ok(()),
        None => Err(Failed),
    }
}

async fn prune_command(
    common: &Common,
    log: &Log,
    verify_specs: Vec<String>,
    no_verify: bool,
    discard_specs: Vec<String>,
    path: &Path,
) -> Outcome1 {
    for spec in &verify_specs {
        if spec != "btc" {
            return Err(fail(
                log,
                format!("argument --verify: invalid choice: '{spec}' (choose from 'btc')"),
            ));
        }
    }
    let discard = if discard_specs.is_empty() {
        vec![Discard::AllPending]
    } else {
        discard_specs
            .iter()
            .map(|s| Discard::parse(s).map_err(|e| fail(log, format!("argument --discard: {e}"))))
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut proof = read_proof(log, path)?;
    if !no_verify {
        let attestations = ots::verify::bitcoin_attestations(proof.timestamp());
        if !attestations.is_empty() {
            let Some(rpc) = bitcoin_node(common, log)? else {
                return Err(fail(log, "Bitcoin disabled, could not check attestations"));
            };
            for (msg, height) in attestations {
                match check(&rpc, &msg, height).await {
                    Ok(Outcome::Verified { .. }) => {}
                    Ok(Outcome::NoSuchBlock { height, best }) => {
                        return Err(fail(
                            log,
                            format!("Bitcoin block height {height} not found; {best} is highest known block"),
                        ))
                    }
                    Ok(Outcome::Mismatch { reason, .. }) => {
                        return Err(fail(log, format!("Bitcoin verification failed: {reason}")))
                    }
                    Err(e) => return Err(fail(log, format!("Could not connect to Bitcoin node: {e}"))),
                }
            }
        }
    }
    let (empty, changed) = prune(proof.timestamp_mut(), &discard);
    if empty {
        log.warn("Failed! All attestations have been discarded");
        return Err(Failed);
    }
    if !changed {
        log.warn("Failed! Nothing has been discarded");
        return Err(Failed);
    }
    replace_with_backup(log, path, &proof)?;
    log.info("Success! Timestamp pruned");
    Ok(())
}
