//! The `ots` subcommands that act on proofs: stamp, upgrade, verify and
//! prune (`info` is a one-liner in `main.rs`). Part of the binary, not of
//! the library; the CLI, the shared helpers (reading and writing proofs,
//! the cache, the whitelist, the Bitcoin node) and the failure type are in
//! `main.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ots::log::Log;
use ots::prune::{prune, Discard};
use ots::stamp;
use ots::upgrade::{is_complete, upgrade, upgrade_all, UpgradeOptions};
use ots::verify::{check, verify, Check, Outcome};
use ots::whitelist::DEFAULT_AGGREGATORS;
use ots_proof::{DetachedTimestampFile, HashOp};

use crate::{
    bitcoin_node, calendar_client, fail, header_source, open_cache, read_proof,
    replace_with_backup, whitelist, write_new, Common, Failed, Outcome1, DEFAULT_MIN_REPLIES,
    UPGRADE_TIMEOUT,
};

/// What `ots stamp` was asked to do.
pub(crate) struct StampArgs {
    pub(crate) calendars: Vec<String>,
    pub(crate) timeout: u64,
    pub(crate) min_replies: Option<usize>,
    /// Digests already computed, hex, each made by `hash`.
    pub(crate) digests: Vec<String>,
    pub(crate) hash: HashOp,
    /// The proof of the one digest goes here rather than to `HEX.ots`.
    pub(crate) output: Option<PathBuf>,
    pub(crate) files: Vec<PathBuf>,
    /// Stamp with the local node's wallet (`-b`).
    pub(crate) btc_wallet: bool,
}

/// The calendars to submit to and how many must answer: the default
/// aggregators when none are given, except with the wallet (`-b`) alone,
/// which needs no calendar.
pub(crate) fn calendars_and_m(
    log: &Log,
    calendars: Vec<String>,
    min_replies: Option<usize>,
    btc_wallet: bool,
) -> Result<(Vec<String>, usize), Failed> {
    if btc_wallet && calendars.is_empty() {
        return Ok((Vec::new(), 0));
    }
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
    Ok((calendars, m))
}

/// Timestamps `tip`: with the wallet first (`btc_wallet`: a transaction,
/// waited for until a block holds it), then with `calendars`, at least
/// `m` of which must answer within `timeout`. Returns `tip` with all of it.
pub(crate) async fn create_timestamp(
    common: &Common,
    log: &Log,
    mut tip: ots_proof::Timestamp,
    calendars: &[String],
    m: usize,
    timeout: Duration,
    btc_wallet: bool,
) -> Result<ots_proof::Timestamp, Failed> {
    if btc_wallet {
        if common.no_bitcoin {
            return Err(fail(
                log,
                "-b/--btc-wallet needs Bitcoin; it cannot be used with --no-bitcoin",
            ));
        }
        let rpc = bitcoin_node(common, log)?;
        let Ok(msg) = <[u8; 32]>::try_from(tip.msg()) else {
            return Err(fail(log, "The tip to timestamp is not 32 bytes"));
        };
        let network = crate::chain(common).network();
        let from_block = ots::wallet::stamp_with_wallet(&rpc, network, &msg, log)
            .await
            .map_err(|e| fail(log, format!("Could not timestamp with the wallet: {e}")))?;
        tip.merge(from_block)
            .map_err(|e| fail(log, e.to_string()))?;
    }
    if calendars.is_empty() {
        return Ok(tip);
    }
    for url in calendars {
        log.info(format!("Submitting to remote calendar {url}"));
    }
    let client = calendar_client(common, log, timeout)?;
    let spinner =
        ots::progress::Spinner::start(format!("waiting for {} calendar(s)", calendars.len()));
    let submission = stamp::submit(tip, calendars, &client, timeout).await;
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
    Ok(submission.timestamp)
}

/// Where a stamped proof goes.
enum Destination {
    Stdout,
    File(PathBuf),
}

/// Parses a `--digest` value: hex of exactly the hash's length.
fn parse_digest(log: &Log, hex_digest: &str, hash: HashOp) -> Result<Vec<u8>, Failed> {
    let digest = hex::decode(hex_digest.trim())
        .map_err(|_| fail(log, format!("Digest {hex_digest:?} is not hexadecimal")))?;
    if digest.len() != hash.digest_len() {
        return Err(fail(
            log,
            format!(
                "Digest {hex_digest:?} is {} bytes long; a {} digest is {} bytes ({} hex digits)",
                digest.len(),
                hash.name(),
                hash.digest_len(),
                2 * hash.digest_len()
            ),
        ));
    }
    Ok(digest)
}

