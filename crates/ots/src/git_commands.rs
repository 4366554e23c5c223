//! The git subcommands: `git-gpg-wrapper` (git's `gpg.program`, through a
//! script: signs with gpg and timestamps the signature; verifies such
//! signatures) and `git-extract` (one file's timestamp from a timestamped
//! commit). The formats are in the library's `ots::git`; this is the
//! command-line side, in the reference's words.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ots::git::{
    hash_signed_commit, read_armored, split_signed_commit, write_armored, ArmorError, TreeHasher,
    MINOR_REHASHED_TREE,
};
use ots::log::Log;
use ots::upgrade::{upgrade, UpgradeOptions};
use ots_proof::{DetachedTimestampFile, HashOp, Op, Timestamp};

use crate::commands::{calendars_and_m, create_timestamp};
use crate::{
    calendar_client, fail, header_source, open_cache, whitelist, write_new, Common, Failed,
    Outcome1, UPGRADE_TIMEOUT,
};

/// What `ots git-gpg-wrapper` was asked to do.
pub(crate) struct WrapperArgs {
    pub(crate) gpg_program: String,
    pub(crate) calendars: Vec<String>,
    pub(crate) timeout: u64,
    pub(crate) min_replies: Option<usize>,
    pub(crate) gpg_args: Vec<String>,
    pub(crate) btc_wallet: bool,
}

/// The value after `flag` in gpg's arguments, if `flag` is there.
fn gpg_arg<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1).map(String::as_str)
}

pub(crate) async fn git_gpg_wrapper(common: &Common, log: &Log, args: WrapperArgs) -> Outcome1 {
    if args.gpg_args.is_empty() {
        return Err(fail(
            log,
            "You need to have '--' as the last argument; see docs",
        ));
    }
    if let Some(sig_file) = gpg_arg(&args.gpg_args, "--verify") {
        let sig_file = sig_file.to_string();
        return verify_signature(common, log, &args, &sig_file).await;
    }
    if gpg_arg(&args.gpg_args, "-bsau").is_some() {
        return sign(common, log, &args).await;
    }
    // Anything else (`--version`, ...) is gpg's business alone.
    let status = Command::new(&args.gpg_program)
        .args(&args.gpg_args)
        .status()
        .map_err(|e| fail(log, format!("Could not run {}: {e}", args.gpg_program)))?;
    if status.success() {
        Ok(())
    } else {
        Err(Failed)
    }
}

fn read_stdin(log: &Log) -> Result<Vec<u8>, Failed> {
    let mut buf = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut buf)
        .map_err(|e| fail(log, format!("Could not read standard input: {e}")))?;
    Ok(buf)
}

/// The tree a commit (`tree HEX`) or a tag (`object HEX`, resolved to its
/// tree) names, as an object name for `git cat-file`.
fn tree_of(object: &[u8]) -> Option<String> {
    let first = object.split(|&b| b == b'\n').next()?;
    let first = std::str::from_utf8(first).ok()?;
    if let Some(hex) = first.strip_prefix("tree ") {
        return Some(hex.to_string());
    }
    first
        .strip_prefix("object ")
        .map(|hex| format!("{hex}^{{tree}}"))
}

