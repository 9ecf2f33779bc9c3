#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A user locks a deposit for one gateway and the gateway opens tasks paid from it without
//! holding the user's key: with an API key the user gave it, or with a voucher the user signed
//! for each request. Deposited funds cannot be spent twice across gateways, a cut waits out a
//! notice so a task the gateway already opened still pays, and a voucher pays once.

mod common;
use common::*;
use polylink_ledger::{ALLOWANCES_MAX, DEPOSIT_NOTICE_MS, DEV_BALANCE, LedgerError, TaskStatus};
use polylink_types::*;

fn allow(net: &Net, gateway: usize, limit: Amount) -> TxKind {
    TxKind::Allow(Allow { gateway: net.pk(gateway), limit, key_hash: Hash32::digest(&[b"key"]) })
}

/// A deposit that pays only for requests the user signed.
fn allow_signed_only(net: &Net, gateway: usize, limit: Amount) -> TxKind {
    TxKind::Allow(Allow { gateway: net.pk(gateway), limit, key_hash: Hash32::ZERO })
}

/// The gateway opens a task on model 1 for USER, served by WORKER.
fn task_for_user(net: &Net, max_tokens: u32) -> TxKind {
    match net.task_kind(max_tokens, &[WORKER]) {
        TxKind::SubmitTask(s) => TxKind::SubmitTask(SubmitTask { payer: Some(net.pk(USER)), ..s }),
        _ => unreachable!(),
    }
}

/// The same with `voucher`.
fn task_with(net: &Net, max_tokens: u32, voucher: SignedVoucher) -> TxKind {
    match task_for_user(net, max_tokens) {
        TxKind::SubmitTask(s) => TxKind::SubmitTask(SubmitTask { voucher: Some(voucher), ..s }),
        _ => unreachable!(),
    }
}

fn limit(net: &Net, user: usize, gateway: usize) -> Option<Amount> {
    net.ledger.account(&net.pk(user)).allowance(&net.pk(gateway)).map(|a| a.limit)
}

/// A voucher USER signs for GATEWAY and model 1, spending at most `max_spend`, living `ttl_ms`.
fn voucher(net: &Net, max_spend: Amount, ttl_ms: u64, nonce: u64) -> SignedVoucher {
    Voucher {
        payer: net.pk(USER),
        gateway: net.pk(GATEWAY),
        model: 1,
        request_hash: Hash32::digest(&[b"{\"model\":\"m\"}"]),
        max_spend,
        expires_ms: net.ledger.time_ms() + ttl_ms,
        nonce,
    }
    .sign(&net.keys[USER], CHAIN)
}

