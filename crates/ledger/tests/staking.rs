#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Bond, unbond with its period, withdraw, and slashing that reaches unbonding stake.

mod common;
use common::*;
use polylink_ledger::{DEV_BALANCE, LedgerError, UNBONDING_ENTRIES_MAX};
use polylink_types::*;

#[test]
fn bond_unbond_withdraw_after_the_period() {
    let mut net = Net::new(test_params());
    net.ok(0, TxKind::Bond(Bond { amount: 1_000 }));
    assert_eq!(net.ledger.stake(&net.pk(0)).bonded, 1_000);
    assert_eq!(net.balance(0), DEV_BALANCE - 1_000 - net.fees(0, 0));
    let events = net.ok(0, TxKind::Unbond(Unbond { amount: 400 }));
    let (h, t) = (net.ledger.height(), net.ledger.time_ms());
    let (release_height, release_ms) = (h + 20, t + 70_000);
    assert_eq!(
        events,
        vec![Event::UnbondStarted { account: net.pk(0), amount: 400, release_height, release_ms }]
    );
    // Too early: nothing matured, state untouched.
    assert!(matches!(net.run(0, TxKind::Withdraw), Err(LedgerError::NothingToWithdraw { .. })));
    // Its blocks have passed, not its time (blocks came fast): still too early.
    net.advance_to(release_height);
    assert!(net.ledger.time_ms() < release_ms);
    assert!(matches!(net.run(0, TxKind::Withdraw), Err(LedgerError::NothingToWithdraw { .. })));
    while net.next_ms < release_ms {
        net.block(&[]);
    }
    net.ok(0, TxKind::Withdraw);
    assert_eq!(net.balance(0), DEV_BALANCE - 600 - net.fees(0, 0), "bond, unbond and withdraw paid fees");
    let stake = net.ledger.stake(&net.pk(0));
    assert_eq!((stake.bonded, stake.unbonding.len()), (600, 0));
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn a_gateway_that_unbonded_opens_no_task_but_still_gets_its_workers_paid() {
    // The gateway of an open task unbonds down to nothing. It can open no new task, but its
    // report of the open one still lands: the receipts are the workers' own proof of their work,
    // and an honest worker must not lose its pay to its gateway leaving.
    let mut net = Net::market(test_params());
    let task = net.submit_task(100, &[WORKER]);
    net.ok(GATEWAY, TxKind::Unbond(Unbond { amount: 10_000 }));
    let refused = net.run(USER, net.task_kind(10, &[WORKER]));
    assert!(
        matches!(refused, Err(LedgerError::StakeBelowMinimum { role: "gateway", have: 0, .. })),
        "{refused:?}"
    );
    net.submit_result(GATEWAY, task, (10, 10)).unwrap();
    let committee = net.committee(&task);
    let worker_before = net.balance(WORKER);
    net.score(task, &committee.iter().map(|&v| (v, Some(900), true)).collect::<Vec<_>>());
    assert!(net.balance(WORKER) > worker_before, "the worker was paid");
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn unbonding_more_than_bonded_or_too_many_entries_is_refused() {
    let mut net = Net::new(test_params());
    net.ok(0, TxKind::Bond(Bond { amount: 100 }));
    assert!(matches!(
        net.run(0, TxKind::Unbond(Unbond { amount: 101 })),
        Err(LedgerError::InsufficientStake { needed: 101, available: 100, .. })
    ));
    for _ in 0..UNBONDING_ENTRIES_MAX {
        net.ok(0, TxKind::Unbond(Unbond { amount: 1 }));
    }
    assert!(matches!(
        net.run(0, TxKind::Unbond(Unbond { amount: 1 })),
        Err(LedgerError::TooManyUnbonding { .. })
    ));
}

#[test]
fn slashing_reaches_unbonding_stake() {
    // A worker at its last strike is slashed worker_slash_bps of bonded + unbonding stake; with
    // all of it unbonding, the slash comes out of the unbonding entries.
    let mut params = test_params();
    params.worker_slash_bps = 5_000;
    params.strikes_to_slash = 1;
    let mut net = Net::market(params);
    let task = net.submit_task(100, &[WORKER]);
    net.submit_result(GATEWAY, task, (10, 10)).unwrap();
    // The worker starts leaving right after serving: its stake is all unbonding now.
    net.ok(WORKER, TxKind::Unbond(Unbond { amount: 10_000 }));
    let committee = net.committee(&task);
    let scores: Vec<_> = committee.iter().map(|&v| (v, Some(100u16), true)).collect();
    let supply_before = net.ledger.totals().supply;
    let events = net.score(task, &scores);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Slashed { amount: 5_000, reason: SlashReason::LowQuality, .. }))
    );
    let stake = net.ledger.stake(&net.pk(WORKER));
    assert_eq!(stake.bonded, 0);
    assert_eq!(stake.slashable(), 5_000);
    assert_eq!(net.ledger.totals().supply, supply_before - 5_000);
    assert_eq!(net.held(), net.ledger.totals().supply);
}
