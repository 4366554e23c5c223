//! `ots upgrade` end to end: following a chain of calendars in one run
//! (calendar A's answer names calendar B, B's answer completes it, the
//! Bitcoin part made by a real `otsd --dev` on devchain), leaving a
//! non-whitelisted calendar unasked, the bound on rounds, and many proofs
//! upgraded with one request per distinct calendar and commitment. The
//! calendars A, B, C are axum servers on 127.0.0.1 port 0.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use common::{has_line, ots, stderr, DevCalendar};
use ots_proof::op::sha256;
use ots_proof::{Attestation, DetachedTimestampFile, HashOp, Op, Timestamp};

/// How long otsd --dev may take to complete a commitment.
const COMPLETE_LIMIT: Duration = Duration::from_secs(120);

/// A fake calendar: a fixed reply per commitment (404 otherwise), and a
/// count of the GET /timestamp requests per commitment.
#[derive(Default)]
struct Fake {
    replies: Mutex<HashMap<Vec<u8>, Timestamp>>,
    /// With no fixed reply: answer any commitment with one step to a new
    /// commitment pending at this URL (an endless chain).
    endless: Mutex<Option<String>>,
    asked: Mutex<HashMap<Vec<u8>, usize>>,
    /// Answer only after this long.
    delay: Mutex<Duration>,
}

impl Fake {
    fn total(&self) -> usize {
        self.asked.lock().unwrap().values().sum()
    }
}

async fn get_timestamp(
    State(s): State<Arc<Fake>>,
    UrlPath(hex_c): UrlPath<String>,
) -> (StatusCode, Vec<u8>) {
    let c = hex::decode(hex_c).unwrap_or_default();
    *s.asked.lock().unwrap().entry(c.clone()).or_default() += 1;
    let delay = *s.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    if let Some(t) = s.replies.lock().unwrap().get(&c) {
        return (StatusCode::OK, t.serialize().unwrap());
    }
    if let Some(url) = s.endless.lock().unwrap().clone() {
        let mut t = Timestamp::new(c).unwrap();
        t.add_path([Op::append(vec![1; 4]).unwrap(), Op::Sha256])
            .unwrap()
            .add_attestation(Attestation::pending(url).unwrap());
        return (StatusCode::OK, t.serialize().unwrap());
    }
    (
        StatusCode::NOT_FOUND,
        b"Pending confirmation in Bitcoin blockchain".to_vec(),
    )
}

async fn fake() -> (String, Arc<Fake>) {
    let state = Arc::new(Fake::default());
    let app = Router::new()
        .route("/timestamp/{c}", get(get_timestamp))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), state)
}

/// `data`'s proof: a nonce, sha256, then `commitment` pending at `url`.
fn pending_proof(data: &[u8], url: &str) -> (DetachedTimestampFile, Vec<u8>) {
    let mut t = Timestamp::new(sha256(data)).unwrap();
    let end = t
        .add_path([Op::append(vec![9; 16]).unwrap(), Op::Sha256])
        .unwrap();
    let commitment = end.msg().to_vec();
    end.add_attestation(Attestation::pending(url.to_string()).unwrap());
    (
        DetachedTimestampFile::new(HashOp::Sha256, t).unwrap(),
        commitment,
    )
}

fn write(path: &Path, proof: &DetachedTimestampFile) {
    std::fs::write(path, proof.serialize().unwrap()).unwrap();
}

fn read(path: &Path) -> DetachedTimestampFile {
    DetachedTimestampFile::deserialize(&std::fs::read(path).unwrap()).unwrap()
}

