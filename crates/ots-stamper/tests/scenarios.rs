//! The stamper's decisions, event by event, without a node: rounds, fee
//! bumps, rejections, the fee cap, confirmations, reorgs, restarts.
// Lists of one journal range are sets with one interval.
#![allow(clippy::single_range_in_vec_init)]

use bitcoin::hashes::Hash;
use bitcoin::{Amount, BlockHash, OutPoint, ScriptBuf, Transaction, Txid};
use ots_stamper::fee::{FeeChoice, FeeRule};
use ots_stamper::stamper::{
    Action, BroadcastResult, Config, FundingOffer, Stamper, State, Status, Utxo, Warning,
};
use ots_stamper::tx::op_return;

const RELAY: u64 = 1_000; // 1 sat/vB

fn config() -> Config {
    Config {
        min_confirmations: 2,
        min_tx_interval_secs: 600,
        relay_feerate: RELAY,
        max_fee: Amount::from_sat(100_000),
        max_pending: 1_000,
    }
}

fn wallet_script() -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([3; 20]))
}

fn utxo(value: u64, confirmations: u64, n: u32) -> Utxo {
    Utxo {
        outpoint: OutPoint::new(Txid::from_byte_array([n as u8; 32]), n),
        value: Amount::from_sat(value),
        script: wallet_script(),
        confirmations,
    }
}

/// What the runtime would gather: these outputs, this estimate, a change
/// script of the wallet's, the height and the tip.
fn offer(utxos: &[Utxo], feerate: Option<u64>, height: u64, tip: [u8; 32]) -> FundingOffer {
    FundingOffer {
        utxos: utxos.to_vec(),
        feerate,
        change: wallet_script(),
        height,
        tip,
    }
}

fn block(n: u8) -> BlockHash {
    BlockHash::from_byte_array([n; 32])
}

fn only<T: std::fmt::Debug>(mut v: Vec<T>) -> T {
    assert_eq!(v.len(), 1, "{v:?}");
    v.remove(0)
}

/// A block, then the tick that follows once the runtime has caught up.
fn block_then_tick(
    s: &mut Stamper,
    now: u64,
    height: u64,
    hash: BlockHash,
    txids: &[Txid],
    journal_len: u64,
) -> Vec<Action> {
    let mut actions = s.on_block(now, height, hash, txids);
    actions.extend(s.on_tick(now, journal_len));
    actions
}

fn sign_of(action: Action) -> Transaction {
    match action {
        Action::Sign(tx) => tx,
        other => panic!("expected Sign, got {other:?}"),
    }
}

/// Starts a round over `journal_len` commitments and gets its first version
/// broadcast; returns the stamper and the version's transaction.
fn first_version(journal_len: u64) -> (Stamper, Transaction) {
    let mut s = Stamper::new(config(), State::default());
    assert_eq!(
        only(s.on_tick(1_000, journal_len)),
        Action::Fund(vec![0..journal_len])
    );
    let tx = sign_of(only(s.on_funding(
        1_000,
        vec![0..journal_len],
        offer(
            &[
                utxo(50_000, 3, 1),
                utxo(90_000, 1, 2),
                utxo(10_000_000, 0, 3),
            ],
            Some(2_000),
            100,
            [7; 32],
        ),
    )));
    assert_eq!(only(s.on_signed(tx.clone())), Action::Broadcast(tx.clone()));
    assert!(s.on_broadcast(1_000, BroadcastResult::Accepted).is_empty());
    (s, tx)
}

#[test]
fn a_round_spends_the_largest_confirmed_output_at_the_estimated_rate() {
    let (s, tx) = first_version(3);
    // The unconfirmed 10 BTC output is not used; the largest confirmed is.
    assert_eq!(tx.input[0].previous_output, utxo(90_000, 1, 2).outpoint);
    assert_eq!(tx.output[0].script_pubkey, op_return(&[7; 32]));
    // 2 sat/vB × 153 vB.
    assert_eq!(tx.output[1].value, Amount::from_sat(90_000 - 306));
    assert_eq!(tx.lock_time.to_consensus_u32(), 100);
    assert_eq!(s.state().journal_end, 3);
    assert_eq!(s.pending(5), vec![3..5]);
    assert_eq!(s.status(1), Status::Pending);
}