#[test]
fn a_deposit_is_locked_and_tasks_spend_from_it_with_unused_escrow_coming_back_to_it() {
    let mut net = Net::market(test_params());
    let fee = net.ledger.params().tx_fee;
    // Without a deposit, the gateway cannot open a task on the user's account.
    assert!(matches!(
        net.run(GATEWAY, task_for_user(&net, 100)),
        Err(LedgerError::AllowanceShort { available: 0, .. })
    ));
    let before = net.balance(USER);
    net.ok(USER, allow(&net, GATEWAY, 3_000));
    assert_eq!(limit(&net, USER, GATEWAY), Some(3_000));
    // Locked at once: the balance paid the deposit (and the fee of the Allow).
    assert_eq!(net.balance(USER), before - 3_000 - fee);
    let user_before = net.balance(USER);
    let gateway_before = net.balance(GATEWAY);

    let tx = net.tx(GATEWAY, task_for_user(&net, 100));
    let task = tx.id();
    net.block(&[tx]).receipts[0].result.clone().unwrap();
    let t = net.ledger.task(&task).unwrap();
    assert_eq!((t.user, t.allowed, t.escrow), (net.pk(USER), true, 1_000));
    // The deposit paid the escrow and repaid the gateway's fee; the balance did not move.
    assert_eq!(net.balance(USER), user_before);
    assert_eq!(net.balance(GATEWAY), gateway_before);
    assert_eq!(limit(&net, USER, GATEWAY), Some(3_000 - 1_000 - fee));

    // 50 tokens billed: the other 500 of escrow go back to the deposit.
    net.submit_result(GATEWAY, task, (20, 30)).unwrap();
    assert_eq!(limit(&net, USER, GATEWAY), Some(3_000 - 500 - fee));
    let committee = net.committee(&task);
    net.score(task, &committee.iter().map(|&v| (v, Some(1_000), true)).collect::<Vec<_>>());
    assert!(matches!(net.ledger.task(&task).unwrap().status, TaskStatus::Settled(SettleOutcome::Paid)));
    assert_eq!(limit(&net, USER, GATEWAY), Some(3_000 - 500 - fee), "a paid fee is spent");
    assert_eq!(net.balance(USER), user_before);

    // What is left does not cover a 300-token escrow: refused, and nothing moved but the
    // gateway's own fee for the refused transaction.
    let left = limit(&net, USER, GATEWAY).unwrap();
    assert!(matches!(
        net.run(GATEWAY, task_for_user(&net, 300)),
        Err(LedgerError::AllowanceShort { needed, available, .. }) if needed == 3_000 + fee && available == left
    ));
    assert_eq!((net.balance(USER), limit(&net, USER, GATEWAY)), (user_before, Some(left)));
    assert_eq!(net.balance(GATEWAY), gateway_before - fee);
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn deposited_funds_cannot_be_spent_twice_across_gateways() {
    let mut net = Net::market(test_params());
    let fee = net.ledger.params().tx_fee;
    // A second gateway (a worker account serves as one: the deposit names any account).
    let other = WORKER2;
    let all = net.balance(USER) - fee;
    net.ok(USER, allow(&net, GATEWAY, all - fee));
    // The balance left is one fee: a second deposit of the same funds is refused.
    assert!(matches!(net.run(USER, allow(&net, other, 1_000)), Err(LedgerError::InsufficientBalance { .. })));
    assert_eq!(limit(&net, USER, other), None);
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn a_cut_stays_spendable_through_its_notice_and_is_then_released_to_the_balance() {
    let mut net = Net::market(test_params());
    let fee = net.ledger.params().tx_fee;
    net.ok(USER, allow(&net, GATEWAY, 100_000));
    let balance = net.balance(USER);
    net.ok(USER, allow(&net, GATEWAY, 0));
    // Announced, not done: the deposit still pays a task the gateway opened before it saw the
    // cut, and the gateway sees what is left to spend safely.
    let d = net.ledger.account(&net.pk(USER)).allowance(&net.pk(GATEWAY)).cloned().unwrap();
    assert_eq!((d.limit, d.spendable()), (100_000, 0));
    net.ok(GATEWAY, task_for_user(&net, 10));
    assert_eq!(limit(&net, USER, GATEWAY), Some(100_000 - 100 - fee));
    // Nothing to release before the notice ends.
    assert!(matches!(net.run(USER, TxKind::Withdraw), Err(LedgerError::NothingToWithdraw { .. })));
    let until = net.ledger.time_ms() + DEPOSIT_NOTICE_MS;
    let height = net.ledger.height();
    net.advance_past(height, until);
    let events = net.ok(USER, TxKind::Withdraw);
    // The task got no result by its deadline within the notice: its escrow came back first.
    let released = 100_000 - fee;
    assert!(events.contains(&Event::Withdrawn { account: net.pk(USER), amount: released }), "{events:?}");
    assert_eq!(net.balance(USER), balance - 3 * fee + released);
    assert_eq!(limit(&net, USER, GATEWAY), None);
    assert!(matches!(
        net.run(GATEWAY, task_for_user(&net, 10)),
        Err(LedgerError::AllowanceShort { available: 0, .. })
    ));
    assert_eq!(net.held(), net.ledger.totals().supply);
    // A raise during a notice cancels the cut.
    net.ok(USER, allow(&net, GATEWAY, 5_000));
    net.ok(USER, allow(&net, GATEWAY, 1_000));
    net.ok(USER, allow(&net, GATEWAY, 6_000));
    let d = net.ledger.account(&net.pk(USER)).allowance(&net.pk(GATEWAY)).cloned().unwrap();
    assert_eq!((d.limit, d.release_ms, d.spendable()), (6_000, 0, 6_000));
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn only_the_deposits_gateway_naming_itself_spends_it_and_escrow_returned_at_the_deadline_comes_back() {
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

    // An open task's escrow returned at its deadline goes back to the deposit.
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
    assert_eq!(net.balance(USER), DEV_BALANCE - net.fees(USER, 0) - 100_000);
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn a_signed_only_deposit_pays_once_per_voucher_its_owner_signed_and_nothing_else() {
    let mut net = Net::market(test_params());
    let fee = net.ledger.params().tx_fee;
    net.ok(USER, allow_signed_only(&net, GATEWAY, 100_000));
    let spend = 100 * PRICE_FLOOR + fee;
    // No voucher: the gateway's word is not enough on a deposit without an API key.
    assert!(matches!(
        net.run(GATEWAY, task_for_user(&net, 100)),
        Err(LedgerError::Invalid { what: "task", .. })
    ));

    let good = voucher(&net, spend, 60_000, 1);
    let tx = net.tx(GATEWAY, task_with(&net, 100, good));
    let task = tx.id();
    net.block(&[tx]).receipts[0].result.clone().unwrap();
    assert_eq!(net.ledger.task(&task).unwrap().escrow, 100 * PRICE_FLOOR);
    assert_eq!(limit(&net, USER, GATEWAY), Some(100_000 - spend));
    // The same voucher again: refused, whatever else the task says.
    let replay = net.run(GATEWAY, task_with(&net, 100, good));
    assert!(
        matches!(&replay, Err(LedgerError::Invalid { what: "voucher", reason }) if reason.contains("paid already"))
    );
    let replay_smaller = net.run(GATEWAY, task_with(&net, 50, good));
    assert!(matches!(replay_smaller, Err(LedgerError::Invalid { what: "voucher", .. })));

    // Over its cap, expired, living too long, signed by someone else, for another chain, for
    // another gateway or model, or without a payer: refused, and the deposit did not move.
    let refusals = [
        ("over its cap", task_with(&net, 101, voucher(&net, spend, 60_000, 2))),
        ("expired", task_with(&net, 100, voucher(&net, spend, 0, 3))),
        ("too long-lived", task_with(&net, 100, voucher(&net, spend, VOUCHER_TTL_MAX_MS + 10_000, 4))),
        ("signed by another key", {
            let mut v = voucher(&net, spend, 60_000, 5);
            v.signature = v.voucher.sign(&net.keys[WORKER2], CHAIN).signature;
            task_with(&net, 100, v)
        }),
        ("signed for another chain", {
            let v = voucher(&net, spend, 60_000, 6);
            task_with(&net, 100, v.voucher.sign(&net.keys[USER], "another-chain"))
        }),
        ("for another gateway", {
            let mut v = voucher(&net, spend, 60_000, 7).voucher;
            v.gateway = net.pk(WORKER2);
            task_with(&net, 100, v.sign(&net.keys[USER], CHAIN))
        }),
        ("for another model", {
            let mut v = voucher(&net, spend, 60_000, 8).voucher;
            v.model = 2;
            task_with(&net, 100, v.sign(&net.keys[USER], CHAIN))
        }),
    ];
    for (what, kind) in refusals {
        let before = limit(&net, USER, GATEWAY);
        let out = net.run(GATEWAY, kind);
        assert!(matches!(out, Err(LedgerError::Invalid { what: "voucher", .. })), "{what}: {out:?}");
        assert_eq!(limit(&net, USER, GATEWAY), before, "{what}");
    }
    let without_payer = match task_with(&net, 100, voucher(&net, spend, 60_000, 9)) {
        TxKind::SubmitTask(s) => TxKind::SubmitTask(SubmitTask { payer: None, ..s }),
        _ => unreachable!(),
    };
    assert!(matches!(net.run(GATEWAY, without_payer), Err(LedgerError::Invalid { what: "task", .. })));

    // A deposit with an API key takes vouchers too; each is remembered only until it expires.
    net.ok(USER, allow(&net, GATEWAY, 100_000));
    net.ok(GATEWAY, task_with(&net, 100, voucher(&net, spend, 1_000, 10)));
    assert_eq!(net.ledger.account(&net.pk(USER)).allowance(&net.pk(GATEWAY)).unwrap().vouchers.len(), 2);
    let height = net.ledger.height();
    let later = net.ledger.time_ms() + 61_000;
    net.advance_past(height, later);
    net.ok(GATEWAY, task_with(&net, 100, voucher(&net, spend, 1_000, 11)));
    assert_eq!(net.ledger.account(&net.pk(USER)).allowance(&net.pk(GATEWAY)).unwrap().vouchers.len(), 1);
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
    // Emptied, the deposit leaves once its notice has passed and its funds are released.
    net.ok(USER, TxKind::Allow(Allow { limit: 0, ..again }));
    assert!(matches!(net.run(USER, extra.clone()), Err(LedgerError::Invalid { what: "allowance", .. })));
    let height = net.ledger.height();
    let until = net.ledger.time_ms() + DEPOSIT_NOTICE_MS;
    net.advance_past(height, until);
    net.ok(USER, extra);
    assert_eq!(net.ledger.account(&net.pk(USER)).allowances.len(), ALLOWANCES_MAX);
    assert_eq!(net.held(), net.ledger.totals().supply);
}
