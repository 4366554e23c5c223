//! The OpenTimestamps network end to end (issue 12): two public calendars
//! A and B, each with its own wallet, stamping into one shared devchain; a
//! private calendar P with `--upstream A --upstream B` and no wallet,
//! polling them; a second private calendar Q on the same upstreams that
//! never polls (its proofs stay incomplete, so a client must follow the
//! chain itself); aggregators G (in front of P), G2 (in front of A and B)
//! and GQ (in front of Q). Everything runs in this process, each server on
//! its own thread and runtime, on 127.0.0.1 ports chosen at start. Our
//! `ots` stamps through each aggregator; once Bitcoin has confirmed, ONE
//! `ots upgrade` run per proof completes it, and `ots verify` checks it
//! against devchain. With `OTS_REFERENCE_CLIENT` set, the reference client
//! stamps through G and through P, upgrades and verifies too.

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::process::Output;
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use common::{has_line, reference, reference_client, stderr, REFERENCE_SKIPPED};
use devchain::devnode::{DevChain, DevChainConfig};
use ots_bitcoin::{Auth, RpcClient, RpcConfig};
use ots_calendar::{CalendarError, Client, ClientConfig};
use ots_proof::{Attestation, DetachedTimestampFile, Timestamp};
use serde_json::{json, Value};

/// devchain's RPC password.
const PASSWORD: &str = "network-test";
/// Upper bound for a server to start or stop.
const START_STOP_LIMIT: Duration = Duration::from_secs(60);
/// Waits poll this often, at most [`POLLS`] times (two minutes).
const POLL: Duration = Duration::from_millis(200);
const POLLS: usize = 600;
/// How many times the reference client's `upgrade` is run at most.
const REFERENCE_RUNS: usize = 10;

/// A server on its own thread and current-thread runtime (as the `otsd`
/// binary runs), stopped on drop.
struct Server {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: mpsc::Receiver<Result<(), String>>,
}

impl Server {
    /// Runs `serve(listener, shutdown)` on a listener of 127.0.0.1 bound
    /// here, so the URL is known before it starts.
    fn start<F, Fut>(serve: F) -> Server
    where
        F: FnOnce(tokio::net::TcpListener, tokio::sync::oneshot::Receiver<()>) -> Fut
            + Send
            + 'static,
        Fut: Future<Output = Result<(), String>>,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        Server::start_on(url, listener, serve)
    }

    fn start_on<F, Fut>(url: String, listener: std::net::TcpListener, serve: F) -> Server
    where
        F: FnOnce(tokio::net::TcpListener, tokio::sync::oneshot::Receiver<()>) -> Fut
            + Send
            + 'static,
        Fut: Future<Output = Result<(), String>>,
    {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let result = runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                serve(listener, stop_rx).await
            });
            let _ = done_tx.send(result);
        });
        Server {
            url,
            stop: Some(stop_tx),
            done: done_rx,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.done.recv_timeout(START_STOP_LIMIT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) if !std::thread::panicking() => panic!("{} stopped with: {e}", self.url),
            Err(_) if !std::thread::panicking() => panic!("{} did not stop in time", self.url),
            _ => {}
        }
    }
}

/// A calendar in `dir` (initialised naming itself by its URL), run as
/// `otsd -c DIR --aggregation-interval 50 ARGS…` runs it.
fn calendar(dir: &Path, args: &[&str]) -> Server {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    otsd::calendar::Calendar::init(dir, &url, "").unwrap();
    let dir_arg = dir.to_str().unwrap().to_owned();
    let mut all = vec![
        "otsd",
        "-c",
        &dir_arg,
        "--rpc-address",
        "127.0.0.1",
        "--aggregation-interval",
        "50",
    ];
    all.extend_from_slice(args);
    let cli = otsd::config::Cli::try_parse_from(all).unwrap();
    let settings = cli.server.settings(None);
    let dir = dir.to_path_buf();
    Server::start_on(url, listener, move |listener, stop| async move {
        otsd::server::serve(listener, &dir, settings, async {
            let _ = stop.await;
        })
        .await
        .map_err(|e| format!("{e:#}"))
    })
}

