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
    assert_eq!(net.balance(0), DEV_BALANCE - 1_000);
    let events = net.ok(0, TxKind::Unbond(Unbond { amount: 400 }));
    let h = net.ledger.height();
    assert_eq!(events, vec![Event::UnbondStarted { account: net.pk(0), amount: 400, release_height: h + 5 }]);
    // Too early: nothing matured, state untouched.
    assert!(matches!(net.run(0, TxKind::Withdraw), Err(LedgerError::NothingToWithdraw { .. })));
    net.advance_to(h + 4);
    net.ok(0, TxKind::Withdraw);
    assert_eq!(net.balance(0), DEV_BALANCE - 600);
    let stake = net.ledger.stake(&net.pk(0));
    assert_eq!((stake.bonded, stake.unbonding.len()), (600, 0));
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
    net.submit_result(WORKER, task, (10, 10), &[10_000]).unwrap();
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
