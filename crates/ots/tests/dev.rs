//! Our `ots` end to end against a real calendar: `otsd --dev`, which
//! aggregates, stamps on its embedded regtest chain (devchain, a block
//! every second here) and serves complete proofs. Stamp one file and
//! several at once, upgrade once blocks are mined, verify against
//! devchain's headers; then the same with the reference Python client on
//! either side (when `OTS_REFERENCE_CLIENT` names its `ots`; skipped with a
//! notice otherwise).
//!
//! How the server is started: `otsd` is a dev-dependency and the calendar
//! runs in-process (`common::DevCalendar`), on its own thread and a
//! single-threaded runtime like the binary's, through the function the
//! `otsd` binary's `main` runs (`otsd::server::run`, with its real command
//! line parsed by `otsd::config::Cli`); only logging and signal handling
//! are left out.
//! The `otsd` executable itself cannot be used robustly from this crate:
//! Cargo gives `CARGO_BIN_EXE_*` only for the package's own binaries and
//! does not build a dependency's binaries (artifact dependencies are
//! unstable), and guessing `target/<profile>/otsd` or running a nested
//! `cargo build` would depend on the profile, the target dir and the build
//! order. `otsd`'s own tests (`crates/otsd/tests/dev.rs`) run the binary.
//!
//! Everything binds 127.0.0.1 port 0 and lives in temp dirs; every wait is
//! a bounded poll.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{has_line, ots, reference, reference_client, stderr, DevCalendar, REFERENCE_SKIPPED};
use ots_proof::op::sha256;
use ots_proof::{Attestation, DetachedTimestampFile};

/// How long a stamp may take to become a complete proof. On `--dev` with a
/// block a second it takes about 10 s (a transaction at most every 5 s, 2
/// confirmations); the bound leaves room for a loaded machine.
const COMPLETE_LIMIT: Duration = Duration::from_secs(120);
/// Between two upgrade attempts.
const POLL: Duration = Duration::from_secs(1);

fn read_proof(path: &Path) -> DetachedTimestampFile {
    DetachedTimestampFile::deserialize(&std::fs::read(path).unwrap()).unwrap()
}

/// Checks a fresh proof of `file`: the digest of the file's content and one
/// attestation, the calendar's pending one; returns its commitment.
fn check_pending(work: &Path, file: &str, cal: &DevCalendar) -> Vec<u8> {
    let proof = read_proof(&work.join(format!("{file}.ots")));
    assert_eq!(
        proof.file_digest(),
        sha256(&std::fs::read(work.join(file)).unwrap()),
        "{file}"
    );
    let all = proof.timestamp().all_attestations();
    assert_eq!(all.len(), 1, "{file}: one attestation");
    assert_eq!(
        all[0].1,
        &Attestation::Pending {
            uri: cal.url.clone()
        },
        "{file}"
    );
    all[0].0.to_vec()
}

/// Whether `line` is our upgrade's report of otsd saying a commitment is
/// not complete yet: pending, or in a transaction awaiting confirmations.
fn is_pending_reason(line: &str, url: &str) -> bool {
    let Some(reason) = line.strip_prefix(&format!("Calendar {url}: ")) else {
        return false;
    };
    if reason == "Pending confirmation in Bitcoin blockchain" {
        return true;
    }
    let Some((txid, rest)) = reason
        .strip_prefix("Timestamped by transaction ")
        .and_then(|r| r.split_once("; waiting for "))
    else {
        return false;
    };
    txid.len() == 64
        && txid.bytes().all(|b| b.is_ascii_hexdigit())
        && rest
            .strip_suffix(" confirmations")
            .is_some_and(|n| n.parse::<u64>().is_ok_and(|n| n > 0))
}

/// Runs `ots -l URL upgrade FILES…` every second until it succeeds (or the
/// bound passes); each failed attempt must be the calendar saying the proof
/// is not complete yet, nothing else. Returns the successful run.
fn upgrade_until_complete(cal: &DevCalendar, work: &Path, proofs: &[&str]) -> Output {
    let started = Instant::now();
    let mut args = vec!["-l", &cal.url, "upgrade"];
    args.extend_from_slice(proofs);
    loop {
        let out = ots(&args, work);
        if out.status.success() {
            eprintln!("complete after {:?}", started.elapsed());
            return out;
        }
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        // Each line: the calendar saying a proof is not complete yet, or
        // the outcome for one proof (some may complete in this run).
        assert!(has_line(&err, "Failed! Timestamp not complete"), "{err}");
        assert!(
            err.lines().all(|l| is_pending_reason(l, &cal.url)
                || l == "Failed! Timestamp not complete"
                || l == "Success! Timestamp complete"
                || l.starts_with("Got ")
                    && l.ends_with(&format!(" attestation(s) from {}", cal.url))),
            "{err}"
        );
        assert!(
            started.elapsed() < COMPLETE_LIMIT,
            "no complete proof within {COMPLETE_LIMIT:?}: {err}"
        );
        std::thread::sleep(POLL);
    }
}