#[test]
fn nothing_to_do_before_time_or_without_commitments() {
    let mut s = Stamper::new(config(), State::default());
    assert!(s.on_tick(1_000, 0).is_empty());
    let state = State {
        next_round_at: 2_000,
        ..State::default()
    };
    let mut s = Stamper::new(config(), state);
    assert!(s.on_tick(1_999, 10).is_empty());
    assert!(!s.on_tick(2_000, 10).is_empty());
    // Asked once until answered.
    assert!(s.on_tick(2_001, 10).is_empty());
}

#[test]
fn max_pending_limits_a_round() {
    let mut s = Stamper::new(
        Config {
            max_pending: 4,
            ..config()
        },
        State::default(),
    );
    assert_eq!(only(s.on_tick(1_000, 10)), Action::Fund(vec![0..4]));
}

#[test]
fn empty_wallet_warns_and_retries_later() {
    let mut s = Stamper::new(config(), State::default());
    s.on_tick(1_000, 3);
    let action = only(s.on_funding(
        1_000,
        vec![0..3],
        offer(&[utxo(100, 5, 1)], None, 100, [7; 32]),
    ));
    assert!(matches!(
        action,
        Action::Warn(Warning::WalletTooSmall { .. })
    ));
    assert!(s.state().round.is_none());
    assert!(s.on_tick(1_030, 3).is_empty());
    assert_eq!(only(s.on_tick(1_060, 3)), Action::Fund(vec![0..3]));
}

#[test]
fn every_block_without_confirmation_brings_one_higher_paying_replacement() {
    let (mut s, first) = first_version(3);
    let first_fee = 90_000 - first.output[1].value.to_sat();
    // A block without our transaction: replace, covering new commitments.
    let bump = only(block_then_tick(&mut s, 1_100, 101, block(1), &[], 5));
    assert_eq!(bump, Action::Bump(vec![0..3, 3..5]));
    let second = sign_of(only(s.on_bump([8; 32], vec![0..3, 3..5], 101, None)));
    assert_eq!(
        second.input[0].previous_output, first.input[0].previous_output,
        "same input: no double spend"
    );
    let second_fee = 90_000 - second.output[1].value.to_sat();
    assert_eq!(second_fee, first_fee + 153, "old fee + 1 sat/vB × vsize");
    assert_eq!(second.output[0].script_pubkey, op_return(&[8; 32]));
    s.on_signed(second.clone());
    s.on_broadcast(1_100, BroadcastResult::Accepted);
    assert_eq!(s.state().round.as_ref().unwrap().versions.len(), 2);
    assert_eq!(s.state().journal_end, 5);
}

#[test]
fn a_fee_rejection_raises_the_fee_by_a_quarter() {
    let mut s = Stamper::new(config(), State::default());
    s.on_tick(1_000, 1);
    let tx = sign_of(only(s.on_funding(
        1_000,
        vec![0..1],
        offer(&[utxo(90_000, 1, 2)], None, 100, [7; 32]),
    )));
    s.on_signed(tx);
    let refused = BroadcastResult::Refused {
        code: -26,
        message: "min relay fee not met, 153 < 200".into(),
    };
    let retry = sign_of(only(s.on_broadcast(1_000, refused)));
    assert_eq!(
        90_000 - retry.output[1].value.to_sat(),
        153 + 153 * 25 / 100 + 1
    );
}

#[test]
fn the_fee_cap_stops_bumping_with_one_warning() {
    let cap = Config {
        max_fee: Amount::from_sat(400),
        ..config()
    };
    let mut s = Stamper::new(cap, State::default());
    s.on_tick(1_000, 1);
    let tx = sign_of(only(s.on_funding(
        1_000,
        vec![0..1],
        offer(&[utxo(90_000, 1, 2)], Some(2_000), 100, [7; 32]),
    )));
    s.on_signed(tx);
    s.on_broadcast(1_000, BroadcastResult::Accepted);
    // 306 → 459 would exceed 400.
    let Action::Bump(covered) = only(block_then_tick(&mut s, 1_100, 101, block(1), &[], 1)) else {
        panic!()
    };
    let warn = only(s.on_bump([7; 32], covered.clone(), 101, None));
    assert_eq!(
        warn,
        Action::Warn(Warning::FeeCapReached {
            fee: Amount::from_sat(459),
            max: Amount::from_sat(400)
        })
    );
    let Action::Bump(covered) = only(block_then_tick(&mut s, 1_200, 102, block(2), &[], 1)) else {
        panic!()
    };
    assert!(
        s.on_bump([7; 32], covered, 102, None).is_empty(),
        "warned once"
    );
    // The round stays: its transaction may still confirm.
    assert_eq!(s.state().round.as_ref().unwrap().versions.len(), 1);
}