async fn sign(common: &Common, log: &Log, args: &WrapperArgs) -> Outcome1 {
    let commit = read_stdin(log)?;
    let mut gpg = Command::new(&args.gpg_program)
        .args(&args.gpg_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| fail(log, format!("Could not run {}: {e}", args.gpg_program)))?;
    if let Some(mut stdin) = gpg.stdin.take() {
        stdin
            .write_all(&commit)
            .map_err(|e| fail(log, format!("Could not write to GnuPG: {e}")))?;
    }
    let output = gpg
        .wait_with_output()
        .map_err(|e| fail(log, format!("GnuPG: {e}")))?;
    let signature = output.stdout;
    // GnuPG produces no output on failure (and has said why).
    if signature.is_empty() || !output.status.success() {
        return Err(Failed);
    }
    let tree = tree_of(&commit).ok_or_else(|| {
        fail(
            log,
            "Don't know what to do with this object: not a commit or a tag",
        )
    })?;
    let mut hasher = TreeHasher::open(Path::new(".")).map_err(|e| fail(log, e.to_string()))?;
    let tree_msg = hasher
        .tree_msg(&tree)
        .map_err(|e| fail(log, e.to_string()))?;
    drop(hasher);

    let mut signed = Timestamp::new(hash_signed_commit(&commit, &signature).to_vec())
        .map_err(|e| fail(log, e.to_string()))?;
    let tip = signed
        .add_path([
            Op::append(tree_msg.to_vec()).map_err(|e| fail(log, e.to_string()))?,
            Op::Sha256,
        ])
        .map_err(|e| fail(log, e.to_string()))?;
    let (calendars, m) = calendars_and_m(
        log,
        args.calendars.clone(),
        args.min_replies,
        args.btc_wallet,
    )?;
    let timeout = Duration::from_secs(args.timeout);
    let tip_alone = Timestamp::new(tip.msg().to_vec()).map_err(|e| fail(log, e.to_string()))?;
    let stamped = create_timestamp(
        common,
        log,
        tip_alone,
        &calendars,
        m,
        timeout,
        args.btc_wallet,
    )
    .await?;
    let _ = tip.merge(stamped);
    if common.wait {
        let options = UpgradeOptions {
            calendars: Vec::new(),
            whitelist: whitelist(common),
            timeout: UPGRADE_TIMEOUT,
            client: calendar_client(common, log, UPGRADE_TIMEOUT)?,
        };
        let cache = open_cache(common, log)?;
        let interval = Duration::from_secs(common.wait_interval);
        upgrade(&mut signed, &cache, &options, Some(interval), log).await;
    }
    let armored =
        write_armored(&signed, MINOR_REHASHED_TREE).map_err(|e| fail(log, e.to_string()))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&signature)
        .and_then(|()| out.write_all(&armored))
        .and_then(|()| out.flush())
        .map_err(|e| fail(log, format!("Could not write standard output: {e}")))
}

/// Upgrades (whitelisted calendars, the cache) and verifies `timestamp`;
/// whether a Bitcoin attestation checked out.
async fn verify_timestamp(
    common: &Common,
    log: &Log,
    timestamp: &mut Timestamp,
) -> Result<bool, Failed> {
    let cache = open_cache(common, log)?;
    let options = UpgradeOptions {
        calendars: Vec::new(),
        whitelist: whitelist(common),
        timeout: UPGRADE_TIMEOUT,
        client: calendar_client(common, log, UPGRADE_TIMEOUT)?,
    };
    upgrade(timestamp, &cache, &options, None, log).await;
    if ots::verify::bitcoin_attestations(timestamp).is_empty() {
        log.info("Timestamp has no Bitcoin attestation yet; nothing to verify");
        return Ok(false);
    }
    let source = header_source(common, log)?;
    let checks = ots::verify::verify(timestamp, source.as_ref(), log).await;
    Ok(checks.iter().any(|c| c.verified_time().is_some()))
}

async fn verify_signature(
    common: &Common,
    log: &Log,
    args: &WrapperArgs,
    sig_file: &str,
) -> Outcome1 {
    let commit = read_stdin(log)?;
    let signature = std::fs::read(sig_file)
        .map_err(|e| fail(log, format!("Could not read {sig_file}: {e}")))?;
    match read_armored(&commit, &signature) {
        Err(ArmorError::Missing) => eprintln!("OpenTimestamps: No timestamp found"),
        Err(e @ ArmorError::Version(_)) => return Err(fail(log, e.to_string())),
        Err(e) => log.error(e.to_string()),
        Ok(armored) => {
            log.debug(format!("Git timestamp is version 1.{}", armored.minor));
            let mut timestamp = armored.timestamp;
            match verify_timestamp(common, log, &mut timestamp).await {
                Ok(true) => log.info("Good timestamp"),
                _ => log.warn("Could not verify timestamp!"),
            }
        }
    }
    // Then gpg checks the signature, with git's arguments, as always.
    let mut gpg = Command::new(&args.gpg_program)
        .args(&args.gpg_args)
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| fail(log, format!("Could not run {}: {e}", args.gpg_program)))?;
    if let Some(mut stdin) = gpg.stdin.take() {
        let _ = stdin.write_all(&commit);
    }
    let status = gpg.wait().map_err(|e| fail(log, format!("GnuPG: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Failed)
    }
}

/// Output of `git ARGS` in the current directory, trimmed.
fn git_output(log: &Log, args: &[&str]) -> Result<String, Failed> {
    let out = Command::new("git")
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| fail(log, format!("Could not run git: {e}")))?;
    if !out.status.success() {
        return Err(Failed);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .trim_end_matches('\n')
        .to_string())
}

