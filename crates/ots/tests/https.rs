//! Our `ots` against an https calendar: `otsd --dev` in-process (as in
//! `tests/dev.rs`) behind a TLS proxy on 127.0.0.1
//! (`test_support::tls::TlsProxy`, a throwaway CA), the calendar naming
//! the proxy's https URL in its pending attestations. Stamp and upgrade
//! over https with `--ca-file`, refused without it, then verify the
//! complete proof against devchain.
//!
//! The calendar must know the proxy's URL before it starts and the proxy
//! must know the calendar's address: the calendar gets a port that was
//! free a moment ago (`common::free_port`), the proxy is started towards
//! it (it dials only when a client connects), then the calendar.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{free_port, has_line, ots, stderr, DevCalendar};
use ots_proof::{Attestation, DetachedTimestampFile};
use test_support::tls::TlsProxy;

/// How long a stamp may take to become a complete proof (about 10 s on
/// `--dev` with a block a second; room for a loaded machine).
const COMPLETE_LIMIT: Duration = Duration::from_secs(120);
/// Between two upgrade attempts.
const POLL: Duration = Duration::from_secs(1);

fn read_proof(path: &Path) -> DetachedTimestampFile {
    DetachedTimestampFile::deserialize(&std::fs::read(path).unwrap()).unwrap()
}

/// Whether `err` reports a refused certificate of the calendar at `url`.
fn refused_certificate(err: &str, url: &str) -> bool {
    err.lines()
        .any(|l| l.starts_with(&format!("calendar {url}/: TLS: ")) && l.contains("certificate"))
}

/// `ots --ca-file CA -l URL upgrade PROOF` every second until it succeeds;
/// every failed attempt must be the calendar saying "not yet" (a 404
/// reason), never a transport or TLS error.
fn upgrade_until_complete(cal: &DevCalendar, ca: &str, work: &Path, proof: &str) {
    let started = Instant::now();
    loop {
        let out = ots(&["--ca-file", ca, "-l", &cal.url, "upgrade", proof], work);
        let err = stderr(&out);
        if out.status.success() {
            assert!(has_line(&err, "Success! Timestamp complete"), "{err}");
            eprintln!("complete after {:?}", started.elapsed());
            return;
        }
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.lines()
                .all(|l| l.starts_with(&format!("Calendar {}: ", cal.url))
                    || l == "Failed! Timestamp not complete"),
            "{err}"
        );
        assert!(
            started.elapsed() < COMPLETE_LIMIT,
            "no complete proof within {COMPLETE_LIMIT:?}: {err}"
        );
        std::thread::sleep(POLL);
    }
}

#[test]
fn stamp_and_upgrade_over_https_then_verify_on_dev() {
    let port = free_port();
    let proxy = TlsProxy::start(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).unwrap();
    let cal = DevCalendar::start_as(&proxy.url(), port);
    assert_eq!(cal.url, proxy.url());
    let ca = proxy.ca_file().to_str().unwrap().to_owned();
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    std::fs::write(work.join("one.txt"), b"one file, stamped over https").unwrap();

    // Without the CA file: the certificate is refused, nothing is written.
    let out = ots(&["stamp", "-c", &cal.url, "one.txt"], work);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(refused_certificate(&err, &cal.url), "{err}");
    assert!(
        has_line(
            &err,
            "Failed to create timestamp: need at least 1 attestation but received 0 within timeout"
        ),
        "{err}"
    );
    assert!(!work.join("one.txt.ots").exists());

    // With it: a pending proof naming the https calendar.
    let out = ots(
        &["--ca-file", &ca, "stamp", "-c", &cal.url, "one.txt"],
        work,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let proof = read_proof(&work.join("one.txt.ots"));
    let all = proof.timestamp().all_attestations();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(
        all[0].1,
        &Attestation::Pending {
            uri: cal.url.clone()
        }
    );

    // Upgrading without the CA file is refused the same way.
    let out = ots(&["-l", &cal.url, "upgrade", "one.txt.ots"], work);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(refused_certificate(&err, &cal.url), "{err}");

    upgrade_until_complete(&cal, &ca, work, "one.txt.ots");
    let proof = read_proof(&work.join("one.txt.ots"));
    let (msg, height) = proof
        .timestamp()
        .all_attestations()
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
        "the attested message is block {height}'s merkle root"
    );

    // A complete proof is verified against the node alone.
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
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        has_line(
            &err,
            &format!(
                "Success! Bitcoin block {height} attests existence as of {}",
                ots::verify::utc_date(header.time)
            )
        ),
        "{err}"
    );
}

#[test]
fn an_unusable_ca_file_is_reported() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    std::fs::write(work.join("f.txt"), b"x").unwrap();
    std::fs::write(work.join("bad.pem"), b"no certificate here\n").unwrap();
    for (file, why) in [
        ("missing.pem", "No such file or directory"),
        ("bad.pem", "no PEM certificate in it"),
    ] {
        let path = work.join(file);
        let path = path.to_str().unwrap();
        let out = ots(
            &[
                "--ca-file",
                path,
                "stamp",
                "-c",
                "https://127.0.0.1:9",
                "f.txt",
            ],
            work,
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("CA file {path}: ")) && l.contains(why)),
            "{err}"
        );
        assert!(!work.join("f.txt.ots").exists());
    }
}