/// Checks an upgraded proof: the pending attestation is kept and one
/// Bitcoin attestation was added whose message is the merkle root of
/// devchain's block at that height. Returns the height and the header.
fn check_complete(cal: &DevCalendar, path: &Path) -> (u64, bitcoin::block::Header) {
    let proof = read_proof(path);
    let all = proof.timestamp().all_attestations();
    assert_eq!(all.len(), 2, "{}: {all:?}", path.display());
    assert!(all.iter().any(|(_, a)| a
        == &&Attestation::Pending {
            uri: cal.url.clone()
        }));
    let (msg, height) = all
        .iter()
        .find_map(|(msg, a)| match a {
            Attestation::Bitcoin { height } => Some((msg.to_vec(), *height)),
            _ => None,
        })
        .expect("a Bitcoin attestation");
    let header = cal.header(height);
    assert_eq!(
        msg,
        bitcoin::hashes::Hash::to_byte_array(header.merkle_root).to_vec(),
        "{}: the attested message is block {height}'s merkle root",
        path.display()
    );
    (height, header)
}

/// The line our `verify` prints on success.
fn success_line(height: u64, header: &bitcoin::block::Header) -> String {
    format!(
        "Success! Bitcoin block {height} attests existence as of {}",
        ots::verify::utc_date(header.time)
    )
}

