//! The runner's failure paths on the fake node (`fake.rs`), over a real
//! journal and store in a temporary calendar: outages of every kind pause
//! stamping once and resume it, a disk error of the state file or a batch
//! the store refuses is not called a node outage, a broadcast during
//! warm-up is sent again, a failed completion is retried, a bad change
//! address is its own error, a reorg is noticed (while running, and while
//! the calendar was stopped), and warnings are shown once.
// One journal range is a set with one interval.
#![allow(clippy::single_range_in_vec_init)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bitcoin::Amount;
use ots_proof::Attestation;
use ots_stamper::stamper::{Config, Status};

use super::fake::{wallet_script, FakeNode, Fault};
use super::runner::{Runner, RunnerConfig, StepError, Transition};
use super::view::{chain_info_at, Pause, View};
use super::{persist, STAMPER_STATE_FILE};
use crate::calendar::{Calendar, Commitment, KeyDeriver};
use crate::journal::{Journal, JournalReader, Verify};
use crate::status::PendingIndex;
use crate::store::Store;

/// What the runner logs, captured for the test's thread.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        LogWriter(self.0.clone())
    }
}

impl Log {
    /// Captures this thread's log until the guard drops (the tests run on
    /// a current-thread runtime, so the runner logs on this thread).
    fn capture() -> (Log, tracing::subscriber::DefaultGuard) {
        let log = Log::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_ansi(false)
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        (log, guard)
    }

