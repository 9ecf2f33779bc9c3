#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Models: one registration per artifact, the royalty only to the developer the artifact names,
//! and prices that follow only paid demand from others over the staked workers' capacity.

mod common;
use common::*;
use polylink_ledger::{LedgerError, Params, TREASURY, TaskStatus};
use polylink_types::*;

const SQUATTER: usize = 9;

/// A task by `user` on model 1 served by `worker`, reported with `tokens` and scored `score` by
/// its whole committee; returns its id once settled.
fn scored(net: &mut Net, user: usize, worker: usize, tokens: (u32, u32), score: Option<u16>) -> TaskId {
    let kind = TxKind::SubmitTask(SubmitTask {
        model: 1,
        max_tokens: tokens.0 + tokens.1,
        prompt_hash: Hash32::digest(&[b"prompt"]),
        max_price: net.ledger.model(1).unwrap().price,
        workers: BoundedVec::new(vec![net.pk(worker)]).unwrap(),
        gateway: net.pk(GATEWAY),
        seed: 1,
        payer: None,
        voucher: None,
    });
    let tx = net.tx(user, kind);
    let task = tx.id();
    net.block(&[tx]).receipts[0].result.clone().unwrap();
    net.submit_result(GATEWAY, task, tokens).unwrap();
    let committee = net.committee(&task);
    net.score(task, &committee.iter().map(|&v| (v, score, true)).collect::<Vec<_>>());
    assert!(matches!(net.ledger.task(&task).unwrap().status, TaskStatus::Settled(_)));
    task
}

/// Worker and validators staked and registered for model 1 (registered by the caller).
fn staff(net: &mut Net, layer_time_us: u32) {
    net.ok(WORKER, TxKind::Bond(Bond { amount: 10_000 }));
    let mut register = register_worker(&[(0, LAYERS)]);
    if let TxKind::RegisterWorker(w) = &mut register {
        let mut served = w.served.as_slice().to_vec();
        served[0].layer_time_us = layer_time_us;
        w.served = BoundedVec::new(served).unwrap();
    }
    net.ok(WORKER, register);
    net.gateway();
    for (n, v) in VALIDATORS.enumerate() {
        net.ok(v, TxKind::Bond(Bond { amount: 5_000 + 1_000 * n as Amount }));
        net.ok(v, TxKind::RegisterValidator);
    }
}