#[test]
fn a_mined_version_is_final_after_min_confirmations() {
    let (mut s, first) = first_version(3);
    let Action::Bump(covered) = only(block_then_tick(&mut s, 1_100, 101, block(1), &[], 5)) else {
        panic!()
    };
    let second = sign_of(only(s.on_bump([8; 32], covered, 101, None)));
    s.on_signed(second);
    s.on_broadcast(1_100, BroadcastResult::Accepted);

    // The FIRST version gets mined: its 3 commitments are in it, the 2 added
    // by the replacement go back to pending.
    let txid = first.compute_txid();
    assert!(s.on_block(1_200, 102, block(2), &[txid]).is_empty());
    assert!(s.state().round.is_none());
    assert_eq!(s.pending(5), vec![3..5]);
    assert_eq!(
        s.status(0),
        Status::Mined {
            txid,
            waiting_for: 1
        }
    );
    // min_tx_interval × random(1..2), drawn from the block hash.
    let wait = s.state().next_round_at - 1_200;
    assert!((600..=1_200).contains(&wait), "{wait}");

    let complete = only(s.on_block(1_300, 103, block(3), &[]));
    let Action::Complete(mined) = complete else {
        panic!("{complete:?}")
    };
    assert_eq!(mined.version.txid, txid);
    assert_eq!(mined.version.ranges, vec![0..3]);
    assert_eq!((mined.height, mined.block), (102, block(2)));
    // Not asked twice while the runtime works on it.
    assert!(s.on_block(1_400, 104, block(4), &[]).is_empty());
    s.on_completed(1_500, txid, 1_150, 0);
    assert!(s.state().mined.is_empty());
    // Kept for the info page: fee, size and height of the mined version,
    // the block time the runtime reported.
    let done = &s.state().history.entries[0];
    assert_eq!(done.txid, txid);
    assert_eq!(
        (done.fee, done.vsize),
        (mined.version.fee, mined.version.vsize)
    );
    assert_eq!((done.height, done.block_time), (102, 1_150));
}

/// The runtime stops a step at the first failed action and drops the rest
/// (a Complete queued behind a broadcast the node refused with -28, say).
/// The step that starts over asks for the completion again.
#[test]
fn a_completion_dropped_by_a_failed_step_is_asked_for_again() {
    let (mut s, first) = first_version(3);
    let txid = first.compute_txid();
    assert!(s.on_block(1_200, 101, block(1), &[txid]).is_empty());
    let due = s.on_block(1_300, 102, block(2), &[]);
    let [Action::Complete(mined)] = due.as_slice() else {
        panic!("{due:?}")
    };
    // Dropped, never reported. Resuming asks again, once.
    let resumed = s.on_start();
    let [Action::Complete(again)] = resumed.as_slice() else {
        panic!("on_start: {resumed:?}")
    };
    assert_eq!(again.version.txid, mined.version.txid);
    assert!(s.on_block(1_400, 103, block(3), &[]).is_empty());
}

#[test]
fn a_reorg_before_finality_returns_the_transaction_to_the_round() {
    let (mut s, first) = first_version(3);
    let txid = first.compute_txid();
    s.on_block(1_100, 101, block(1), &[txid]);
    assert!(s.state().round.is_none());
    assert!(s.on_reorg(1_150, 100).is_empty());
    assert!(s.state().mined.is_empty());
    assert_eq!(s.state().round.as_ref().unwrap().versions[0].txid, txid);
    assert_eq!(s.status(0), Status::Pending);
    // The new branch's next block: the transaction is bumped again...
    assert!(matches!(
        only(block_then_tick(&mut s, 1_200, 101, block(9), &[], 3)),
        Action::Bump(_)
    ));
    // ...or found in the new branch.
    s.on_block(1_300, 102, block(10), &[txid]);
    assert_eq!(s.state().mined[0].block, block(10));
}