/// `otsd aggregate ARGS…` (200 ms rounds).
fn aggregator(args: &[&str]) -> Server {
    let mut all = vec![
        "otsd",
        "aggregate",
        "--interval",
        "200",
        "--http-threads",
        "1",
    ];
    all.extend_from_slice(args);
    let cli = otsd::config::Cli::try_parse_from(all).unwrap();
    let Some(otsd::config::Command::Aggregate(args)) = cli.command else {
        unreachable!("parsed as `otsd aggregate`")
    };
    let settings = args.settings();
    Server::start(move |listener, stop| async move {
        otsd::aggregate::serve(listener, settings, async {
            let _ = stop.await;
        })
        .await
        .map_err(|e| e.to_string())
    })
}

/// A client of `node`'s wallet `wallet` (the node's own calls with none).
fn rpc(node: &str, wallet: Option<&str>) -> RpcClient {
    let mut config = RpcConfig::new(node.to_owned(), Auth::None);
    config.wallet = wallet.map(str::to_owned);
    RpcClient::new(config).unwrap()
}

/// Creates wallet `name` on devchain and funds it from the prefunded one.
async fn funded_wallet(node: &str, name: &str) {
    let _: Value = rpc(node, None)
        .call("createwallet", json!({ "wallet_name": name }))
        .await
        .unwrap();
    let to: String = rpc(node, Some(name))
        .wallet_call("getnewaddress", json!([]))
        .await
        .unwrap();
    for _ in 0..3 {
        let _: Value = rpc(node, Some(devchain::devnode::DEFAULT_WALLET))
            .wallet_call("sendtoaddress", json!([to, 1.0]))
            .await
            .unwrap();
    }
    mine(node).await;
}

/// Mines one block.
async fn mine(node: &str) {
    let to: String = rpc(node, Some(devchain::devnode::DEFAULT_WALLET))
        .wallet_call("getnewaddress", json!([]))
        .await
        .unwrap();
    let _: Value = rpc(node, None)
        .call("generatetoaddress", json!([1, to]))
        .await
        .unwrap();
}

/// Runs our `ots` (a blocking child process) off the runtime.
async fn ots(args: &[&str], cwd: &Path) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let cwd = cwd.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::ots(&args, &cwd)
    })
    .await
    .unwrap()
}

/// Runs the reference client off the runtime.
async fn reference_ots(client: &Path, args: &[&str], cwd: &Path) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (client, cwd) = (client.to_path_buf(), cwd.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        reference(&client, &args, &cwd)
    })
    .await
    .unwrap()
}

fn read(path: &Path) -> DetachedTimestampFile {
    DetachedTimestampFile::deserialize(&std::fs::read(path).unwrap()).unwrap()
}

/// Every pending attestation of `ts`: (calendar URL, commitment).
fn pending(ts: &Timestamp) -> BTreeSet<(String, Vec<u8>)> {
    ts.all_attestations()
        .into_iter()
        .filter_map(|(msg, a)| match a {
            Attestation::Pending { uri } => Some((uri.clone(), msg.to_vec())),
            _ => None,
        })
        .collect()
}

fn has_bitcoin(ts: &Timestamp) -> bool {
    ts.all_attestations()
        .iter()
        .any(|(_, a)| matches!(a, Attestation::Bitcoin { .. }))
}

/// Polls `f` until it gives a value; panics after [`POLLS`] tries.
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..POLLS {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("timed out waiting for {what}");
}

/// What `url` serves for `commitment`: `None` while it has nothing (404).
async fn served(client: &Client, url: &str, commitment: &[u8]) -> Option<Timestamp> {
    match client
        .calendar(url)
        .unwrap()
        .get_timestamp(commitment)
        .await
    {
        Ok(ts) => Some(ts),
        Err(CalendarError::NotFound { .. }) => None,
        Err(e) => panic!("{url}: {e}"),
    }
}