    fn count(&self, needle: &str) -> usize {
        let bytes = self.0.lock().unwrap();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

/// A calendar with a journal and a store, a fake node, and a runner.
struct Cal {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    journal: Journal,
    reader: JournalReader,
    store: Arc<Store>,
    pending: Arc<PendingIndex>,
    deriver: KeyDeriver,
    node: FakeNode,
    commitments: Vec<Commitment>,
}

fn config() -> Config {
    Config {
        min_confirmations: 2,
        min_tx_interval_secs: 0,
        relay_feerate: 1_000,
        max_fee: Amount::from_sat(100_000),
        max_pending: 1_000,
    }
}

impl Cal {
    fn new(funded: bool) -> Cal {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("calendar");
        Calendar::init(&dir, "https://calendar.invalid", "").unwrap();
        let key = Calendar::open(&dir).unwrap().key;
        let (journal, reader, _) = Journal::open(&dir, &key, Verify::All).unwrap();
        let store = Arc::new(Store::open(&dir, reader.clone()).unwrap());
        let pending = Arc::new(PendingIndex::new(reader.clone()));
        Cal {
            _dir: temp,
            dir,
            journal,
            reader,
            store,
            pending,
            deriver: KeyDeriver::new(key),
            node: FakeNode::new(funded),
            commitments: Vec::new(),
        }
    }

    /// Journals `n` commitments, pending.
    fn post(&mut self, n: usize) {
        let records: Vec<Commitment> = (0..n)
            .map(|i| {
                let tip = [(self.commitments.len() + i) as u8 + 1; 32];
                self.deriver.commitment(1_700_000_000, &tip)
            })
            .collect();
        let first = self.journal.append(&records).unwrap();
        for (i, c) in records.iter().enumerate() {
            self.pending.insert(c, first + i as u64);
        }
        self.commitments.extend(records);
    }

    fn runner_at(&self, state_path: PathBuf) -> (Runner<FakeNode>, Arc<RwLock<View>>) {
        Runner::new(
            RunnerConfig {
                stamper: config(),
                state_path,
                poll: Duration::from_millis(10),
                conf_target: 2,
            },
            self.node.clone(),
            self.reader.clone(),
            self.store.clone(),
            self.pending.clone(),
        )
        .unwrap()
    }

    fn runner(&self) -> (Runner<FakeNode>, Arc<RwLock<View>>) {
        self.runner_at(self.dir.join(STAMPER_STATE_FILE))
    }

    /// Whether every commitment has its complete proof, out of the pending
    /// index, attested at `height`.
    fn all_complete_at(&self, height: u64) -> bool {
        self.commitments.iter().all(|c| {
            let Some(proof) = self.store.get(c).unwrap() else {
                return false;
            };
            self.pending.lookup(c).is_none()
                && proof
                    .all_attestations()
                    .iter()
                    .any(|(_, a)| **a == Attestation::Bitcoin { height })
        })
    }
}

fn status(view: &Arc<RwLock<View>>, position: u64) -> Status {
    view.read().unwrap().status(position)
}

fn paused(view: &Arc<RwLock<View>>) -> Option<Pause> {
    view.read().unwrap().paused.as_ref().map(|p| p.0)
}

fn warnings(view: &Arc<RwLock<View>>) -> Vec<String> {
    chain_info_at(&view.read().unwrap(), 0).warnings
}

#[tokio::test]
async fn an_outage_of_any_kind_pauses_once_and_resumes_when_the_node_answers() {
    let (log, _guard) = Log::capture();
    let mut cal = Cal::new(true);
    cal.post(2);
    let (mut runner, view) = cal.runner();
    assert_eq!(runner.pass().await, None);
    let sent = cal.node.mempool();
    assert_eq!(sent.len(), 1, "the round's transaction went out");
    let faults = [
        Fault::Timeout,
        Fault::Warmup,
        Fault::Http500,
        Fault::Garbage,
    ];
    for (n, fault) in faults.into_iter().enumerate() {
        cal.node.down(fault);
        assert_eq!(
            runner.pass().await,
            Some(Transition::Paused(Pause::Node)),
            "{fault:?}"
        );
        assert_eq!(runner.pass().await, None, "{fault:?}: said once");
        assert_eq!(log.count("stamper paused"), n + 1, "{fault:?}");
        assert_eq!(paused(&view), Some(Pause::Node));
        let shown = warnings(&view);
        assert!(
            shown[0].starts_with("the Bitcoin node is unreachable, stamping is paused"),
            "{shown:?}"
        );
        // Digests keep coming while it is down.
        cal.post(1);
        cal.node.up();
        assert_eq!(
            runner.pass().await,
            Some(Transition::Resumed(Pause::Node)),
            "{fault:?}"
        );
        assert_eq!(log.count("reachable again"), n + 1);
        assert_eq!(paused(&view), None);
        assert!(warnings(&view).is_empty());
        // The round's transaction was sent again (a node that was down may
        // have lost its mempool), still spending the same output.
        assert_eq!(cal.node.broadcasts().last(), sent.last());
        assert_eq!(cal.node.mempool(), sent);
    }
    assert_eq!(log.count("not the node's"), 0);
}

#[tokio::test]
async fn a_node_restarted_with_new_credentials_is_an_outage_until_its_cookie_is_read() {
    let (log, _guard) = Log::capture();
    let mut cal = Cal::new(true);
    cal.post(2);
    let (mut runner, view) = cal.runner();
    runner.pass().await;
    let sent = cal.node.mempool();
    // Restarted, its new cookie already written: the client re-reads it
    // after the first 401, and nothing pauses. It lost its mempool, so the
    // transaction goes out again at the next restart of a step only.
    cal.node.restart_with_new_credentials(true);
    assert_eq!(runner.pass().await, None);
    // Restarted, its cookie not written yet: 401s, an outage of the node.
    cal.node.restart_with_new_credentials(false);
    assert_eq!(runner.pass().await, Some(Transition::Paused(Pause::Node)));
    let text = view.read().unwrap().paused.clone().unwrap().1;
    assert!(text.contains("HTTP 401"), "{text}");
    assert_eq!(runner.pass().await, None);
    cal.node.write_cookie();
    assert_eq!(runner.pass().await, Some(Transition::Resumed(Pause::Node)));
    assert_eq!(log.count("reachable again"), 1);
    assert_eq!(cal.node.mempool(), sent, "sent again after the outage");
}

#[tokio::test]
async fn a_state_file_that_cannot_be_written_is_not_called_a_node_outage() {
    let (log, _guard) = Log::capture();
    let mut cal = Cal::new(true);
    cal.post(2);
    let state_dir = cal.dir.join("state");
    std::fs::create_dir(&state_dir).unwrap();
    let (mut runner, view) = cal.runner_at(state_dir.join(STAMPER_STATE_FILE));
    assert_eq!(runner.pass().await, None);
    // The state's directory goes away (a disk unmounted, a mistaken
    // clean-up): the next change of state cannot be saved.
    std::fs::remove_dir_all(&state_dir).unwrap();
    cal.node.mine_empty();
    assert_eq!(
        runner.pass().await,
        Some(Transition::Paused(Pause::Calendar))
    );
    assert!(matches!(
        runner.step().await,
        Err(StepError::Persist(persist::PersistError::Io { .. }))
    ));
    assert_eq!(log.count("stamper paused"), 0, "not the node");
    assert_eq!(log.count("not the node's"), 1);
    let shown = warnings(&view);
    assert!(
        shown[0].starts_with("stamping is paused: stamper state"),
        "{shown:?}"
    );
    std::fs::create_dir(&state_dir).unwrap();
    assert_eq!(
        runner.pass().await,
        Some(Transition::Resumed(Pause::Calendar))
    );
    assert_eq!(log.count("stamping resumes"), 1);
    assert_eq!(log.count("reachable again"), 0);
    assert!(state_dir.join(STAMPER_STATE_FILE).exists());
}

#[tokio::test]
async fn a_broadcast_refused_during_warmup_is_sent_again_unchanged() {
    let (log, _guard) = Log::capture();
    let mut cal = Cal::new(true);
    cal.post(2);
    let (mut runner, _view) = cal.runner();
    cal.node.fail("sendrawtransaction", 0, 1, Fault::Warmup);
    assert_eq!(runner.pass().await, Some(Transition::Paused(Pause::Node)));
    assert!(cal.node.mempool().is_empty());
    // Signed and saved before the broadcast: a restart or a resume sends
    // this very transaction, never a second spend.
    let saved = persist::load(&cal.dir.join(STAMPER_STATE_FILE)).unwrap();
    let attempt = saved.round.unwrap().attempt.unwrap();
    assert!(attempt.signed);
    assert_eq!(runner.pass().await, Some(Transition::Resumed(Pause::Node)));
    assert_eq!(cal.node.mempool(), vec![attempt.tx.compute_txid()]);
    assert_eq!(cal.node.calls("signrawtransactionwithwallet"), 1);
    assert_eq!(log.count("timestamp transaction sent"), 1);
}

#[tokio::test]
async fn a_completion_that_fails_is_retried() {
    let (_log, _guard) = Log::capture();
    let mut cal = Cal::new(true);
    cal.post(3);
    let (mut runner, view) = cal.runner();
    runner.pass().await;
    let txid = cal.node.mempool()[0];
    let mined_in = cal.node.mine();
    assert_eq!(runner.pass().await, None);
    assert_eq!(
        status(&view, 0),
        Status::Mined {
            txid,
            waiting_for: 1
        }
    );
    // Final at the next block, but the node no longer serves the block
    // that mined it.
    cal.node.forget_block(mined_in, true);
    cal.node.mine_empty();
    assert_eq!(
        runner.pass().await,
        Some(Transition::Paused(Pause::Calendar))
    );
    assert!(view
        .read()
        .unwrap()
        .paused
        .clone()
        .unwrap()
        .1
        .contains("is gone"));
    assert!(!cal.all_complete_at(1));
    // Served again, but the node fails the next getblock: still paused,
    // now the node's fault.
    cal.node.forget_block(mined_in, false);
    cal.node.fail("getblock", 0, 1, Fault::Http500);
    assert_eq!(runner.pass().await, Some(Transition::Paused(Pause::Node)));
    assert!(!cal.all_complete_at(1));
    // And then it completes.
    assert_eq!(runner.pass().await, Some(Transition::Resumed(Pause::Node)));
    assert!(cal.all_complete_at(1));
    assert!(runner.stamper.state().mined.is_empty());
    assert_eq!(runner.stamper.state().history.entries.len(), 1);
    assert_eq!(status(&view, 0), Status::Pending, "no longer waiting");
}

#[tokio::test]
async fn a_bad_change_address_is_its_own_error() {
    let (_log, _guard) = Log::capture();
    let mut cal = Cal::new(true);
    cal.post(2);
    let (mut runner, view) = cal.runner();
    cal.node.set_change_address("bcrt1-not-an-address");
    match runner.step().await {
        Err(e @ StepError::BadChangeAddress { .. }) => {
            assert_eq!(e.pause(), Pause::Calendar);
            assert!(e.to_string().contains("bcrt1-not-an-address"), "{e}");
        }
        other => panic!("expected a bad change address, got {other:?}"),
    }
    assert_eq!(
        runner.pass().await,
        Some(Transition::Paused(Pause::Calendar))
    );
    assert!(cal.node.mempool().is_empty());
    let shown = warnings(&view);
    assert!(shown[0].contains("unusable change address"), "{shown:?}");
    cal.node.set_change_address(
        &bitcoin::Address::from_script(&wallet_script(), bitcoin::Network::Regtest)
            .unwrap()
            .to_string(),
    );
    assert_eq!(
        runner.pass().await,
        Some(Transition::Resumed(Pause::Calendar))
    );
    assert_eq!(cal.node.mempool().len(), 1);
}

#[tokio::test]
async fn a_reorg_of_the_transactions_block_is_detected() {
    let (log, _guard) = Log::capture();
    let mut cal = Cal::new(true);
    cal.post(2);
    let (mut runner, view) = cal.runner();
    runner.pass().await;
    let txid = cal.node.mempool()[0];
    cal.node.mine();
    runner.pass().await;
    assert_eq!(
        status(&view, 1),
        Status::Mined {
            txid,
            waiting_for: 1
        }
    );
    // Its block is replaced by a longer branch without it.
    cal.node.disconnect_tip();
    cal.node.mine_empty();
    cal.node.mine_empty();
    assert_eq!(runner.pass().await, None);
    assert_eq!(log.count("chain reorganisation"), 1);
    assert_eq!(status(&view, 1), Status::Pending);
    assert!(runner.stamper.state().mined.is_empty());
    // Back in the round, and bumped on the new branch: one transaction,
    // spending the same output.
    let mempool = cal.node.mempool();
    assert_eq!(mempool.len(), 1, "{mempool:?}");
    assert_ne!(mempool[0], txid, "replaced by a bump");
    let round = runner.stamper.state().round.clone().unwrap();
    assert_eq!(round.versions[0].txid, txid);
    assert_eq!(round.versions.last().unwrap().txid, mempool[0]);
    // Mined on the new branch: complete there.
    cal.node.mine();
    cal.node.mine_empty();
    runner.pass().await;
    assert!(cal.all_complete_at(3));
}

#[tokio::test]
async fn warnings_are_shown_once_until_a_transaction_goes_out() {
    const SAID: &str = "the wallet has no confirmed output";
    let (log, _guard) = Log::capture();
    let mut cal = Cal::new(false);
    cal.post(2);
    let (mut runner, view) = cal.runner();
    for _ in 0..3 {
        assert_eq!(runner.pass().await, None);
        cal.node.mine_empty();
    }
    assert_eq!(log.count(SAID), 1, "logged once");
    let shown = warnings(&view);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(shown[0].starts_with(SAID));
    assert!(cal.node.mempool().is_empty());
    // Funded: the round goes out at the next block, and the warning goes.
    cal.node.fund(500_000);
    cal.node.mine_empty();
    runner.pass().await;
    assert_eq!(cal.node.mempool().len(), 1);
    assert!(warnings(&view).is_empty());
    assert_eq!(log.count("timestamp transaction sent"), 1);
}

#[tokio::test]
async fn a_reorg_while_the_calendar_was_stopped_is_detected_at_start() {
    let (log, _guard) = Log::capture();
    let mut cal = Cal::new(true);
    cal.post(2);
    let (mut runner, _view) = cal.runner();
    runner.pass().await;
    let txid = cal.node.mempool()[0];
    cal.node.mine();
    runner.pass().await;
    assert_eq!(runner.stamper.state().mined.len(), 1);
    drop(runner);
    // Stopped; meanwhile the block that mined it is replaced.
    cal.node.disconnect_tip();
    cal.node.mine_empty();
    let (mut runner, view) = cal.runner();
    assert_eq!(runner.pass().await, None);
    assert_eq!(log.count("block left the chain"), 1);
    assert_eq!(status(&view, 0), Status::Pending);
    assert!(runner.stamper.state().mined.is_empty());
    let round = runner.stamper.state().round.clone().unwrap();
    assert_eq!(round.versions[0].txid, txid, "back in the round");
}

#[tokio::test]
async fn a_batch_the_store_refuses_pauses_as_the_calendars_fault() {
    let (log, _guard) = Log::capture();
    let mut cal = Cal::new(true);
    cal.post(2);
    // A store over another calendar's journal: the stamper's commitments
    // are not its records, so it refuses the batch and stores nothing.
    let mut other = Cal::new(false);
    other.post(2);
    let (mut runner, view) = Runner::new(
        RunnerConfig {
            stamper: config(),
            state_path: cal.dir.join(STAMPER_STATE_FILE),
            poll: Duration::from_millis(10),
            conf_target: 2,
        },
        cal.node.clone(),
        cal.reader.clone(),
        other.store.clone(),
        cal.pending.clone(),
    )
    .unwrap();
    runner.pass().await;
    cal.node.mine();
    cal.node.mine_empty();
    assert_eq!(
        runner.pass().await,
        Some(Transition::Paused(Pause::Calendar))
    );
    assert!(matches!(
        runner.step().await,
        Err(StepError::Store(crate::store::StoreError::BadBatch(_)))
    ));
    assert_eq!(log.count("not the node's"), 1);
    assert_eq!(log.count("stamper paused"), 0);
    assert!(other.store.is_empty().unwrap());
    assert_eq!(runner.stamper.state().mined.len(), 1, "kept, to retry");
    let shown = warnings(&view);
    assert!(
        shown[0].starts_with("stamping is paused: proof store"),
        "{shown:?}"
    );
    // Nothing left the pending index either.
    assert!(cal
        .commitments
        .iter()
        .all(|c| cal.pending.lookup(c).is_some()));
}

/// The fee of the one transaction in the fake node's mempool: the wallet's
/// one output of `FUNDS_SATS` less its outputs.
fn mempool_fee(cal: &Cal) -> (bitcoin::Txid, u64) {
    let txs = cal.node.mempool_txs();
    assert_eq!(txs.len(), 1, "{txs:?}");
    let out: u64 = txs[0].output.iter().map(|o| o.value.to_sat()).sum();
    (txs[0].compute_txid(), super::fake::FUNDS_SATS - out)
}

#[tokio::test]
async fn each_bump_follows_a_fresh_estimate_or_falls_back_to_the_bip125_minimum() {
    let (_log, _guard) = Log::capture();
    let mut cal = Cal::new(true);
    cal.post(2);
    let (mut runner, view) = cal.runner();
    runner.pass().await;
    // The first version at the fake's 2 sat/vB estimate.
    let (_, first) = mempool_fee(&cal);
    let vsize = runner.stamper.state().round.as_ref().unwrap().versions[0].vsize;
    assert_eq!(first, 2 * vsize);
    let info = chain_info_at(&view.read().unwrap(), 0);
    assert_eq!(info.fee_rule.as_deref(), Some("estimate"));

    // The market rises to 30 sat/vB: the next block's bump pays it, far
    // above the BIP125 minimum.
    cal.node.set_estimate(Some(0.000_3));
    cal.node.mine_empty();
    runner.pass().await;
    let (txid, fee) = mempool_fee(&cal);
    assert_eq!(fee, 30 * vsize);
    let info = chain_info_at(&view.read().unwrap(), 0);
    assert_eq!(info.most_recent_tx, Some(txid.to_string()));
    assert_eq!(info.fee_rule.as_deref(), Some("estimate"));
    assert_eq!(info.fee_rate, Some(30.0));
    assert!(
        info.fee_reason
            .as_deref()
            .unwrap()
            .contains("within 2 blocks (30.0 sat/vB)"),
        "{info:?}"
    );

    // The node loses its estimate: the BIP125 minimum, old fee plus the
    // 1 sat/vB relay fee for its size.
    cal.node.set_estimate(None);
    cal.node.mine_empty();
    runner.pass().await;
    let (_, after) = mempool_fee(&cal);
    assert_eq!(after, fee + vsize);
    let info = chain_info_at(&view.read().unwrap(), 0);
    assert_eq!(info.fee_rule.as_deref(), Some("no_estimate"));
    assert!(
        info.fee_reason
            .as_deref()
            .unwrap()
            .starts_with("the BIP125 minimum"),
        "{info:?}"
    );
}

/// Every commitment of `cal` has a served proof whose Bitcoin attestation
/// verifies against the fake node's best chain.
async fn all_verify_on_best_chain(cal: &Cal) -> bool {
    use super::node::ChainSource;
    for c in &cal.commitments {
        let Some(proof) = cal.store.get(c).unwrap() else {
            return false;
        };
        let attested = proof
            .all_attestations()
            .into_iter()
            .find_map(|(msg, a)| match a {
                Attestation::Bitcoin { height } => Some((msg.to_vec(), *height)),
                _ => None,
            });
        let Some((msg, height)) = attested else {
            return false;
        };
        let hash = cal.node.block_hash(height).await.unwrap().unwrap();
        let block = cal.node.block(&hash).await.unwrap().unwrap();
        if ots_proof::verify::verify_bitcoin_header(&msg, &block.header).is_err() {
            return false;
        }
    }
    true
}

/// A calendar whose 2 commitments completed at height 1 (2
/// confirmations), then 2 more blocks: the tip is at 4.
async fn completed_then_buried(cal: &mut Cal) -> Runner<FakeNode> {
    cal.post(2);
    let (mut runner, _view) = cal.runner();
    runner.pass().await;
    cal.node.mine();
    runner.pass().await;
    cal.node.mine_empty();
    runner.pass().await;
    assert!(cal.all_complete_at(1));
    cal.node.mine_empty();
    cal.node.mine_empty();
    runner.pass().await;
    assert_eq!(runner.stamper.state().completed.len(), 1);
    runner
}

/// Issue 17: a reorg of depth min_confirmations + 2 takes the completed
/// transaction's block away. The proofs are withdrawn (GET would get
/// none, and the commitments are pending again, not "not found"), it is
/// logged, shown and counted, and the commitments end with proofs that
/// verify against the new best chain.
#[tokio::test]
async fn a_reorg_deeper_than_the_confirmations_withdraws_and_restamps() {
    let (log, _guard) = Log::capture();
    let mut cal = Cal::new(true);
    let mut runner = completed_then_buried(&mut cal).await;
    let view = runner.view.clone();
    // Blocks 1..=4 replaced by a longer branch of 5.
    for _ in 0..4 {
        cal.node.disconnect_tip();
    }
    for _ in 0..5 {
        cal.node.mine_empty();
    }
    assert_eq!(runner.pass().await, None);
    assert_eq!(log.count("proofs are withdrawn"), 1);
    assert!(cal.store.is_withdrawn(0));
    for (position, c) in cal.commitments.iter().enumerate() {
        assert!(cal.store.get(c).unwrap().is_none(), "no proof served");
        assert_eq!(cal.pending.lookup(c), Some(position as u64), "pending");
    }
    assert_eq!(status(&view, 0), Status::Pending);
    let info = chain_info_at(&view.read().unwrap(), super::runner::now());
    assert_eq!(info.reorged_completed_total, Some(1));
    assert!(
        info.warnings
            .iter()
            .any(|w| w.contains("reorganisation deeper than 2")),
        "{info:?}"
    );
    let state = runner.stamper.state();
    assert!(state.reorged[0].withdrawn && state.completed.is_empty());
    // Stamped again on the new branch (the old transaction is back in the
    // mempool too): complete, verifying against the best chain.
    for _ in 0..3 {
        cal.node.mine();
        runner.pass().await;
    }
    assert!(all_verify_on_best_chain(&cal).await);
    assert!(cal
        .commitments
        .iter()
        .all(|c| cal.pending.lookup(c).is_none()));
}

/// The same reorg while the calendar was stopped: seen at start from the
/// completed transaction's block.
#[tokio::test]
async fn a_deep_reorg_while_the_calendar_was_stopped_is_seen_at_start() {
    let (log, _guard) = Log::capture();
    let mut cal = Cal::new(true);
    let runner = completed_then_buried(&mut cal).await;
    drop(runner);
    for _ in 0..4 {
        cal.node.disconnect_tip();
    }
    for _ in 0..5 {
        cal.node.mine_empty();
    }
    let (mut runner, _view) = cal.runner();
    runner.pass().await;
    assert_eq!(log.count("proofs are withdrawn"), 1);
    assert!(cal.store.get(&cal.commitments[0]).unwrap().is_none());
    for _ in 0..3 {
        cal.node.mine();
        runner.pass().await;
    }
    assert!(all_verify_on_best_chain(&cal).await);
}

/// A block confirms the round's transaction while its replacement is being
/// made (after the runner looked at the chain, before the wallet signs):
/// the wallet cannot sign for an output the chain has spent (Core's "Input
/// not found or already spent"). The runner pauses, then at the next pass
/// finds the transaction mined, drops the replacement (it was never sent)
/// and completes: the unsigned replacement is not retried before the chain
/// is looked at, which would fail the same way forever.
#[tokio::test]
async fn a_version_mined_while_its_replacement_is_signed_is_found_and_completed() {
    let (_log, _guard) = Log::capture();
    let mut cal = Cal::new(true);
    cal.post(2);
    let (mut runner, view) = cal.runner();
    runner.pass().await;
    let first = cal.node.mempool()[0];
    cal.node.mine_empty();
    cal.node.mine_before("signrawtransactionwithwallet");
    assert_eq!(
        runner.pass().await,
        Some(Transition::Paused(Pause::Node)),
        "the replacement cannot be signed"
    );
    let height = {
        use super::node::ChainSource;
        cal.node.block_count().await.unwrap()
    };
    assert_eq!(runner.pass().await, Some(Transition::Resumed(Pause::Node)));
    assert_eq!(
        status(&view, 1),
        Status::Mined {
            txid: first,
            waiting_for: 1
        }
    );
    assert!(runner.stamper.state().round.is_none());
    assert!(cal.node.mempool().is_empty(), "no replacement was sent");
    cal.node.mine_empty();
    runner.pass().await;
    assert!(cal.all_complete_at(height));
}