#[test]
fn a_reorg_with_a_new_round_underway_keeps_the_old_transaction_watched() {
    let (mut s, first) = first_version(3);
    let txid = first.compute_txid();
    s.on_block(1_100, 101, block(1), &[txid]);
    // A new round starts (its interval passed) with commitments 3..6.
    s.on_tick(10_000, 6);
    let tx = sign_of(only(s.on_funding(
        10_000,
        vec![3..6],
        offer(&[utxo(80_000, 1, 5)], None, 101, [9; 32]),
    )));
    s.on_signed(tx);
    s.on_broadcast(10_000, BroadcastResult::Accepted);
    s.on_reorg(1_150, 100);
    assert_eq!(s.pending(6), vec![0..3]);
    assert_eq!(s.state().orphans.len(), 1);
    s.on_block(10_100, 101, block(7), &[txid]);
    assert!(s.state().orphans.is_empty());
    assert_eq!(s.pending(6), Vec::<std::ops::Range<u64>>::new());
}

#[test]
fn state_survives_a_restart_mid_broadcast() {
    let mut s = Stamper::new(config(), State::default());
    s.on_tick(1_000, 2);
    let tx = sign_of(only(s.on_funding(
        1_000,
        vec![0..2],
        offer(&[utxo(90_000, 1, 2)], None, 100, [7; 32]),
    )));
    let broadcast = only(s.on_signed(tx));
    // Crash after persisting, before the broadcast was answered.
    let saved = serde_json::to_string(s.state()).unwrap();
    let restored: State = serde_json::from_str(&saved).unwrap();
    assert_eq!(&restored, s.state());
    let mut again = Stamper::new(config(), restored);
    assert_eq!(
        only(again.on_start()),
        broadcast,
        "the same signed tx, so no second spend"
    );
}

#[test]
fn a_restart_sends_the_latest_version_again() {
    let (s, tx) = first_version(3);
    let saved = serde_json::to_string(s.state()).unwrap();
    let mut again = Stamper::new(config(), serde_json::from_str(&saved).unwrap());
    assert_eq!(
        only(again.on_start()),
        Action::Broadcast(tx),
        "a node that lost its mempool gets the transaction back"
    );
    // Whatever the node answers, the round stays as it was: no new spend.
    let before = again.state().clone();
    let refused = BroadcastResult::Refused {
        code: -26,
        message: "insufficient fee".into(),
    };
    assert!(again.on_broadcast(2_000, refused).is_empty());
    assert_eq!(again.state(), &before);
}

#[test]
fn an_unfunded_round_is_tried_again_at_the_next_block() {
    let mut s = Stamper::new(config(), State::default());
    assert_eq!(only(s.on_tick(1_000, 2)), Action::Fund(vec![0..2]));
    let warned = s.on_funding(1_000, vec![0..2], offer(&[], None, 100, [7; 32]));
    assert!(matches!(
        only(warned),
        Action::Warn(Warning::WalletTooSmall { .. })
    ));
    // Not before the retry delay...
    assert!(s.on_tick(1_001, 2).is_empty());
    // ...unless a block arrives, which may have confirmed a deposit.
    assert!(s.on_block(1_002, 101, block(1), &[]).is_empty());
    assert_eq!(only(s.on_tick(1_002, 2)), Action::Fund(vec![0..2]));
    // A block with nothing to retry changes nothing.
    let mut calm = Stamper::new(config(), State::default());
    calm.on_block(1_000, 101, block(1), &[]);
    assert!(calm.on_tick(1_000, 0).is_empty());
}

#[test]
fn a_calendar_catching_up_with_many_blocks_bumps_once() {
    let (mut s, _) = first_version(3);
    for height in 101..111 {
        assert!(s
            .on_block(1_100, height, block(height as u8), &[])
            .is_empty());
    }
    assert!(matches!(only(s.on_tick(1_100, 3)), Action::Bump(_)));
    assert!(s.on_tick(1_101, 3).is_empty(), "once per batch of blocks");
}

