#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Model, worker and validator registries, minimum stakes and role checks.

mod common;
use common::*;
use polylink_ledger::LedgerError;
use polylink_types::*;

#[test]
fn model_registration_assigns_ids_and_validates_fields() {
    let mut net = Net::new(test_params());
    assert_eq!(
        net.ok(DEV, register_model(10, 500)),
        vec![Event::ModelRegistered { model: 1, developer: net.pk(DEV) }]
    );
    let m = net.ledger.model(1).unwrap();
    assert_eq!((m.price, m.layer_count, m.developer), (10, LAYERS, net.pk(DEV)));
    assert!(matches!(
        net.run(DEV, register_model(10, 9_000)),
        Err(LedgerError::Invalid { what: "model", .. })
    ));
    assert!(matches!(net.run(DEV, register_model(0, 100)), Err(LedgerError::Invalid { .. })));
    assert_eq!(
        net.ok(DEV, register_model(20, 0)),
        vec![Event::ModelRegistered { model: 2, developer: net.pk(DEV) }]
    );
}

#[test]
fn workers_and_validators_need_their_minimum_stake() {
    let mut net = Net::new(test_params());
    net.ok(DEV, register_model(10, 500));
    assert!(matches!(
        net.run(WORKER, register_worker(&[(0, LAYERS)])),
        Err(LedgerError::StakeBelowMinimum { role: "worker", have: 0, need: 1_000, .. })
    ));
    assert!(matches!(
        net.run(3, TxKind::RegisterValidator),
        Err(LedgerError::StakeBelowMinimum { role: "validator", .. })
    ));
    net.ok(WORKER, TxKind::Bond(Bond { amount: 1_000 }));
    net.ok(WORKER, register_worker(&[(0, 10), (10, LAYERS)]));
    assert_eq!(net.ledger.worker(&net.pk(WORKER)).unwrap().served.len(), 2);
    net.ok(3, TxKind::Bond(Bond { amount: 1_000 }));
    net.ok(3, TxKind::RegisterValidator);
    assert!(matches!(net.run(3, TxKind::RegisterValidator), Err(LedgerError::AlreadyRegistered { .. })));
}

#[test]
fn worker_ranges_must_fit_the_model() {
    let mut net = Net::new(test_params());
    net.ok(DEV, register_model(10, 500));
    net.ok(WORKER, TxKind::Bond(Bond { amount: 1_000 }));
    for bad in [&[(0, LAYERS + 1)][..], &[(5, 5)], &[]] {
        assert!(matches!(
            net.run(WORKER, register_worker(bad)),
            Err(LedgerError::Invalid { what: "worker", .. })
        ));
    }
    let unknown_model = TxKind::RegisterWorker(RegisterWorker {
        profile: DeviceProfile { memory_mib: 1, bandwidth_kbps: 1, latency_us: 0 },
        endpoint: BoundedString::new("127.0.0.1:7000").unwrap(),
        served: BoundedVec::new(vec![ServedRange {
            model: 9,
            layer_start: 0,
            layer_end: 1,
            layer_time_us: 1,
        }])
        .unwrap(),
    });
    assert_eq!(net.run(WORKER, unknown_model), Err(LedgerError::UnknownModel(9)));
}

#[test]
fn a_worker_endpoint_must_be_a_socket_address() {
    let mut net = Net::new(test_params());
    net.ok(DEV, register_model(10, 500));
    net.ok(WORKER, TxKind::Bond(Bond { amount: 1_000 }));
    let with_endpoint = |endpoint: &str| match register_worker(&[(0, LAYERS)]) {
        TxKind::RegisterWorker(w) => {
            TxKind::RegisterWorker(RegisterWorker { endpoint: BoundedString::new(endpoint).unwrap(), ..w })
        }
        other => other,
    };
    for bad in ["", "127.0.0.1", "localhost:7000", "127.0.0.1:70000", "[::1]"] {
        assert!(
            matches!(
                net.run(WORKER, with_endpoint(bad)),
                Err(LedgerError::BadEndpoint { ref endpoint, .. }) if endpoint == bad
            ),
            "{bad:?} was accepted"
        );
    }
    assert!(net.ledger.worker(&net.pk(WORKER)).is_none(), "a refused registration changed nothing");
    net.ok(WORKER, with_endpoint("[::1]:7001"));
    assert_eq!(net.ledger.worker(&net.pk(WORKER)).unwrap().endpoint.as_str(), "[::1]:7001");
}