/// Submits `digest` to otsd --dev and waits until its proof is complete:
/// the whole timestamp of `digest`, down to a Bitcoin attestation.
async fn complete_from_dev(cal: &DevCalendar, digest: &[u8]) -> Timestamp {
    let client = ots_calendar::Client::new(&ots_calendar::ClientConfig::default()).unwrap();
    let calendar = client.calendar(&cal.url).unwrap();
    let mut t = calendar.submit(digest).await.unwrap();
    let (k, _) = t
        .all_attestations()
        .into_iter()
        .map(|(m, a)| (m.to_vec(), a.clone()))
        .next()
        .unwrap();
    let started = Instant::now();
    let upgraded = loop {
        match calendar.get_timestamp(&k).await {
            Ok(u) => break u,
            Err(e) => assert!(started.elapsed() < COMPLETE_LIMIT, "otsd --dev: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    // Merge at the pending node (found by its message).
    let mut paths: Vec<Vec<Op>> = t
        .attestation_paths()
        .into_iter()
        .map(|(p, _)| p.into_iter().cloned().collect())
        .collect();
    let path = paths.pop().unwrap();
    let mut node = &mut t;
    for op in &path {
        node = node.child_mut(op).unwrap();
    }
    assert_eq!(node.msg(), k.as_slice());
    node.merge(upgraded).unwrap();
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_follows_a_chain_of_calendars_in_one_run() {
    let cal = DevCalendar::start();
    let (a_url, a) = fake().await;
    let (b_url, b) = fake().await;
    let (c_url, c) = fake().await;
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let data = b"followed through two calendars\n";
    std::fs::write(work.join("f.txt"), data).unwrap();
    let (proof, c0) = pending_proof(data, &a_url);
    write(&work.join("f.txt.ots"), &proof);

    // A (an aggregator, say) answers c0 with the way to B's pending
    // attestation on c1, and to C's (not whitelisted) on another branch.
    let mut from_a = Timestamp::new(c0.clone()).unwrap();
    let to_b = from_a
        .add_path([Op::append(b"to B".to_vec()).unwrap(), Op::Sha256])
        .unwrap();
    let c1 = to_b.msg().to_vec();
    to_b.add_attestation(Attestation::pending(b_url.clone()).unwrap());
    from_a
        .add_path([Op::append(b"to C".to_vec()).unwrap(), Op::Sha256])
        .unwrap()
        .add_attestation(Attestation::pending(c_url.clone()).unwrap());
    a.replies.lock().unwrap().insert(c0.clone(), from_a);
    // B (a private calendar) answers c1 with the complete proof otsd
    // made of it on devchain.
    let from_b = complete_from_dev(&cal, &c1).await;
    b.replies.lock().unwrap().insert(c1.clone(), from_b);

    let out = ots(
        &[
            "--no-default-whitelist",
            "-l",
            &a_url,
            "-l",
            &b_url,
            "upgrade",
            "f.txt.ots",
        ],
        work,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(has_line(&err, "Success! Timestamp complete"), "{err}");
    assert!(
        has_line(
            &err,
            &format!("Ignoring attestation from calendar {c_url}: Calendar not in whitelist")
        ),
        "{err}"
    );
    assert_eq!(a.asked.lock().unwrap().get(&c0), Some(&1));
    assert_eq!(b.asked.lock().unwrap().get(&c1), Some(&1));
    assert_eq!(a.total() + b.total(), 2, "nothing else asked");
    assert_eq!(c.total(), 0, "the non-whitelisted calendar is never asked");
    // The proof now has all three pending attestations and a Bitcoin one.
    let upgraded = read(&work.join("f.txt.ots"));
    let all = upgraded.timestamp().all_attestations();
    assert!(all
        .iter()
        .any(|(_, a)| matches!(a, Attestation::Bitcoin { .. })));
    assert!(all
        .iter()
        .any(|(_, a)| **a == Attestation::pending(c_url.clone()).unwrap()));

    // And it verifies against devchain's headers.
    let out = ots(
        &[
            "--btc-regtest",
            "--bitcoin-node",
            &cal.rpc_url,
            "verify",
            "f.txt.ots",
        ],
        work,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("Success! Bitcoin block ")),
        "{err}"
    );

    // Without B on the whitelist, A is asked and B's attestation named.
    write(&work.join("g.txt.ots"), &pending_proof(data, &a_url).0);
    let out = ots(
        &[
            "--no-default-whitelist",
            "-l",
            &a_url,
            "upgrade",
            "g.txt.ots",
        ],
        work,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        has_line(
            &err,
            &format!("Ignoring attestation from calendar {b_url}: Calendar not in whitelist")
        ),
        "{err}"
    );
    assert_eq!(b.total(), 1, "B not asked again");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_chain_is_followed_a_bounded_number_of_rounds() {
    let (a_url, a) = fake().await;
    *a.endless.lock().unwrap() = Some(a_url.clone());
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    write(&work.join("e.ots"), &pending_proof(b"e", &a_url).0);
    let out = ots(&["-l", &a_url, "upgrade", "e.ots"], work);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(a.total(), ots::upgrade::MAX_FOLLOW_ROUNDS, "{err}");
    assert!(
        has_line(
            &err,
            &format!(
                "Not following the pending attestations further: at most {} rounds in one run",
                ots::upgrade::MAX_FOLLOW_ROUNDS
            )
        ),
        "{err}"
    );
    assert!(has_line(&err, "Failed! Timestamp not complete"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn many_proofs_are_upgraded_with_one_request_per_commitment() {
    let (url, cal) = fake().await;
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    // Three proofs sharing one commitment (as files stamped together do),
    // and one of their own.
    let (shared, c) = pending_proof(b"shared", &url);
    for name in ["a.ots", "b.ots", "c.ots"] {
        write(&work.join(name), &shared);
    }
    let (own, d) = pending_proof(b"own", &url);
    write(&work.join("d.ots"), &own);
    for commitment in [&c, &d] {
        let mut t = Timestamp::new(commitment.clone()).unwrap();
        t.add_op(Op::Sha256)
            .unwrap()
            .add_attestation(Attestation::Bitcoin { height: 1 });
        cal.replies.lock().unwrap().insert(commitment.clone(), t);
    }
    let out = ots(
        &["-l", &url, "upgrade", "a.ots", "b.ots", "c.ots", "d.ots"],
        work,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        err.lines()
            .filter(|l| *l == "Success! Timestamp complete")
            .count(),
        4,
        "{err}"
    );
    assert_eq!(cal.asked.lock().unwrap().get(&c), Some(&1));
    assert_eq!(cal.asked.lock().unwrap().get(&d), Some(&1));
    assert_eq!(cal.total(), 2);
    for name in ["a.ots", "b.ots", "c.ots", "d.ots"] {
        assert!(ots::upgrade::is_complete(
            read(&work.join(name)).timestamp()
        ));
        assert!(work.join(format!("{name}.bak")).exists());
    }
    // Complete now: upgrading again asks nobody.
    std::fs::remove_file(work.join("a.ots.bak")).unwrap();
    let out = ots(&["-l", &url, "upgrade", "a.ots"], work);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(cal.total(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_progress_bar_on_a_terminal_only() {
    let (url, cal) = fake().await;
    // Slow enough answers that the bar is drawn.
    *cal.delay.lock().unwrap() = Duration::from_millis(400);
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let mut names = Vec::new();
    for i in 0..12 {
        let name = format!("p{i}.ots");
        write(
            &work.join(&name),
            &pending_proof(format!("{i}").as_bytes(), &url).0,
        );
        names.push(name);
    }
    let mut args = vec!["-l".to_string(), url.clone(), "upgrade".into()];
    args.extend(names.iter().cloned());
    // Not a terminal: nothing but the messages.
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ots(&argv, work);
    let err = stderr(&out);
    assert!(!err.contains("asking calendars"), "{err}");
    assert_eq!(cal.total(), 12);
    // On a terminal (a pseudo-terminal from `script`): the bar.
    let command = format!(
        "{} --no-cache {}",
        env!("CARGO_BIN_EXE_ots"),
        args.join(" ")
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(work)
        .env("COLUMNS", "100")
        .env("LINES", "30")
        .output()
        .unwrap();
    let typescript = String::from_utf8_lossy(&out.stdout);
    assert!(typescript.contains("asking calendars"), "{typescript}");
    assert!(typescript.contains("/12"), "{typescript}");
    assert!(
        typescript.contains("Failed! Timestamp not complete"),
        "{typescript}"
    );
    assert_eq!(cal.total(), 24);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_is_shared_with_proofs_that_reach_its_commitment_later() {
    let (a_url, a) = fake().await;
    let (b_url, b) = fake().await;
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    // x.ots is pending at B on c1 directly; y.ots at A on c0, and A's
    // answer leads to the same c1 pending at B.
    let (y, c0) = pending_proof(b"y", &a_url);
    let mut from_a = Timestamp::new(c0.clone()).unwrap();
    let to_b = from_a
        .add_path([Op::append(b"to B".to_vec()).unwrap(), Op::Sha256])
        .unwrap();
    let c1 = to_b.msg().to_vec();
    to_b.add_attestation(Attestation::pending(b_url.clone()).unwrap());
    a.replies.lock().unwrap().insert(c0.clone(), from_a);
    let mut x = Timestamp::new(c1.clone()).unwrap();
    x.add_attestation(Attestation::pending(b_url.clone()).unwrap());
    let x = DetachedTimestampFile::new(HashOp::Sha256, x).unwrap();
    let mut from_b = Timestamp::new(c1.clone()).unwrap();
    from_b
        .add_op(Op::Sha256)
        .unwrap()
        .add_attestation(Attestation::Bitcoin { height: 1 });
    b.replies.lock().unwrap().insert(c1.clone(), from_b);
    write(&work.join("x.ots"), &x);
    write(&work.join("y.ots"), &y);
    let out = ots(
        &["-l", &a_url, "-l", &b_url, "upgrade", "x.ots", "y.ots"],
        work,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(b.asked.lock().unwrap().get(&c1), Some(&1), "{err}");
    assert_eq!(a.total() + b.total(), 2, "{err}");
    for name in ["x.ots", "y.ots"] {
        assert!(
            ots::upgrade::is_complete(read(&work.join(name)).timestamp()),
            "{name}"
        );
    }
}