pub(crate) async fn stamp_command(common: &Common, log: &Log, args: StampArgs) -> Outcome1 {
    let StampArgs {
        calendars,
        timeout,
        min_replies,
        digests,
        hash,
        output,
        files,
        btc_wallet,
    } = args;
    if output.is_some() && (digests.len() != 1 || !files.is_empty()) {
        return Err(fail(
            log,
            "-o names the proof of a single --digest; give one --digest and no file",
        ));
    }
    let (calendars, m) = calendars_and_m(log, calendars, min_replies, btc_wallet)?;
    let mut proofs = Vec::new();
    let mut destinations = Vec::new();
    let new_proof = |hash: HashOp, digest: Vec<u8>| {
        let timestamp = ots_proof::Timestamp::new(digest).map_err(|e| fail(log, e.to_string()))?;
        DetachedTimestampFile::new(hash, timestamp).map_err(|e| fail(log, e.to_string()))
    };
    // Every digest is checked before any file is read or calendar asked.
    let mut parsed = Vec::with_capacity(digests.len());
    for hex_digest in &digests {
        parsed.push(parse_digest(log, hex_digest, hash)?);
    }
    if files.is_empty() && digests.is_empty() {
        let digest = HashOp::Sha256
            .digest_reader(std::io::stdin().lock())
            .map_err(|e| fail(log, format!("Could not read standard input: {e}")))?;
        proofs.push(new_proof(HashOp::Sha256, digest)?);
        destinations.push(Destination::Stdout);
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
        proofs.push(new_proof(HashOp::Sha256, digest)?);
        let mut out = path.as_os_str().to_owned();
        out.push(".ots");
        destinations.push(Destination::File(PathBuf::from(out)));
    }
    for digest in parsed {
        let out = match &output {
            Some(path) => path.clone(),
            None => PathBuf::from(format!("{}.ots", hex::encode(&digest))),
        };
        proofs.push(new_proof(hash, digest)?);
        destinations.push(Destination::File(out));
    }
    let (tip, paths) = stamp::prepare(&mut proofs).ok_or_else(|| fail(log, "Nothing to stamp"))?;
    let timeout = Duration::from_secs(timeout);
    let longest = if common.wait {
        timeout.max(UPGRADE_TIMEOUT)
    } else {
        timeout
    };
    let client = calendar_client(common, log, longest)?;
    let tip_timestamp =
        ots_proof::Timestamp::new(tip.to_vec()).map_err(|e| fail(log, e.to_string()))?;
    let mut tip_timestamp = create_timestamp(
        common,
        log,
        tip_timestamp,
        &calendars,
        m,
        timeout,
        btc_wallet,
    )
    .await?;
    if common.wait {
        let options = UpgradeOptions {
            calendars: Vec::new(),
            whitelist: whitelist(common),
            timeout: UPGRADE_TIMEOUT,
            client,
        };
        let cache = open_cache(common, log)?;
        let interval = Duration::from_secs(common.wait_interval);
        upgrade(&mut tip_timestamp, &cache, &options, Some(interval), log).await;
        log.info("Timestamp complete; saving");
    }
    stamp::attach(&mut proofs, paths, &tip_timestamp).map_err(|e| fail(log, e.to_string()))?;
    for (destination, proof) in destinations.iter().zip(&proofs) {
        match destination {
            Destination::Stdout => {
                use std::io::Write;
                let bytes = proof.serialize().map_err(|e| fail(log, e.to_string()))?;
                std::io::stdout()
                    .write_all(&bytes)
                    .map_err(|e| fail(log, format!("Could not write standard output: {e}")))?;
            }
            Destination::File(path) => write_new(log, path, proof)?,
        }
    }
    Ok(())
}

/// `ots upgrade FILE...`: every proof read first, then all upgraded
/// together (one request per distinct calendar and commitment), then each
/// written and reported in the order given.
pub(crate) async fn upgrade_command(
    common: &Common,
    log: &Log,
    client: &ots_calendar::Client,
    calendars: &[String],
    dry_run: bool,
    paths: &[PathBuf],
) -> Outcome1 {
    let mut result = Ok(());
    let mut proofs = Vec::with_capacity(paths.len());
    for path in paths {
        log.debug(format!("Upgrading {}", path.display()));
        match read_proof(log, path) {
            Ok(proof) => proofs.push((path, proof)),
            Err(failed) => result = Err(failed),
        }
    }
    let cache = open_cache(common, log)?;
    let options = UpgradeOptions {
        calendars: calendars.to_vec(),
        whitelist: whitelist(common),
        timeout: UPGRADE_TIMEOUT,
        client: client.clone(),
    };
    let wait = common
        .wait
        .then(|| Duration::from_secs(common.wait_interval));
    let mut timestamps: Vec<&mut ots_proof::Timestamp> =
        proofs.iter_mut().map(|(_, p)| p.timestamp_mut()).collect();
    let changed = upgrade_all(&mut timestamps, &cache, &options, wait, log).await;
    for ((path, proof), changed) in proofs.iter().zip(changed) {
        if changed && !dry_run {
            log.debug("Got new timestamp data; renaming existing timestamp");
            if let Err(failed) = replace_with_backup(log, path, proof) {
                result = Err(failed);
                continue;
            }
        }
        if paths.len() > 1 {
            log.debug(format!("{}:", path.display()));
        }
        if is_complete(proof.timestamp()) {
            log.info("Success! Timestamp complete");
        } else {
            log.warn("Failed! Timestamp not complete");
            result = Err(Failed);
        }
    }
    result
}

