#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Worker receipts: a worker answers for a task (is paid, struck or slashed for it) only through
//! a receipt it signed. Before receipts a head could name any registered worker as a stage, then
//! withhold the transcript so every named worker was struck and, at the third strike, slashed;
//! and the head's own shares decided everyone's pay.

mod common;
use common::*;
use polylink_ledger::LedgerError;
use polylink_types::*;

const VICTIM: usize = WORKER2;
const STAND_IN: usize = 9;

/// The head (WORKER, layers 0..12) and the victim (layers 12..30) registered for model 1.
fn pipeline_market() -> Net {
    let mut net = Net::market(test_params());
    net.ok(WORKER, register_worker(&[(0, 12)]));
    net.ok(VICTIM, register_worker(&[(12, LAYERS)]));
    net
}

/// Every committee member of `task` commits and reveals `score`; returns the settlement events.
fn score_all(net: &mut Net, task: TaskId, score: u16) -> Vec<Event> {
    let committee = net.committee(&task);
    net.score(task, &committee.iter().map(|&v| (v, Some(score), true)).collect::<Vec<_>>())
}

#[test]
fn a_head_cannot_put_a_worker_that_did_not_sign_into_its_result() {
    let mut net = pipeline_market();
    let task = net.submit_task(1_000, &[WORKER, VICTIM]);
    let head = net.receipt(WORKER, task, (0, 12), 500);

    // Its own receipt alone leaves the victim's layers uncovered: a billed result is refused.
    let refused = net.submit_result_receipts(GATEWAY, task, (200, 300), &[head]);
    assert!(matches!(refused, Err(LedgerError::Invalid { what: "result", .. })), "{refused:?}");
    // A receipt in the victim's name that the head signed itself.
    let forged = WorkReceipt {
        task,
        worker: net.pk(VICTIM),
        layer_start: 12,
        layer_end: LAYERS,
        rows: 500,
        fed: Hash32::ZERO,
        drawn: Hash32::ZERO,
    }
    .sign(&net.keys[WORKER]);
    let refused = net.submit_result_receipts(GATEWAY, task, (200, 300), &[head, forged]);
    assert!(matches!(refused, Err(LedgerError::BadReceipt { .. })), "{refused:?}");
    // The victim's genuine receipt, but for another task (replayed).
    let other = net.submit_task(1_000, &[WORKER, VICTIM]);
    let replayed = net.receipt(VICTIM, other, (12, LAYERS), 500);
    let refused = net.submit_result_receipts(GATEWAY, task, (200, 300), &[head, replayed]);
    assert!(matches!(refused, Err(LedgerError::BadReceipt { .. })), "{refused:?}");
    // A receipt changed after signing (more rows).
    let mut tampered = net.receipt(VICTIM, task, (12, LAYERS), 500);
    tampered.receipt.rows = 5_000;
    let refused = net.submit_result_receipts(GATEWAY, task, (200, 300), &[head, tampered]);
    assert!(matches!(refused, Err(LedgerError::BadReceipt { .. })), "{refused:?}");
    // Layers the signer is not registered for.
    let stretched = net.receipt(WORKER, task, (0, LAYERS), 500);
    let refused = net.submit_result_receipts(GATEWAY, task, (200, 300), &[stretched]);
    assert!(matches!(refused, Err(LedgerError::BadReceipt { .. })), "{refused:?}");
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn a_head_that_names_a_victim_and_withholds_the_transcript_never_costs_it_stake() {
    // The attack of the issue: the head names a registered worker as its second stage, reports
    // the task and withholds the transcript, so the committee scores it 0. Three such tasks used
    // to slash every named worker. Without the victim's receipt the head can report only a
    // result that bills nothing, for which nobody but the signers answers.
    let mut net = pipeline_market();
    let victim_before = net.ledger.stake(&net.pk(VICTIM));
    let head_balance = net.balance(WORKER);
    for _ in 0..3 {
        let task = net.submit_task(1_000, &[WORKER, VICTIM]);
        assert_eq!(net.ledger.stake(&net.pk(VICTIM)).at_risk_tasks, 1, "named: at risk until the result");
        net.submit_result_receipts(GATEWAY, task, (0, 0), &[]).unwrap();
        assert_eq!(net.ledger.stake(&net.pk(VICTIM)).at_risk_tasks, 0, "no receipt: let go at the result");
        score_all(&mut net, task, 0);
    }
    let victim = net.ledger.stake(&net.pk(VICTIM));
    assert_eq!((victim.bonded, victim.strikes), (victim_before.bonded, 0), "the victim is untouched");
    assert_eq!(net.balance(WORKER), head_balance, "and the head earned nothing by it");
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn only_the_workers_that_signed_are_struck_and_paid() {
    let mut net = pipeline_market();
    net.ok(STAND_IN, TxKind::Bond(Bond { amount: 10_000 }));
    net.ok(STAND_IN, register_worker(&[(0, LAYERS)]));
    // The victim's stage failed; the stand-in replayed and finished its layers and signed.
    let task = net.submit_task(1_000, &[WORKER, VICTIM]);
    let receipts =
        [net.receipt(WORKER, task, (0, 12), 1_000), net.receipt(STAND_IN, task, (12, LAYERS), 1_000)];
    net.submit_result_receipts(GATEWAY, task, (300, 700), &receipts).unwrap();
    assert_eq!(net.ledger.stake(&net.pk(VICTIM)).at_risk_tasks, 0);
    assert_eq!(net.ledger.stake(&net.pk(STAND_IN)).at_risk_tasks, 1, "a signer answers until settlement");
    let events = score_all(&mut net, task, 0);
    let struck: Vec<PublicKey> = events
        .iter()
        .filter_map(|e| match e {
            Event::Struck { account, .. } => Some(*account),
            _ => None,
        })
        .collect();
    assert_eq!(struck, [net.pk(WORKER), net.pk(STAND_IN)], "the signers, and only they");
    for i in [WORKER, VICTIM, STAND_IN] {
        assert_eq!(net.ledger.stake(&net.pk(i)).at_risk_tasks, 0);
    }
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn a_stage_that_claims_more_rows_than_were_billed_gains_nothing() {
    let pay = |victim_rows: u32| {
        let mut net = pipeline_market();
        let task = net.submit_task(1_000, &[WORKER, VICTIM]);
        let receipts =
            [net.receipt(WORKER, task, (0, 12), 1_000), net.receipt(VICTIM, task, (12, LAYERS), victim_rows)];
        net.submit_result_receipts(GATEWAY, task, (300, 700), &receipts).unwrap();
        let before = [net.balance(WORKER), net.balance(VICTIM)];
        score_all(&mut net, task, 1_000);
        assert_eq!(net.held(), net.ledger.totals().supply);
        [net.balance(WORKER) - before[0], net.balance(VICTIM) - before[1]]
    };
    // Worker pool 7_500 by layers (12 and 18 of 30) when both computed the 1,000 rows billed.
    assert_eq!(pay(1_000), [3_000, 4_500]);
    assert_eq!(pay(u32::MAX), [3_000, 4_500], "rows count at most the billed tokens");
    // A stage that computed half the rows weighs half: 12 x 1,000 against 18 x 500 (dust to the head).
    assert_eq!(pay(500), [4_286, 3_214]);
}