/// `ots verify` against devchain passes for `file` (in `dir`).
async fn verify_ours(node: &str, dir: &Path, file: &str) {
    let out = ots(
        &["--btc-regtest", "--bitcoin-node", node, "verify", file],
        dir,
    )
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{file}: {err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("Success! Bitcoin block ")),
        "{file}: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_through_an_aggregator_and_a_private_calendar_upgrades_in_one_run() {
    let chain = DevChain::start(DevChainConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        rpc_password: Some(PASSWORD.into()),
        prefund: true,
        ..DevChainConfig::default()
    })
    .await
    .unwrap();
    let node = format!("http://{}:{PASSWORD}@{}/", chain.user(), chain.addr());
    funded_wallet(&node, "a").await;
    funded_wallet(&node, "b").await;
    let root = tempfile::tempdir().unwrap();
    let public = |name: &str| {
        calendar(
            &root.path().join(name),
            &[
                "--btc-regtest",
                "--bitcoin-node",
                &node,
                "--btc-wallet",
                name,
                "--btc-min-confirmations",
                "2",
                "--btc-min-tx-interval",
                "0",
                "--btc-poll-interval",
                "0.1",
            ],
        )
    };
    let a = public("a");
    let b = public("b");
    let private = |name: &str, poll: &str| {
        calendar(
            &root.path().join(name),
            &[
                "--no-bitcoin",
                "--upstream",
                &a.url,
                "--upstream",
                &b.url,
                "--upstream-poll-interval",
                poll,
            ],
        )
    };
    let p = private("p", "0.2");
    // Never polls within the test: what it serves stays incomplete.
    let q = private("q", "3600");
    let g = aggregator(&["--upstream", &p.url]);
    let g2 = aggregator(&[
        "--upstream",
        &a.url,
        "--upstream",
        &b.url,
        "--upstream-min",
        "2",
    ]);
    let gq = aggregator(&["--upstream", &q.url]);

    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let stamps = [("x.txt", &g), ("y.txt", &g2), ("z.txt", &gq)];
    for (file, via) in stamps {
        std::fs::write(work.join(file), format!("{file} through {}", via.url)).unwrap();
        let out = ots(&["stamp", "-c", &via.url, "-m", "1", file], work).await;
        assert_eq!(out.status.code(), Some(0), "{file}: {}", stderr(&out));
    }
    let reference_client = reference_client();
    if let Some(client) = &reference_client {
        for (file, via) in [("rg.txt", &g.url), ("rp.txt", &p.url)] {
            std::fs::write(work.join(file), format!("{file}, reference, via {via}")).unwrap();
            let out = reference_ots(client, &["stamp", "-c", via, "-m", "1", file], work).await;
            assert!(out.status.success(), "{file}: {}", stderr(&out));
        }
    }
    let files: Vec<&str> = match reference_client {
        Some(_) => vec!["x.txt", "y.txt", "z.txt", "rg.txt", "rp.txt"],
        None => vec!["x.txt", "y.txt", "z.txt"],
    };

    // The shape of what the aggregators answered: the way to P's (or Q's)
    // pending attestation only, or to both A's and B's.
    let names =
        |ts: &Timestamp| -> BTreeSet<String> { pending(ts).into_iter().map(|(u, _)| u).collect() };
    let x = read(&work.join("x.txt.ots"));
    assert_eq!(names(x.timestamp()), BTreeSet::from([p.url.clone()]));
    let y = read(&work.join("y.txt.ots"));
    assert_eq!(
        names(y.timestamp()),
        BTreeSet::from([a.url.clone(), b.url.clone()])
    );
    let z = read(&work.join("z.txt.ots"));
    assert_eq!(names(z.timestamp()), BTreeSet::from([q.url.clone()]));

    // The commitments A and B must complete: those in the proofs, and
    // those P and Q submitted for theirs (once they replied).
    let client = Client::new(&ClientConfig::default()).unwrap();
    let mut at_public = BTreeSet::new();
    let mut at_p = BTreeSet::new();
    for file in &files {
        let proof = read(&work.join(format!("{file}.ots")));
        for (url, msg) in pending(proof.timestamp()) {
            if url == a.url || url == b.url {
                at_public.insert((url, msg));
                continue;
            }
            assert!(url == p.url || url == q.url, "{file}: {url}");
            let upstream = until("the private calendar's upstream replies", || async {
                let ts = served(&client, &url, &msg).await?;
                let up = pending(&ts);
                (up.len() == 2).then_some(up)
            })
            .await;
            let upstream_names: BTreeSet<_> = upstream.iter().map(|(u, _)| u.clone()).collect();
            assert_eq!(
                upstream_names,
                BTreeSet::from([a.url.clone(), b.url.clone()])
            );
            at_public.extend(upstream);
            if url == p.url {
                at_p.insert(msg);
            }
        }
    }
    // Mine until A and B have confirmed every one of them.
    let mut polls = 0;
    until("A and B to confirm", || {
        polls += 1;
        let (at_public, client, node) = (&at_public, &client, &node);
        async move {
            if polls % 3 == 0 {
                mine(node).await;
            }
            for (url, msg) in at_public {
                let ts = served(client, url, msg).await?;
                assert!(has_bitcoin(&ts), "{url} served an incomplete proof");
            }
            Some(())
        }
    })
    .await;
    // P polls its upstreams and completes its own.
    for msg in &at_p {
        until("P to complete from its upstreams", || async {
            let ts = served(&client, &p.url, msg).await?;
            has_bitcoin(&ts).then_some(())
        })
        .await;
    }
    // Q has not polled: still incomplete (so z.txt's upgrade below follows
    // Q's answer on to A and B itself).
    let z_at_q = pending(z.timestamp()).into_iter().next().unwrap().1;
    let from_q = served(&client, &q.url, &z_at_q).await.unwrap();
    assert!(!has_bitcoin(&from_q), "Q polled after all");

    // ONE `ots upgrade` per proof completes it; only the local calendars
    // on the whitelist.
    let whitelist = [
        "--no-default-whitelist",
        "-l",
        &p.url,
        "-l",
        &q.url,
        "-l",
        &a.url,
        "-l",
        &b.url,
    ];
    for file in ["x.txt", "y.txt", "z.txt"] {
        let proof = format!("{file}.ots");
        let mut args = whitelist.to_vec();
        args.extend(["upgrade", &proof]);
        let out = ots(&args, work).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{file}: {err}");
        assert!(
            has_line(&err, "Success! Timestamp complete"),
            "{file}: {err}"
        );
        assert!(has_bitcoin(read(&work.join(&proof)).timestamp()));
        verify_ours(&node, work, &proof).await;
    }
    // z.txt's was followed through Q's incomplete answer: it now names A
    // and B under Q.
    let z = read(&work.join("z.txt.ots"));
    assert_eq!(
        names(z.timestamp()),
        BTreeSet::from([q.url.clone(), a.url.clone(), b.url.clone()])
    );

    match &reference_client {
        None => eprintln!("reference client part {REFERENCE_SKIPPED}"),
        Some(client) => {
            for file in ["rg.txt", "rp.txt"] {
                let proof = format!("{file}.ots");
                let mut runs = 0;
                let mut last = String::new();
                let mut upgraded = false;
                while runs < REFERENCE_RUNS {
                    runs += 1;
                    // It keeps one backup and will not overwrite it.
                    let _ = std::fs::remove_file(work.join(format!("{proof}.bak")));
                    let out = reference_ots(
                        client,
                        &["-l", &p.url, "-l", &a.url, "-l", &b.url, "upgrade", &proof],
                        work,
                    )
                    .await;
                    last = stderr(&out);
                    if out.status.success() {
                        upgraded = true;
                        break;
                    }
                }
                assert!(upgraded, "reference: {file} after {runs} runs: {last}");
                eprintln!("reference client: {file} complete after {runs} upgrade run(s)");
                let out = reference_ots(
                    client,
                    &["--btc-regtest", "--bitcoin-node", &node, "verify", &proof],
                    work,
                )
                .await;
                let err = stderr(&out);
                assert!(
                    err.contains("Success! Bitcoin block"),
                    "reference: {file}: {err}"
                );
                verify_ours(&node, work, &proof).await;
            }
        }
    }
    // Stopped front to back (each waits for its thread), off the runtime
    // that serves devchain.
    tokio::task::spawn_blocking(move || drop((g, g2, gq, p, q, a, b)))
        .await
        .unwrap();
    chain.shutdown().await;
}