/// A runtime still catching up with the chain when it funds a round (the
/// node was at height 100, the runtime had seen 99) then sees block 100:
/// it was there before the version, which it cannot hold (locked at 100),
/// so it is no reason to replace it. Block 101 is.
#[test]
fn a_block_the_node_had_when_the_version_was_made_does_not_bump_it() {
    let (mut s, tx) = first_version(3);
    assert_eq!(tx.lock_time.to_consensus_u32(), 100);
    assert!(block_then_tick(&mut s, 1_100, 100, block(100), &[], 3).is_empty());
    assert!(matches!(
        only(block_then_tick(&mut s, 1_200, 101, block(101), &[], 3)),
        Action::Bump(_)
    ));
}

/// A replacement the wallet did not sign is dropped (it was never sent)
/// and made again at the next tick, after the runtime has looked at the
/// chain; a block mining the version it replaced ends the round instead.
#[test]
fn an_unsigned_replacement_is_made_again_or_dropped_when_its_round_is_mined() {
    let (mut s, first) = first_version(3);
    let Action::Bump(covered) = only(block_then_tick(&mut s, 1_100, 101, block(1), &[], 3)) else {
        panic!()
    };
    sign_of(only(s.on_bump([7; 32], covered, 101, None)));
    s.on_sign_failed();
    assert!(s.state().round.as_ref().unwrap().attempt.is_none());
    assert!(
        matches!(only(s.on_tick(1_101, 3)), Action::Bump(_)),
        "made again"
    );

    let (mut s, _) = first_version(3);
    let Action::Bump(covered) = only(block_then_tick(&mut s, 1_100, 101, block(1), &[], 3)) else {
        panic!()
    };
    sign_of(only(s.on_bump([7; 32], covered, 101, None)));
    s.on_sign_failed();
    s.on_block(1_200, 102, block(2), &[first.compute_txid()]);
    assert!(s.state().round.is_none());
    assert!(s.on_tick(1_201, 3).is_empty(), "nothing to replace");
    assert_eq!(
        s.status(0),
        Status::Mined {
            txid: first.compute_txid(),
            waiting_for: 1
        }
    );
}

#[test]
fn a_foreign_signed_transaction_is_not_broadcast() {
    let mut s = Stamper::new(config(), State::default());
    s.on_tick(1_000, 2);
    let mut tx = sign_of(only(s.on_funding(
        1_000,
        vec![0..2],
        offer(&[utxo(90_000, 1, 2)], None, 100, [7; 32]),
    )));
    tx.output[1].value = Amount::from_sat(1);
    assert!(matches!(only(s.on_signed(tx)), Action::Warn(_)));
}

/// A mined batch whose proofs cannot be stored (its journal records no
/// longer lead to its tip) is set aside: it is no longer asked for, its
/// positions are pending again for a later round, and it is recorded for
/// the operator. Nothing else stops.
#[test]
fn a_batch_that_cannot_be_stored_is_set_aside_and_stamping_goes_on() {
    let (mut s, first) = first_version(3);
    let txid = first.compute_txid();
    assert!(s.on_block(1_200, 101, block(1), &[txid]).is_empty());
    let due = s.on_block(1_300, 102, block(2), &[]);
    assert!(matches!(due.as_slice(), [Action::Complete(_)]), "{due:?}");
    s.on_complete_rejected(1_310, txid, "tip mismatch".into());
    assert!(s.state().mined.is_empty());
    assert_eq!(s.pending(5), vec![0..5], "its positions are pending again");
    let aside = &s.state().set_aside;
    assert_eq!(aside.len(), 1);
    assert_eq!(
        (aside[0].txid, aside[0].height, aside[0].ranges.clone()),
        (txid, 101, vec![0..3])
    );
    assert_eq!(aside[0].reason, "tip mismatch");
    // Not asked for again, on a block or a restart; the next round takes
    // the positions back.
    assert!(s
        .on_start()
        .iter()
        .all(|a| !matches!(a, Action::Complete(_))));
    let next = s.on_tick(100_000, 5);
    assert_eq!(next, vec![Action::Fund(vec![0..5])]);
}

