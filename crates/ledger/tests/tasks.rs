#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Task escrow, results, refunds, pipelines, deadlines and reclaiming.

mod common;
use common::*;
use polylink_ledger::{DEV_BALANCE, LedgerError, TaskStatus};
use polylink_types::*;

#[test]
fn submit_escrows_and_result_refunds_unused_tokens() {
    let mut net = Net::market(test_params());
    let task = net.submit_task(100, &[WORKER]);
    let fee = net.ledger.params().tx_fee;
    assert_eq!(net.balance(USER), DEV_BALANCE - 1_000 - fee, "100 tokens x price 10 escrowed, and the fee");
    let events = net.submit_result(GATEWAY, task, (20, 30)).unwrap();
    assert_eq!(events, vec![Event::ResultSubmitted { task, billed_tokens: 50, fee: 500, refund: 500 }]);
    assert_eq!(net.balance(USER), DEV_BALANCE - 500 - fee);
    let t = net.ledger.task(&task).unwrap();
    assert_eq!((t.escrow, t.status), (500, TaskStatus::AwaitingCommittee));
    assert_eq!(net.ledger.model(1).unwrap().epoch_tokens, 0, "demand counts once the task is paid");
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn only_the_tasks_gateway_may_report_and_only_once() {
    let mut net = Net::market(test_params());
    let task = net.submit_task(100, &[WORKER]);
    // Neither the user nor the worker itself: the gateway named on the task reports.
    for outsider in [USER, WORKER] {
        assert!(matches!(
            net.submit_result(outsider, task, (1, 1)),
            Err(LedgerError::WrongRole { action: "submit a result", .. })
        ));
    }
    assert!(matches!(
        net.submit_result_receipts(GATEWAY, task, (1, 1), &[]),
        Err(LedgerError::Invalid { what: "result", .. })
    ));
    assert!(matches!(
        net.submit_result(GATEWAY, task, (60, 41)),
        Err(LedgerError::Invalid { what: "result", .. })
    ));
    net.submit_result(GATEWAY, task, (1, 1)).unwrap();
    assert!(matches!(net.submit_result(GATEWAY, task, (1, 1)), Err(LedgerError::WrongTaskStatus { .. })));
    assert_eq!(net.submit_result(GATEWAY, Hash32::ZERO, (1, 1)), Err(LedgerError::UnknownTask(Hash32::ZERO)));
}

#[test]
fn price_above_max_unknown_model_and_bad_pipelines_are_refused() {
    let mut net = Net::market(test_params());
    let mk = |net: &Net, model: ModelId, max_price: Amount, workers: &[usize]| {
        TxKind::SubmitTask(SubmitTask {
            model,
            max_tokens: 10,
            prompt_hash: Hash32::ZERO,
            max_price,
            workers: BoundedVec::new(workers.iter().map(|w| net.pk(*w)).collect()).unwrap(),
            gateway: net.pk(GATEWAY),
            seed: 0,
            payer: None,
            voucher: None,
        })
    };
    let k = mk(&net, 1, PRICE_FLOOR - 1, &[WORKER]);
    assert!(matches!(net.run(USER, k), Err(LedgerError::PriceAboveMax { price: 10, max_price: 9, .. })));
    let k = mk(&net, 7, PRICE_FLOOR, &[WORKER]);
    assert_eq!(net.run(USER, k), Err(LedgerError::UnknownModel(7)));
    let k = mk(&net, 1, PRICE_FLOOR, &[USER]);
    assert!(matches!(net.run(USER, k), Err(LedgerError::UnknownWorker(_))));
    let k = mk(&net, 1, PRICE_FLOOR, &[]);
    assert!(matches!(net.run(USER, k), Err(LedgerError::Invalid { what: "task", .. })));
    let k = mk(&net, 1, PRICE_FLOOR, &[WORKER, WORKER]);
    assert!(matches!(net.run(USER, k), Err(LedgerError::Invalid { what: "task", .. })));
    // Each refused SubmitTask was carried (its nonce consumed) and paid its fee, nothing more.
    let fee = net.ledger.params().tx_fee;
    assert_eq!(net.balance(USER), DEV_BALANCE - 5 * fee, "nothing escrowed by refused tasks");
}

#[test]
fn pipeline_needs_contiguous_ranges_and_pays_stages_by_layers_times_rows() {
    let mut net = Net::market(test_params());
    net.ok(WORKER, register_worker(&[(0, 12)]));
    net.ok(WORKER2, register_worker(&[(12, LAYERS)]));
    let wrong_order = TxKind::SubmitTask(SubmitTask {
        model: 1,
        max_tokens: 10,
        prompt_hash: Hash32::ZERO,
        max_price: PRICE_FLOOR,
        workers: BoundedVec::new(vec![net.pk(WORKER2), net.pk(WORKER)]).unwrap(),
        gateway: net.pk(GATEWAY),
        seed: 0,
        payer: None,
        voucher: None,
    });
    assert!(matches!(net.run(USER, wrong_order), Err(LedgerError::Invalid { what: "task", .. })));
    let task = net.submit_task(1_000, &[WORKER, WORKER2]);
    net.submit_result(GATEWAY, task, (300, 700)).unwrap();
    let committee = net.committee(&task);
    let w1 = net.balance(WORKER);
    let w2 = net.balance(WORKER2);
    net.score(task, &committee.iter().map(|&v| (v, Some(1_000), true)).collect::<Vec<_>>());
    // fee 10_000; worker pool = 10_000 - 10% royalty - 5% treasury - 10% validators = 7_500;
    // median 1000 pays all of it, by layers (12 and 18 of 30, the same rows): 40% / 60%.
    assert_eq!(net.balance(WORKER) - w1, 3_000);
    assert_eq!(net.balance(WORKER2) - w2, 4_500);
}

#[test]
fn a_stand_in_that_took_over_a_failed_stage_is_paid_for_its_receipt_and_bad_ones_are_refused() {
    const STAND_IN: usize = 9;
    let mut net = Net::market(test_params());
    net.ok(WORKER, register_worker(&[(0, 12)]));
    net.ok(WORKER2, register_worker(&[(12, LAYERS)]));
    let task = net.submit_task(1_000, &[WORKER, WORKER2]);
    // Stage 2 died after 300 of the 1,000 rows; the whole-model worker replayed them and finished
    // layers 12..30 (1,000 rows). The failed stage signed nothing.
    let head = net.receipt(WORKER, task, (0, 12), 1_000);
    let stand_in = net.receipt(STAND_IN, task, (12, LAYERS), 1_000);

    // Not a worker yet: refused, and nothing changes.
    let refused = net.submit_result_receipts(GATEWAY, task, (300, 700), &[head, stand_in]);
    assert!(matches!(refused, Err(LedgerError::UnknownWorker(_))), "{refused:?}");
    net.ok(STAND_IN, TxKind::Bond(Bond { amount: 10_000 }));
    net.ok(STAND_IN, register_worker(&[(0, LAYERS)]));
    for receipts in [
        vec![head],                     // layers 12..30 uncovered
        vec![head, stand_in, stand_in], // twice
    ] {
        let refused = net.submit_result_receipts(GATEWAY, task, (300, 700), &receipts);
        assert!(
            matches!(
                refused,
                Err(LedgerError::Invalid { what: "result", .. } | LedgerError::BadReceipt { .. })
            ),
            "{refused:?}"
        );
    }

    net.submit_result_receipts(GATEWAY, task, (300, 700), &[head, stand_in]).unwrap();
    let committee = net.committee(&task);
    let before = [WORKER, WORKER2, STAND_IN].map(|i| net.balance(i));
    net.score(task, &committee.iter().map(|&v| (v, Some(1_000), true)).collect::<Vec<_>>());
    // Worker pool 7_500 (as above), by layers x rows: 12 / 18 of 30; the failed stage nothing.
    let after = [WORKER, WORKER2, STAND_IN].map(|i| net.balance(i));
    assert_eq!([after[0] - before[0], after[1] - before[1], after[2] - before[2]], [3_000, 0, 4_500]);
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn an_open_task_past_its_deadline_gives_the_escrow_back_without_anyone_acting() {
    let mut net = Net::market(test_params());
    let task = net.submit_task(100, &[WORKER]);
    let t = net.ledger.task(&task).unwrap().clone();
    // 5 s base plus 100 tokens at 4 x the worker's registered 30 layers x 200 us.
    assert_eq!(t.deadline_ms - t.submitted_ms, 5_000 + 100 * 24);
    let reclaim = TxKind::ReclaimTask(ReclaimTask { task });
    assert!(matches!(
        net.run(USER, reclaim.clone()),
        Err(LedgerError::OutsideWindow { action: "reclaim", .. })
    ));
    assert!(matches!(net.run(WORKER, reclaim.clone()), Err(LedgerError::WrongRole { .. })));
    while net.next_ms <= t.deadline_ms {
        net.block(&[]);
    }
    // The first block past the deadline refuses the result and returns the escrow at its end.
    assert!(matches!(net.submit_result(GATEWAY, task, (1, 1)), Err(LedgerError::OutsideWindow { .. })));
    assert_eq!(net.ledger.task(&task).unwrap().status, TaskStatus::Reclaimed);
    assert_eq!(
        net.balance(USER),
        DEV_BALANCE - net.fees(USER, 0),
        "the escrow back, less its SubmitTask's fee"
    );
    assert_eq!(net.ledger.stake(&net.pk(WORKER)).at_risk_tasks, 0, "the worker's stake is free again");
    assert!(matches!(net.run(USER, reclaim), Err(LedgerError::WrongTaskStatus { .. })));
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn a_long_answer_gets_a_deadline_to_match_and_the_user_may_still_reclaim_by_hand() {
    let mut net = Net::market(test_params());
    let short = net.submit_task(100, &[WORKER]);
    let long = net.submit_task(2_000, &[WORKER]);
    let span = |net: &Net, id| {
        let t = net.ledger.task(id).unwrap();
        t.deadline_ms - t.submitted_ms
    };
    assert_eq!(span(&net, &long) - span(&net, &short), 1_900 * 24, "every token at the registered speed x4");
    // A reclaim in the first block past the deadline runs before the chain's own.
    let deadline = net.ledger.task(&short).unwrap().deadline_ms;
    while net.next_ms + BLOCK_MS <= deadline {
        net.block(&[]);
    }
    net.block(&[]);
    let events = net.ok(USER, TxKind::ReclaimTask(ReclaimTask { task: short }));
    assert_eq!(events, vec![Event::TaskReclaimed { task: short, amount: 1_000 }]);
    assert_eq!(net.ledger.task(&long).unwrap().status, TaskStatus::Open, "the long one still runs");
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn result_at_the_deadline_is_accepted_and_blocks_reclaim() {
    let mut net = Net::market(test_params());
    let task = net.submit_task(100, &[WORKER]);
    let deadline = net.ledger.task(&task).unwrap().deadline_ms;
    while net.next_ms + BLOCK_MS <= deadline {
        net.block(&[]);
    }
    net.submit_result(GATEWAY, task, (1, 1)).unwrap();
    assert!(matches!(
        net.run(USER, TxKind::ReclaimTask(ReclaimTask { task })),
        Err(LedgerError::WrongTaskStatus { .. })
    ));
}

#[test]
fn inactive_worker_cannot_take_tasks() {
    let mut net = Net::market(test_params());
    net.ok(WORKER, TxKind::Unbond(Unbond { amount: 9_500 }));
    let k = net.task_kind(10, &[WORKER]);
    assert!(matches!(net.run(USER, k), Err(LedgerError::StakeBelowMinimum { role: "worker", .. })));
}

#[test]
fn a_task_names_a_registered_gateway_and_the_gateway_an_endpoint() {
    let mut net = Net::market(test_params());
    let mk = |net: &Net, gateway: usize| {
        TxKind::SubmitTask(SubmitTask {
            model: 1,
            max_tokens: 10,
            prompt_hash: Hash32::ZERO,
            max_price: PRICE_FLOOR,
            workers: BoundedVec::new(vec![net.pk(WORKER)]).unwrap(),
            gateway: net.pk(gateway),
            seed: 0,
            payer: None,
            voucher: None,
        })
    };
    // The worker is no gateway until it registers as one; then one stake backs both roles.
    let refused = net.run(USER, mk(&net, WORKER));
    assert!(
        matches!(refused, Err(LedgerError::WrongRole { action: "serve a task as its gateway", .. })),
        "{refused:?}"
    );
    assert!(matches!(
        net.run(WORKER, register_gateway("not an address")),
        Err(LedgerError::BadEndpoint { .. })
    ));
    assert!(matches!(
        net.run(USER, register_gateway("127.0.0.1:9000")),
        Err(LedgerError::StakeBelowMinimum { role: "gateway", .. })
    ));
    let events = net.ok(WORKER, register_gateway("10.0.0.2:8080"));
    assert_eq!(events, vec![Event::GatewayRegistered { gateway: net.pk(WORKER) }]);
    assert_eq!(net.ledger.gateway(&net.pk(WORKER)).unwrap().endpoint.as_str(), "10.0.0.2:8080");
    let tx = net.tx(USER, mk(&net, WORKER));
    let task = tx.id();
    net.block(&[tx]).receipts[0].result.clone().unwrap();
    assert_eq!(net.ledger.task(&task).unwrap().gateway, net.pk(WORKER));
    // The market's gateway cannot report another gateway's task.
    assert!(matches!(net.submit_result(GATEWAY, task, (1, 1)), Err(LedgerError::WrongRole { .. })));
    net.submit_result(WORKER, task, (1, 1)).unwrap();
}
