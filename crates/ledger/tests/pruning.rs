#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The state stays bounded: a task leaves it `task_retention_blocks` after it became final,
//! however many tasks a spammer opens, and its last record comes out of the block for the
//! node's own index.

mod common;
use common::*;
use polylink_ledger::TaskStatus;
use polylink_types::*;

/// Default retention (blocks).
const RETENTION: u64 = 1_000;

#[test]
fn a_flood_of_tasks_does_not_grow_the_state_without_bound() {
    let mut net = Net::new(test_params());
    assert_eq!(net.ledger.params().task_retention_blocks, RETENTION);
    net.ok(DEV, register_model(PRICE_FLOOR, 1_000));
    net.ok(WORKER, TxKind::Bond(Bond { amount: 10_000 }));
    net.ok(WORKER, register_worker(&[(0, LAYERS)]));
    net.gateway();
    // No validator: each task settles (refunded) at its draw, three blocks a task.
    let mut tasks = Vec::new();
    while net.ledger.height() < 2 * RETENTION {
        let task = net.submit_task(1, &[WORKER]);
        net.submit_result(GATEWAY, task, (1, 0)).unwrap();
        net.block(&[]);
        assert!(matches!(net.ledger.task(&task).unwrap().status, TaskStatus::Settled(_)));
        tasks.push(task);
    }
    let held = net.ledger.state().tasks.len() as u64;
    assert!(held <= RETENTION / 3 + 1, "{held} of {} tasks still in the state", tasks.len());
    assert!(net.ledger.task(&tasks[0]).is_none(), "the oldest task was pruned");
    assert!(net.ledger.task(tasks.last().unwrap()).is_some(), "a recent one is still there");
    // The rest leave as their retention ends, each handed out once with its final record.
    let mut pruned = Vec::new();
    for _ in 0..=RETENTION {
        pruned.extend(net.block(&[]).pruned);
    }
    assert!(net.ledger.state().tasks.is_empty());
    assert_eq!(pruned.len() as u64, held);
    assert!(pruned.iter().all(|(_, t)| matches!(t.status, TaskStatus::Settled(_)) && t.escrow == 0));
    assert_eq!(net.held(), net.ledger.totals().supply);
    assert_eq!(net.minted(), (ACCOUNTS as Amount) * polylink_ledger::DEV_BALANCE);
}