/// A round time saved from a clock far ahead does not stop stamping: no
/// rule waits longer than twice the interval plus the unfunded retry.
#[test]
fn a_round_time_from_a_clock_far_ahead_is_bounded() {
    let state = State {
        next_round_at: u64::MAX,
        ..State::default()
    };
    let mut s = Stamper::new(config(), state);
    let now = 1_000;
    let longest =
        now + 2 * config().min_tx_interval_secs + ots_stamper::stamper::UNFUNDED_RETRY_SECS;
    assert!(s.on_tick(now, 5).is_empty());
    assert_eq!(s.state().next_round_at, longest);
    assert_eq!(s.on_tick(longest, 5), vec![Action::Fund(vec![0..5])]);
}

/// A round's first version (2 sat/vB × 153 vB = 306 sats) under `config`,
/// then a block without it: the replacement made with the node's estimate
/// `feerate` (sat/kvB). Returns its fee and the rule recorded with it.
fn bump_with_estimate(config: Config, feerate: Option<u64>) -> (u64, FeeChoice) {
    let mut s = Stamper::new(config, State::default());
    s.on_tick(1_000, 1);
    let tx = sign_of(only(s.on_funding(
        1_000,
        vec![0..1],
        offer(&[utxo(90_000, 1, 2)], Some(2_000), 100, [7; 32]),
    )));
    s.on_signed(tx);
    s.on_broadcast(1_000, BroadcastResult::Accepted);
    let Action::Bump(covered) = only(block_then_tick(&mut s, 1_100, 101, block(1), &[], 1)) else {
        panic!()
    };
    let bumped = sign_of(only(s.on_bump([7; 32], covered, 101, feerate)));
    let attempt = s.state().round.as_ref().unwrap().attempt.clone().unwrap();
    assert_eq!(attempt.tx, bumped);
    assert_eq!(
        attempt.fee.to_sat(),
        90_000 - bumped.output[1].value.to_sat()
    );
    (attempt.fee.to_sat(), attempt.fee_choice.unwrap())
}

/// BIP125 minimum of the replacement: 306 + 1 sat/vB × 153 vB.
const BUMP_MINIMUM: u64 = 306 + 153;

#[test]
fn a_bump_pays_the_bip125_minimum_when_the_estimate_is_lower() {
    // 1 sat/vB × 153 = 153 sats, below the minimum.
    let (fee, choice) = bump_with_estimate(config(), Some(1_000));
    assert_eq!(fee, BUMP_MINIMUM);
    assert_eq!(
        choice,
        FeeChoice {
            rule: FeeRule::Minimum,
            estimate: Some(1_000)
        }
    );
}

#[test]
fn a_bump_pays_the_fresh_estimate_when_it_is_higher() {
    // The market rose to 20 sat/vB: 3 060 sats, well above the minimum.
    let (fee, choice) = bump_with_estimate(config(), Some(20_000));
    assert_eq!(fee, 3_060);
    assert_eq!(choice.rule, FeeRule::Estimate);
}

#[test]
fn a_bump_at_a_high_estimate_is_capped_by_the_max_fee() {
    let capped = Config {
        max_fee: Amount::from_sat(2_000),
        ..config()
    };
    let (fee, choice) = bump_with_estimate(capped, Some(20_000));
    assert_eq!(fee, 2_000, "the cap, above the minimum, below the estimate");
    assert_eq!(choice.rule, FeeRule::Cap);
}

#[test]
fn a_bump_without_an_estimate_pays_the_bip125_minimum() {
    let (fee, choice) = bump_with_estimate(config(), None);
    assert_eq!(fee, BUMP_MINIMUM);
    assert_eq!(
        choice,
        FeeChoice {
            rule: FeeRule::NoEstimate,
            estimate: None
        }
    );
}

#[test]
fn a_first_version_records_why_it_pays_its_fee() {
    let (s, _) = first_version(3);
    let version = &s.state().round.as_ref().unwrap().versions[0];
    assert_eq!(
        version.fee_choice,
        Some(FeeChoice {
            rule: FeeRule::Estimate,
            estimate: Some(2_000)
        })
    );
}

/// A first version over 3 commitments mined at height 101 and completed
/// at 102 (2 confirmations), stored as batch 7.
fn completed_round() -> (Stamper, Txid) {
    let (mut s, first) = first_version(3);
    let txid = first.compute_txid();
    assert!(s.on_block(1_100, 101, block(1), &[txid]).is_empty());
    let due = s.on_block(1_200, 102, block(2), &[]);
    assert!(matches!(due.as_slice(), [Action::Complete(_)]), "{due:?}");
    s.on_completed(1_210, txid, 1_150, 7);
    assert!(s.state().mined.is_empty());
    assert_eq!(s.state().completed.len(), 1);
    (s, txid)
}