/// `ots --btc-regtest --bitcoin-node URL verify PROOF`: exit 0 and the
/// success line for the block the proof names, and nothing else.
fn assert_verifies(cal: &DevCalendar, work: &Path, proof: &str) {
    let (height, header) = check_complete(cal, &work.join(proof));
    let out = ots(
        &[
            "--btc-regtest",
            "--bitcoin-node",
            &cal.rpc_url,
            "verify",
            proof,
        ],
        work,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{proof}: {err}");
    // All of it: the proof is complete, so its calendar is not asked (nor
    // mentioned as not whitelisted).
    let file = proof.strip_suffix(".ots").unwrap();
    assert_eq!(
        err,
        format!(
            "Assuming target filename is \"{file}\"\n{}\n",
            success_line(height, &header)
        )
    );
}

/// Our `verify` of a proof whose file was changed: exit 1, said why.
fn assert_modified_file_fails(cal: &DevCalendar, work: &Path, file: &str) {
    std::fs::write(work.join(file), b"not what was stamped").unwrap();
    let proof = format!("{file}.ots");
    let out = ots(
        &[
            "--btc-regtest",
            "--bitcoin-node",
            &cal.rpc_url,
            "verify",
            &proof,
        ],
        work,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(has_line(&err, "File does not match original!"), "{err}");
    assert!(!err.contains("Success!"), "{err}");
}

#[test]
fn one_file_is_stamped_upgraded_and_verified_on_dev() {
    let cal = DevCalendar::start();
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    std::fs::write(work.join("one.txt"), b"one file, stamped on otsd --dev").unwrap();

    let out = ots(&["stamp", "-c", &cal.url, "one.txt"], work);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(has_line(
        &stderr(&out),
        &format!("Submitting to remote calendar {}", cal.url)
    ));
    check_pending(work, "one.txt", &cal);
    let pending = std::fs::read(work.join("one.txt.ots")).unwrap();

    // Pending, and the calendar not whitelisted: nothing to verify yet.
    let out = ots(
        &[
            "--btc-regtest",
            "--bitcoin-node",
            &cal.rpc_url,
            "verify",
            "one.txt.ots",
        ],
        work,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        has_line(
            &err,
            &format!(
                "Ignoring attestation from calendar {}: Calendar not in whitelist",
                cal.url
            )
        ),
        "{err}"
    );
    assert!(
        has_line(
            &err,
            "Timestamp has no Bitcoin attestation yet; nothing to verify"
        ),
        "{err}"
    );

    let out = upgrade_until_complete(&cal, work, &["one.txt.ots"]);
    assert!(
        has_line(&stderr(&out), "Success! Timestamp complete"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(work.join("one.txt.ots.bak")).unwrap(),
        pending,
        "the pending proof is kept as .bak"
    );
    let (height, _) = check_complete(&cal, &work.join("one.txt.ots"));
    let out = ots(&["info", "one.txt.ots"], work);
    assert_eq!(out.status.code(), Some(0));
    let info = String::from_utf8(out.stdout).unwrap();
    assert!(
        has_line(
            &info,
            &format!("verify BitcoinBlockHeaderAttestation({height})")
        ),
        "{info}"
    );

    assert_verifies(&cal, work, "one.txt.ots");
    assert_modified_file_fails(&cal, work, "one.txt");
}

#[test]
fn several_files_are_stamped_at_once_upgraded_and_verified_on_dev() {
    let cal = DevCalendar::start();
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let files = ["a.txt", "b.txt", "c.txt"];
    for f in files {
        std::fs::write(work.join(f), format!("content of {f}")).unwrap();
    }

    let out = ots(&["stamp", "-c", &cal.url, "a.txt", "b.txt", "c.txt"], work);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // One submission: every proof ends in the same calendar commitment,
    // each from its own file's digest (nonced, so no two paths are equal).
    let commitments: Vec<_> = files.iter().map(|f| check_pending(work, f, &cal)).collect();
    assert!(commitments.iter().all(|c| c == &commitments[0]));

    // One `upgrade --wait` for all three, polling every second (the hidden
    // --wait-interval; the default is a polite 30 s), bounded here.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ots"))
        .args([
            "--no-cache",
            "-l",
            &cal.url,
            "--wait",
            "--wait-interval",
            "1",
        ])
        .args(["upgrade", "a.txt.ots", "b.txt.ots", "c.txt.ots"])
        .current_dir(work)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > COMPLETE_LIMIT {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "upgrade --wait did not finish within {COMPLETE_LIMIT:?}: {}",
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    eprintln!("complete after {:?}", started.elapsed());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        err.lines()
            .filter(|l| *l == "Success! Timestamp complete")
            .count(),
        3,
        "{err}"
    );

    let heights: Vec<_> = files
        .iter()
        .map(|f| check_complete(&cal, &work.join(format!("{f}.ots"))).0)
        .collect();
    assert!(heights.iter().all(|h| *h == heights[0]), "{heights:?}");
    for f in files {
        assert_verifies(&cal, work, &format!("{f}.ots"));
    }
    assert_modified_file_fails(&cal, work, "b.txt");
    // The others still verify.
    assert_verifies(&cal, work, "a.txt.ots");
}

/// The reference client's `verify` (its date is local, so only up to it).
fn assert_reference_verifies(client: &Path, cal: &DevCalendar, work: &Path, proof: &str) {
    let (height, _) = check_complete(cal, &work.join(proof));
    let out = reference(
        client,
        &[
            "--btc-regtest",
            "--bitcoin-node",
            &cal.rpc_url,
            "verify",
            proof,
        ],
        work,
    );
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "reference verify {proof}: {err}"
    );
    assert!(
        err.lines().any(|l| l.starts_with(&format!(
            "Success! Bitcoin block {height} attests existence as of "
        ))),
        "reference verify {proof}: {err}"
    );
}

#[test]
fn reference_client_accepts_our_proofs_from_dev() {
    let Some(client) = reference_client() else {
        eprintln!("{REFERENCE_SKIPPED}");
        return;
    };
    let cal = DevCalendar::start();
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    for f in ["alone.txt", "x.txt", "y.txt"] {
        std::fs::write(work.join(f), format!("{f}, stamped by ours")).unwrap();
    }
    for args in [
        &["stamp", "-c", &cal.url, "alone.txt"][..],
        &["stamp", "-c", &cal.url, "x.txt", "y.txt"][..],
    ] {
        let out = ots(args, work);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let proofs = ["alone.txt.ots", "x.txt.ots", "y.txt.ots"];
    upgrade_until_complete(&cal, work, &proofs);
    for proof in proofs {
        let theirs = reference(&client, &["info", proof], work);
        assert_eq!(theirs.status.code(), Some(0), "{}", stderr(&theirs));
        let ours = ots(&["info", proof], work);
        assert_eq!(
            String::from_utf8_lossy(&theirs.stdout),
            String::from_utf8_lossy(&ours.stdout),
            "{proof}: the reference's info and ours"
        );
        assert_reference_verifies(&client, &cal, work, proof);
    }
}

#[test]
fn our_client_upgrades_and_verifies_reference_proofs_from_dev() {
    let Some(client) = reference_client() else {
        eprintln!("{REFERENCE_SKIPPED}");
        return;
    };
    let cal = DevCalendar::start();
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    for f in ["solo.txt", "p.txt", "q.txt"] {
        std::fs::write(work.join(f), format!("{f}, stamped by the reference")).unwrap();
    }
    // The reference needs -m 1 with a single calendar.
    for args in [
        &["stamp", "-c", &cal.url, "-m", "1", "solo.txt"][..],
        &["stamp", "-c", &cal.url, "-m", "1", "p.txt", "q.txt"][..],
    ] {
        let out = reference(&client, args, work);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    for f in ["solo.txt", "p.txt", "q.txt"] {
        check_pending(work, f, &cal);
    }
    let proofs = ["solo.txt.ots", "p.txt.ots", "q.txt.ots"];
    upgrade_until_complete(&cal, work, &proofs);
    for proof in proofs {
        assert_verifies(&cal, work, proof);
        // The reference still reads what ours wrote.
        assert_reference_verifies(&client, &cal, work, proof);
    }
    assert_modified_file_fails(&cal, work, "p.txt");
}

#[test]
fn digests_are_stamped_upgraded_and_verified_on_dev() {
    let cal = DevCalendar::start();
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    // Two sha256 digests in one submission, each to HEX.ots, and a sha1
    // digest to a named file.
    let contents: [&[u8]; 3] = [b"first digest", b"second digest", b"sha1 digest"];
    let hex_a = hex::encode(sha256(contents[0]));
    let hex_b = hex::encode(sha256(contents[1]));
    let sha1 = ots_proof::HashOp::Sha1.digest(contents[2]);
    let hex_sha1 = hex::encode(&sha1);
    // Upper-case hex is accepted; the file name is the lower-case digest.
    let upper_b = hex_b.to_uppercase();
    let out = ots(
        &[
            "stamp", "-c", &cal.url, "--digest", &hex_a, "--digest", &upper_b,
        ],
        work,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = ots(
        &[
            "stamp",
            "-c",
            &cal.url,
            "--hash-alg",
            "sha1",
            "--digest",
            &hex_sha1,
            "-o",
            "named.ots",
        ],
        work,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let a = format!("{hex_a}.ots");
    let b = format!("{hex_b}.ots");
    for (proof, hash, digest) in [
        (&a, ots_proof::HashOp::Sha256, sha256(contents[0]).to_vec()),
        (&b, ots_proof::HashOp::Sha256, sha256(contents[1]).to_vec()),
        (
            &"named.ots".to_string(),
            ots_proof::HashOp::Sha1,
            sha1.clone(),
        ),
    ] {
        let p = read_proof(&work.join(proof));
        assert_eq!(p.hash_op(), hash, "{proof}");
        assert_eq!(p.file_digest(), digest.as_slice(), "{proof}");
        assert_eq!(p.timestamp().all_attestations().len(), 1, "{proof}");
    }
    upgrade_until_complete(&cal, work, &[&a, &b, "named.ots"]);
    for (proof, hex_digest) in [
        (&a, &hex_a),
        (&b, &hex_b),
        (&"named.ots".to_string(), &hex_sha1),
    ] {
        let (height, header) = check_complete(&cal, &work.join(proof));
        let out = ots(
            &[
                "--btc-regtest",
                "--bitcoin-node",
                &cal.rpc_url,
                "verify",
                "-d",
                hex_digest,
                proof,
            ],
            work,
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{proof}: {err}");
        assert!(has_line(&err, &success_line(height, &header)), "{err}");
    }
    // The sha1 proof also verifies against the file that was hashed.
    std::fs::write(work.join("sha1.txt"), contents[2]).unwrap();
    let out = ots(
        &[
            "--btc-regtest",
            "--bitcoin-node",
            &cal.rpc_url,
            "verify",
            "-f",
            "sha1.txt",
            "named.ots",
        ],
        work,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