/// `path` (relative to the current directory, inside the work tree at
/// `prefix` from its root) as a `/`-separated path from the root.
fn repo_path(prefix: &str, path: &Path) -> Option<String> {
    let mut parts: Vec<String> = prefix
        .split('/')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    for component in path.components() {
        match component {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

pub(crate) fn git_extract(
    log: &Log,
    path: &Path,
    output: Option<PathBuf>,
    commit: &str,
) -> Outcome1 {
    let top = git_output(log, &["rev-parse", "--show-toplevel"])?;
    let prefix = git_output(log, &["rev-parse", "--show-prefix"])?;
    let in_repo = if path.is_absolute() {
        path.strip_prefix(&top).ok().and_then(|p| repo_path("", p))
    } else {
        repo_path(&prefix, path)
    };
    let Some(in_repo) = in_repo.filter(|p| !p.is_empty()) else {
        return Err(fail(
            log,
            format!("{:?} is outside repository", path.display().to_string()),
        ));
    };
    let mut hasher = TreeHasher::open(Path::new(&top)).map_err(|e| fail(log, e.to_string()))?;
    let object = hasher
        .objects()
        .read(&format!("{commit}^{{commit}}"), "commit")
        .map_err(|e| fail(log, e.to_string()))?;
    let Some((unsigned, signature)) = split_signed_commit(&object) else {
        return Err(fail(log, format!("{commit} is not signed")));
    };
    let armored = match read_armored(&unsigned, &signature) {
        Ok(a) => a,
        Err(ArmorError::Missing) => {
            return Err(fail(
                log,
                format!("{commit} is signed, but not timestamped"),
            ))
        }
        Err(e) => return Err(fail(log, e.to_string())),
    };
    if armored.minor != MINOR_REHASHED_TREE {
        return Err(fail(
            log,
            "Commit was timestamped, but --rehash-trees was not used; can't extract per-file timestamp.",
        ));
    }
    let tree = tree_of(&unsigned).ok_or_else(|| fail(log, format!("{commit}: no tree")))?;
    let (mut file_stamp, tree_msg) = hasher
        .file_timestamp(&tree, &in_repo)
        .map_err(|e| fail(log, e.to_string()))?;
    // The commit's timestamp is on M = hash_signed_commit(...), whose
    // first step is append(tree message): from the tree message, the same
    // message is prepend(M).
    let commit_stamp = armored.timestamp;
    let append = Op::append(tree_msg.to_vec()).map_err(|e| fail(log, e.to_string()))?;
    let Some(after_tree) = commit_stamp.child(&append) else {
        return Err(fail(
            log,
            format!("{commit}: its timestamp does not commit to its tree"),
        ));
    };
    let prepend = Op::prepend(commit_stamp.msg().to_vec()).map_err(|e| fail(log, e.to_string()))?;
    {
        let mut tip = &mut file_stamp;
        while tip.msg() != tree_msg.as_slice() {
            let next = tip.ops().next().map(|(op, _)| op.clone());
            let Some(op) = next else { break };
            tip = tip.child_mut(&op).ok_or(Failed)?;
        }
        let spliced = tip.add_op(prepend).map_err(|e| fail(log, e.to_string()))?;
        spliced
            .merge(after_tree.clone())
            .map_err(|e| fail(log, e.to_string()))?;
    }
    let proof = DetachedTimestampFile::new(HashOp::Sha256, file_stamp)
        .map_err(|e| fail(log, e.to_string()))?;
    let out = output.unwrap_or_else(|| {
        let mut p = path.as_os_str().to_owned();
        p.push(".ots");
        PathBuf::from(p)
    });
    write_new(log, &out, &proof)
}