/// With `--json`, prints the verify document on standard output.
fn print_verify_json(
    json: bool,
    proof: &DetachedTimestampFile,
    checks: &[Check],
    failure: Option<&str>,
) {
    if json {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        // A closed stdout is the script's choice; nothing to add on stderr.
        let _ = ots::json::write_verify(&mut out, proof, checks, failure)
            .and_then(|()| std::io::Write::flush(&mut out));
    }
}

/// Reports `message` as the reason verification failed (and, with
/// `--json`, prints the document saying so).
fn refuse(log: &Log, json: bool, proof: &DetachedTimestampFile, message: String) -> Failed {
    print_verify_json(json, proof, &[], Some(&message));
    fail(log, message)
}

pub(crate) async fn verify_command(
    common: &Common,
    log: &Log,
    target: Option<PathBuf>,
    digest: Option<String>,
    json: bool,
    proof_path: &Path,
) -> Outcome1 {
    let mut proof = read_proof(log, proof_path)?;
    let hash = proof.hash_op();
    if let Some(hex_digest) = digest {
        let Ok(digest) = hex::decode(hex_digest.trim()) else {
            return Err(refuse(
                log,
                json,
                &proof,
                "Digest must be hexadecimal".into(),
            ));
        };
        if digest != proof.file_digest() {
            let message = format!(
                "Digest provided does not match digest in timestamp, {} ({})",
                hex::encode(proof.file_digest()),
                hash.name()
            );
            return Err(refuse(log, json, &proof, message));
        }
    } else {
        let target = match target {
            Some(t) => t,
            None => {
                let name = proof_path.to_string_lossy();
                let Some(stem) = name.strip_suffix(".ots") else {
                    return Err(refuse(
                        log,
                        json,
                        &proof,
                        "Timestamp filename does not end in .ots".into(),
                    ));
                };
                log.info(format!("Assuming target filename is {stem:?}"));
                PathBuf::from(stem)
            }
        };
        let file = match std::fs::File::open(&target) {
            Ok(file) => file,
            Err(e) => {
                return Err(refuse(
                    log,
                    json,
                    &proof,
                    format!("Could not open target: {e}"),
                ))
            }
        };
        log.debug(format!("Hashing file, algorithm {}", hash.name()));
        let actual = match ots::progress::hash_file(hash, file, &target) {
            Ok(actual) => actual,
            Err(e) => {
                return Err(refuse(
                    log,
                    json,
                    &proof,
                    format!("Could not read target: {e}"),
                ))
            }
        };
        if actual != proof.file_digest() {
            log.debug(format!(
                "Expected digest {}",
                hex::encode(proof.file_digest())
            ));
            return Err(refuse(
                log,
                json,
                &proof,
                "File does not match original!".into(),
            ));
        }
    }
    let cache = open_cache(common, log)?;
    let options = UpgradeOptions {
        calendars: Vec::new(),
        whitelist: whitelist(common),
        timeout: UPGRADE_TIMEOUT,
        client: calendar_client(common, log, UPGRADE_TIMEOUT)?,
    };
    upgrade(proof.timestamp_mut(), &cache, &options, None, log).await;
    let source = header_source(common, log)?;
    if ots::verify::bitcoin_attestations(proof.timestamp()).is_empty() {
        return Err(refuse(
            log,
            json,
            &proof,
            "Timestamp has no Bitcoin attestation yet; nothing to verify".into(),
        ));
    }
    let checks = verify(proof.timestamp(), source.as_ref(), log).await;
    let verified = checks.iter().any(|c| c.verified_time().is_some());
    print_verify_json(json, &proof, &checks, None);
    if verified {
        Ok(())
    } else {
        Err(Failed)
    }
}

pub(crate) async fn prune_command(
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
            let Some(source) = header_source(common, log)? else {
                return Err(fail(log, "Bitcoin disabled, could not check attestations"));
            };
            for (msg, height) in attestations {
                match check(&source, &msg, height).await {
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
                    Err(e) => return Err(fail(log, e.to_string())),
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