#[test]
fn an_artifact_is_registered_once() {
    let mut net = Net::new(test_params());
    let events = net.ok(DEV, register_model(PRICE_FLOOR, 1_000));
    assert_eq!(events, vec![Event::ModelRegistered { model: 1, developer: net.pk(DEV) }]);
    let (nonce, root) = (net.ledger.account(&net.pk(SQUATTER)).nonce, net.ledger.state().models.clone());
    // The same artifact again, by someone else and on other terms: refused, nothing changes.
    let again = net.run(SQUATTER, register_model(PRICE_FLOOR, 1_000));
    assert_eq!(
        again,
        Err(LedgerError::ArtifactRegistered {
            artifact: net.ledger.model(1).unwrap().artifact_hash,
            model: 1
        })
    );
    assert_eq!(net.ledger.account(&net.pk(SQUATTER)).nonce, nonce + 1, "only its nonce moved");
    assert_eq!(net.ledger.state().models, root);
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn a_squatter_gains_nothing_and_the_developer_still_claims() {
    let mut net = Net::new(test_params());
    // The developer publishes an artifact that names its key; the squatter registers it first,
    // without the proof (it cannot make one naming itself).
    let published = artifact(b"a public model", &net.pk(DEV));
    let events = net.ok(SQUATTER, register_artifact(&published, false, PRICE_FLOOR, 2_000));
    assert_eq!(events, vec![Event::ModelRegistered { model: 1, developer: TREASURY }]);
    let mut forged = ArtifactClaim::from_artifact(&published).unwrap();
    let mut tail = forged.tail.as_slice().to_vec();
    let n = tail.len();
    tail[n - 32..].copy_from_slice(&net.pk(SQUATTER).0);
    forged.tail = BoundedVec::new(tail).unwrap();
    let claim = |claim: ArtifactClaim| TxKind::ClaimModel(ClaimModel { model: 1, claim });
    let artifact_hash = Hash32::digest(&[&published]);
    assert_eq!(
        net.run(SQUATTER, claim(forged.clone())),
        Err(LedgerError::BadArtifactClaim { artifact: artifact_hash })
    );
    // Nor can it register an artifact with a claim that proves nothing.
    let mut bad = register_artifact(&artifact(b"another", &net.pk(SQUATTER)), true, PRICE_FLOOR, 2_000);
    if let TxKind::RegisterModel(m) = &mut bad {
        m.claim = Some(forged);
    }
    assert!(matches!(net.run(SQUATTER, bad), Err(LedgerError::BadArtifactClaim { .. })));
    staff(&mut net, 200);
    let squatter_after_registering = net.balance(SQUATTER);

    // A paid task: the royalty goes to the treasury, not to whoever registered.
    let (dev0, treasury0) = (net.balance(DEV), net.ledger.totals().treasury);
    let task = scored(&mut net, USER, WORKER, (100, 400), Some(900));
    let fee = net.ledger.task(&task).unwrap().result.clone().unwrap().fee;
    assert_eq!(net.ledger.task(&task).unwrap().status, TaskStatus::Settled(SettleOutcome::Paid));
    let royalty = fee * 2_000 / 10_000;
    assert_eq!(net.balance(SQUATTER), squatter_after_registering, "the squatter earns nothing");
    assert_eq!(net.balance(DEV), dev0);
    let treasury_share = fee * u128::from(test_params().treasury_share_bps) / 10_000;
    let validators = fee * u128::from(test_params().validator_share_bps) / 10_000;
    assert_eq!(net.ledger.totals().treasury - treasury0, royalty + treasury_share + validators % 3);

    // The developer shows its artifact's proof and is paid from then on.
    let proof = ArtifactClaim::from_artifact(&published).unwrap();
    assert_eq!(
        net.ok(DEV, claim(proof.clone())),
        vec![Event::ModelClaimed { model: 1, developer: net.pk(DEV) }]
    );
    assert_eq!(
        net.run(SQUATTER, claim(proof)),
        Err(LedgerError::ModelClaimed { model: 1, developer: net.pk(DEV) })
    );
    let dev1 = net.balance(DEV);
    let task = scored(&mut net, USER, WORKER, (100, 400), Some(900));
    let fee = net.ledger.task(&task).unwrap().result.clone().unwrap().fee;
    assert_eq!(net.balance(DEV) - dev1, fee * 2_000 / 10_000, "the royalty reaches the developer");
    // Its refused claim cost it the fee, as any carried transaction does.
    assert_eq!(net.balance(SQUATTER), squatter_after_registering - net.ledger.params().tx_fee);
    assert_eq!(net.held(), net.ledger.totals().supply);
}

/// A floor high enough that a price step is not lost to integer rounding.
const FLOOR: Amount = 1_000;

fn price_params() -> Params {
    Params { epoch_length_blocks: 100, ..test_params() }
}

#[test]
fn refunded_failed_and_wash_tasks_do_not_move_the_price() {
    let mut net = Net::new(price_params());
    net.ok(DEV, register_model(FLOOR, 1_000));
    staff(&mut net, 200);
    net.ok(WORKER2, TxKind::Bond(Bond { amount: 10_000 }));
    net.ok(WORKER2, register_worker(&[(0, LAYERS)]));
    // Capacity: two staked workers, 100 s at 20 ms a token => 10_000 tokens. Every task below
    // reports 9_000 tokens: counted, any of them alone would raise the price.
    let failed = scored(&mut net, USER, WORKER, (1_000, 8_000), Some(100));
    assert_eq!(net.ledger.task(&failed).unwrap().status, TaskStatus::Settled(SettleOutcome::LowQuality));
    let refunded = scored(&mut net, USER, WORKER, (1_000, 8_000), None);
    assert_eq!(net.ledger.task(&refunded).unwrap().status, TaskStatus::Settled(SettleOutcome::NoQuorum));
    // Wash trading: the worker's own account buys from itself, and is paid.
    let wash = scored(&mut net, WORKER2, WORKER2, (1_000, 8_000), Some(900));
    assert_eq!(net.ledger.task(&wash).unwrap().status, TaskStatus::Settled(SettleOutcome::Paid));
    assert_eq!(net.ledger.model(1).unwrap().epoch_tokens, 0);
    assert!(net.ledger.height() < 100);
    net.advance_to(100);
    assert_eq!(net.ledger.model(1).unwrap().price, FLOOR, "no paid demand from others");
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn self_reported_layer_times_do_not_move_the_price() {
    // The same paid demand on one worker that claims to be very fast and one that claims to be
    // very slow: the price moves the same way.
    let price_after = |layer_time_us: u32| {
        let mut net = Net::new(price_params());
        net.ok(DEV, register_model(FLOOR, 1_000));
        staff(&mut net, layer_time_us);
        // 4_500 of 5_000 tokens of capacity (100 s at 20 ms): 900_000 ppm, +10%.
        let task = scored(&mut net, USER, WORKER, (500, 4_000), Some(900));
        assert_eq!(net.ledger.task(&task).unwrap().status, TaskStatus::Settled(SettleOutcome::Paid));
        net.advance_to(100);
        assert_eq!(net.held(), net.ledger.totals().supply);
        net.ledger.model(1).unwrap().price
    };
    assert_eq!(price_after(1), 1_100);
    assert_eq!(price_after(u32::MAX), 1_100);
}
