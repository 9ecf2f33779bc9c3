#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A user lets a gateway open tasks paid from its balance, within a limit, without handing over
//! its key: the gateway signs the tasks, the ledger spends only what the user allowed it.

mod common;
use common::*;
use polylink_ledger::{ALLOWANCES_MAX, DEV_BALANCE, LedgerError, TaskStatus};
use polylink_types::*;

fn allow(net: &Net, gateway: usize, limit: Amount) -> TxKind {
    TxKind::Allow(Allow { gateway: net.pk(gateway), limit, key_hash: Hash32::digest(&[b"key"]) })
}

/// The gateway opens a task on model 1 for USER, served by WORKER.
fn task_for_user(net: &Net, max_tokens: u32) -> TxKind {
    match net.task_kind(max_tokens, &[WORKER]) {
        TxKind::SubmitTask(s) => TxKind::SubmitTask(SubmitTask { payer: Some(net.pk(USER)), ..s }),
        _ => unreachable!(),
    }
}

fn limit(net: &Net, user: usize, gateway: usize) -> Option<Amount> {
    net.ledger.account(&net.pk(user)).allowance(&net.pk(gateway)).map(|a| a.limit)
}

#[test]
fn a_gateway_spends_only_what_the_user_allowed_and_unused_escrow_comes_back_to_the_allowance() {
    let mut net = Net::market(test_params());
    let fee = net.ledger.params().tx_fee;
    // Without an allowance, the gateway cannot open a task on the user's account.
    assert!(matches!(
        net.run(GATEWAY, task_for_user(&net, 100)),
        Err(LedgerError::AllowanceShort { available: 0, .. })
    ));
    net.ok(USER, allow(&net, GATEWAY, 3_000));
    assert_eq!(limit(&net, USER, GATEWAY), Some(3_000));
    let user_before = net.balance(USER);
    let gateway_before = net.balance(GATEWAY);

    let tx = net.tx(GATEWAY, task_for_user(&net, 100));
    let task = tx.id();
    net.block(&[tx]).receipts[0].result.clone().unwrap();
    let t = net.ledger.task(&task).unwrap();
    assert_eq!((t.user, t.allowed, t.escrow), (net.pk(USER), true, 1_000));
    // The user paid the escrow and repaid the gateway's fee; the gateway is where it was.
    assert_eq!(net.balance(USER), user_before - 1_000 - fee);
    assert_eq!(net.balance(GATEWAY), gateway_before);
    assert_eq!(limit(&net, USER, GATEWAY), Some(3_000 - 1_000 - fee));

    // 50 tokens billed: the other 500 of escrow go back to the balance and the allowance.
    net.submit_result(GATEWAY, task, (20, 30)).unwrap();
    assert_eq!(net.balance(USER), user_before - 500 - fee);
    assert_eq!(limit(&net, USER, GATEWAY), Some(3_000 - 500 - fee));
    let committee = net.committee(&task);
    net.score(task, &committee.iter().map(|&v| (v, Some(1_000), true)).collect::<Vec<_>>());
    assert!(matches!(net.ledger.task(&task).unwrap().status, TaskStatus::Settled(SettleOutcome::Paid)));
    assert_eq!(limit(&net, USER, GATEWAY), Some(3_000 - 500 - fee), "a paid fee is spent");

    // What is left does not cover a 300-token escrow: refused, and nothing moved but the
    // gateway's own fee for the refused transaction.
    let (user, left) = (net.balance(USER), limit(&net, USER, GATEWAY).unwrap());
    assert!(matches!(
        net.run(GATEWAY, task_for_user(&net, 300)),
        Err(LedgerError::AllowanceShort { needed, available, .. }) if needed == 3_000 + fee && available == left
    ));
    assert_eq!((net.balance(USER), limit(&net, USER, GATEWAY)), (user, Some(left)));
    assert_eq!(net.balance(GATEWAY), gateway_before - fee);
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn only_the_allowed_gateway_naming_itself_spends_an_allowance_and_a_revoked_one_is_gone() {
    let mut net = Net::market(test_params());
    net.ok(USER, allow(&net, GATEWAY, 100_000));
    // Another account (a worker here) cannot spend it, as a signer or by naming the gateway.
    assert!(matches!(net.run(WORKER, task_for_user(&net, 10)), Err(LedgerError::WrongRole { .. })));
    // The gateway cannot name another payer than one that allowed it, nor itself as payer.
    let mut other = task_for_user(&net, 10);
    if let TxKind::SubmitTask(s) = &mut other {
        s.payer = Some(net.pk(WORKER2));
    }
    assert!(matches!(net.run(GATEWAY, other), Err(LedgerError::AllowanceShort { available: 0, .. })));
    let mut itself = task_for_user(&net, 10);
    if let TxKind::SubmitTask(s) = &mut itself {
        s.payer = Some(net.pk(GATEWAY));
    }
    assert!(matches!(net.run(GATEWAY, itself), Err(LedgerError::Invalid { what: "task", .. })));
    assert!(matches!(
        net.run(USER, allow(&net, USER, 5)),
        Err(LedgerError::Invalid { what: "allowance", .. })
    ));

    // An open task's escrow returned at its deadline goes back to the allowance too.
    let tx = net.tx(GATEWAY, task_for_user(&net, 10));
    let task = tx.id();
    net.block(&[tx]).receipts[0].result.clone().unwrap();
    let fee = net.ledger.params().tx_fee;
    assert_eq!(limit(&net, USER, GATEWAY), Some(100_000 - 100 - fee));
    let deadline = net.ledger.task(&task).unwrap().deadline_ms;
    let height = net.ledger.height();
    net.advance_past(height, deadline);
    assert_eq!(net.ledger.task(&task).unwrap().status, TaskStatus::Reclaimed);
    assert_eq!(limit(&net, USER, GATEWAY), Some(100_000 - fee));

    // Revoked: the gateway can spend nothing more.
    net.ok(USER, allow(&net, GATEWAY, 0));
    assert_eq!(limit(&net, USER, GATEWAY), None);
    assert!(matches!(
        net.run(GATEWAY, task_for_user(&net, 10)),
        Err(LedgerError::AllowanceShort { available: 0, .. })
    ));
    assert_eq!(net.balance(USER), DEV_BALANCE - net.fees(USER, 0) - fee);
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn an_account_allows_a_bounded_number_of_gateways_and_setting_one_again_replaces_it() {
    let mut net = Net::market(test_params());
    let gateways: Vec<PublicKey> = (0..ALLOWANCES_MAX as u8 + 1)
        .map(|i| SecretKey::from_label(&format!("gw{i}")).public_key())
        .collect();
    for g in &gateways[..ALLOWANCES_MAX] {
        net.ok(USER, TxKind::Allow(Allow { gateway: *g, limit: 10, key_hash: Hash32::ZERO }));
    }
    let extra = TxKind::Allow(Allow { gateway: gateways[ALLOWANCES_MAX], limit: 10, key_hash: Hash32::ZERO });
    assert!(matches!(net.run(USER, extra.clone()), Err(LedgerError::Invalid { what: "allowance", .. })));
    let again = Allow { gateway: gateways[0], limit: 99, key_hash: Hash32::digest(&[b"new"]) };
    let events = net.ok(USER, TxKind::Allow(again.clone()));
    assert!(events.contains(&Event::AllowanceSet { user: net.pk(USER), gateway: gateways[0], limit: 99 }));
    let account = net.ledger.account(&net.pk(USER));
    assert_eq!(account.allowances.len(), ALLOWANCES_MAX);
    assert_eq!(account.allowance(&gateways[0]).map(|a| (a.limit, a.key_hash)), Some((99, again.key_hash)));
    net.ok(USER, TxKind::Allow(Allow { limit: 0, ..again }));
    net.ok(USER, extra);
    assert_eq!(net.ledger.account(&net.pk(USER)).allowances.len(), ALLOWANCES_MAX);
}
