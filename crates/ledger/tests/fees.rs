#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Transaction fees: every transaction but a duty costs its sender `tx_fee`, burned; a sender
//! that cannot pay is refused and nothing changes.

mod common;
use common::*;
use polylink_ledger::{DEV_BALANCE, LedgerError};
use polylink_types::*;

const FEE: Amount = 100;
/// An account the genesis did not fund.
const POOR: usize = ACCOUNTS as usize;

fn net() -> Net {
    let mut net = Net::new(test_params());
    net.keys.push(SecretKey::from_label("poor"));
    net
}

#[test]
fn every_transaction_pays_the_fee_and_every_unit_is_accounted() {
    let mut net = net();
    assert_eq!(net.ledger.params().tx_fee, FEE);
    let minted = net.ledger.totals().supply;
    net.ok(0, TxKind::Transfer(Transfer { to: net.pk(POOR), amount: 1_000 }));
    net.ok(0, TxKind::Bond(Bond { amount: 5_000 }));
    assert_eq!(net.balance(0), DEV_BALANCE - 1_000 - 5_000 - 2 * FEE);
    assert_eq!(net.fees(0, 0), 2 * FEE);
    assert_eq!(net.ledger.totals().fees_burned, 2 * FEE);
    assert_eq!(net.ledger.totals().supply, minted - 2 * FEE, "fees are burned");
    assert_eq!(net.minted(), minted);
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn a_sender_that_cannot_pay_is_refused_and_nothing_changes() {
    let mut net = net();
    net.ok(0, TxKind::Transfer(Transfer { to: net.pk(POOR), amount: 1_000 }));
    let before =
        (net.ledger.account(&net.pk(POOR)), net.ledger.totals().clone(), net.ledger.stake(&net.pk(POOR)));
    // Sending everything leaves nothing for the fee; so does bonding everything.
    let everything = TxKind::Transfer(Transfer { to: net.pk(0), amount: 1_000 });
    let expected = Err(LedgerError::FeeUnpaid { account: net.pk(POOR), fee: FEE, available: 0 });
    assert_eq!(net.ledger.check_tx(&net.tx(POOR, everything.clone())), expected.clone().map(|_| ()));
    assert_eq!(net.run(POOR, everything), expected.clone());
    assert_eq!(net.run(POOR, TxKind::Bond(Bond { amount: 1_000 })), expected);
    let after =
        (net.ledger.account(&net.pk(POOR)), net.ledger.totals().clone(), net.ledger.stake(&net.pk(POOR)));
    assert_eq!(after, before, "not even the nonce moved");
    // What it can pay goes through.
    net.ok(POOR, TxKind::Transfer(Transfer { to: net.pk(0), amount: 1_000 - FEE }));
    assert_eq!(net.balance(POOR), 0);
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn spam_costs_the_spammer_and_a_drained_spammer_stops() {
    let mut net = net();
    net.ok(0, TxKind::Transfer(Transfer { to: net.pk(POOR), amount: 10 * FEE + 5 }));
    let mut sent = 0;
    while net.run(POOR, TxKind::Transfer(Transfer { to: net.pk(0), amount: 1 })).is_ok() {
        sent += 1;
    }
    // Each transfer cost its unit and the fee: the spammer ran dry after 9 (10 x 101 > 1_005).
    assert_eq!(sent, 9);
    assert_eq!(net.balance(POOR), 10 * FEE + 5 - 9 * (FEE + 1));
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn withdrawing_pays_from_what_it_releases() {
    // An account whose whole balance is bonded can still leave: the fee comes from the release.
    let mut net = net();
    net.ok(0, TxKind::Transfer(Transfer { to: net.pk(POOR), amount: 1_000 + 2 * FEE }));
    net.ok(POOR, TxKind::Bond(Bond { amount: 1_000 }));
    net.ok(POOR, TxKind::Unbond(Unbond { amount: 1_000 }));
    assert_eq!(net.balance(POOR), 0);
    let release = net.ledger.stake(&net.pk(POOR)).unbonding.as_slice()[0].clone();
    net.advance_to(release.release_height);
    while net.next_ms < release.release_ms {
        net.block(&[]);
    }
    net.ok(POOR, TxKind::Withdraw);
    assert_eq!(net.balance(POOR), 1_000 - FEE);
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn duties_are_free_so_honest_work_on_a_tiny_task_still_pays() {
    // One token at the floor: the fee alone would exceed what the worker and each validator
    // earn. Their duties (the result, each commit and reveal) cost nothing, so they end richer.
    let mut net = Net::market(test_params());
    let user_before = net.balance(USER);
    let task = net.submit_task(1, &[WORKER]);
    let before: Vec<Amount> = VALIDATORS.map(|v| net.balance(v)).collect();
    let worker_before = net.balance(WORKER);
    net.submit_result(GATEWAY, task, (1, 0)).unwrap();
    let committee = net.committee(&task);
    net.score(task, &committee.iter().map(|&v| (v, Some(1_000), true)).collect::<Vec<_>>());
    assert!(net.balance(WORKER) > worker_before);
    for (v, b) in VALIDATORS.zip(before) {
        assert!(net.balance(v) >= b, "validator {v} lost money doing its duty");
    }
    // The user paid its SubmitTask's fee and the task's fee.
    assert_eq!(user_before - net.balance(USER), FEE + PRICE_FLOOR);
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn a_late_duty_is_free_and_a_strangers_duty_pays() {
    // A committee member whose commit lands after the window (an honest validator under load)
    // pays nothing for it; a validator outside the committee that sends one pays the fee, so
    // nobody but the parties a task names can fill blocks for free.
    let mut net = Net::market(test_params());
    let task = net.submit_task(10, &[WORKER]);
    net.submit_result(GATEWAY, task, (1, 5)).unwrap();
    let committee = net.committee(&task);
    let mut validators = VALIDATORS;
    let stranger = validators.find(|v| !committee.contains(v)).expect("a validator outside the committee");
    let t = net.ledger.task(&task).unwrap();
    net.advance_past(t.commit_end_height, t.commit_end_ms);
    let commit = |net: &Net, v: usize| {
        let commitment = score_commitment(900, &honest_work(&task), &Hash32::ZERO, &net.pk(v));
        net.tx(v, TxKind::CommitScore(CommitScore { task, commitment }))
    };
    let member = committee[0];
    let (before, nonce) = (net.balance(member), net.ledger.account(&net.pk(member)).nonce);
    let out = net.block(&[commit(&net, member)]);
    assert!(matches!(out.receipts[0].result, Err(LedgerError::OutsideWindow { .. })), "{:?}", out.receipts);
    assert_eq!(net.balance(member), before, "a late duty cost its validator");
    assert_eq!(net.ledger.account(&net.pk(member)).nonce, nonce + 1, "carried: its nonce is consumed");
    let before = net.balance(stranger);
    let out = net.block(&[commit(&net, stranger)]);
    assert!(out.receipts[0].result.is_err());
    assert_eq!(before - net.balance(stranger), FEE, "a stranger's commit is no duty");
    assert_eq!(net.held(), net.ledger.totals().supply);
}