/// Issue 17: a reorg deeper than `min_confirmations` takes a completed
/// transaction's block away: its proofs are withdrawn (the store's batch),
/// its commitments pending again and stamped in a new round, the
/// transaction watched in case it is mined again, and all of it counted
/// and remembered until the runtime reports the withdrawal.
#[test]
fn a_reorg_deeper_than_the_confirmations_withdraws_completed_proofs() {
    let (mut s, txid) = completed_round();
    s.on_block(1_300, 103, block(3), &[]);
    s.on_block(1_400, 104, block(4), &[]);
    // Blocks 101..=104 replaced: depth 4 = min_confirmations + 2.
    let actions = s.on_reorg(1_500, 100);
    let [Action::Withdraw(r)] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(
        (r.txid, r.batch, r.height, r.block),
        (txid, 7, 101, block(1))
    );
    assert_eq!(r.ranges, vec![0..3]);
    assert_eq!((r.at, r.withdrawn), (1_500, false));
    assert!(s.state().completed.is_empty());
    assert_eq!(s.state().reorged_total, 1);
    assert_eq!(s.pending(3), vec![0..3], "stamped again");
    assert_eq!(s.state().orphans[0].txid, txid);
    // A crash before the withdrawal was done: asked again at start...
    let again = s.on_start();
    assert!(
        again
            .iter()
            .any(|a| matches!(a, Action::Withdraw(w) if w.txid == txid)),
        "{again:?}"
    );
    // ...until it is reported.
    s.on_withdrawn(txid);
    assert!(s.state().reorged[0].withdrawn);
    assert!(s
        .on_start()
        .iter()
        .all(|a| !matches!(a, Action::Withdraw(_))));
    // The next round takes the commitments again.
    assert_eq!(s.on_tick(100_000, 3), vec![Action::Fund(vec![0..3])]);
}

/// The reorged-out transaction mined again on the new branch: it is
/// mined, final after its confirmations and completed once more (a new
/// batch, on the new block).
#[test]
fn a_withdrawn_transaction_mined_again_completes_on_the_new_branch() {
    let (mut s, txid) = completed_round();
    s.on_block(1_300, 103, block(3), &[]);
    s.on_block(1_400, 104, block(4), &[]);
    s.on_reorg(1_500, 100);
    s.on_withdrawn(txid);
    assert!(s.on_block(1_600, 101, block(11), &[txid]).is_empty());
    assert_eq!(s.pending(3), Vec::<std::ops::Range<u64>>::new());
    let due = s.on_block(1_700, 102, block(12), &[]);
    let [Action::Complete(m)] = due.as_slice() else {
        panic!("{due:?}")
    };
    assert_eq!((m.version.txid, m.block, m.height), (txid, block(11), 101));
    s.on_completed(1_710, txid, 1_650, 8);
    assert_eq!(s.state().completed[0].batch, 8);
    assert_eq!(s.state().completed[0].block, block(11));
}

/// A reorg no deeper than what is still waiting for confirmations, or
/// below a completed transaction's block, withdraws nothing; completed
/// transactions are forgotten once deeper than the watch.
#[test]
fn shallow_reorgs_withdraw_nothing_and_deep_completions_are_forgotten() {
    let (mut s, _) = completed_round();
    s.on_block(1_300, 103, block(3), &[]);
    assert!(s.on_reorg(1_400, 101).is_empty(), "its block 101 stays");
    assert_eq!(s.state().completed.len(), 1);
    let watch = ots_stamper::stamper::REORG_WATCH_BLOCKS;
    s.on_block(1_500, 101 + watch - 1, block(5), &[]);
    assert_eq!(s.state().completed.len(), 1, "still within the watch");
    s.on_block(1_600, 101 + watch, block(6), &[]);
    assert!(s.state().completed.is_empty());
    assert!(s.on_reorg(1_700, 100).is_empty());
    assert_eq!(s.state().reorged_total, 0);
}
