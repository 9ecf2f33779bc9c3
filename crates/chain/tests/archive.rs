#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A dev chain prunes final tasks from its state after `task_retention_blocks`, and its RPC
//! still answers them from the node's own archive.

use polylink_chain::rpc::{Client, Signer};
use polylink_ledger::{Genesis, TaskStatus, dev_key};
use polylink_types::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruned_task_still_answers_from_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let (mut genesis, _) = Genesis::dev("polylink-archive-test", 3);
    genesis.params.task_retention_blocks = 2;
    let url = polylink_chain::spawn_dev(&genesis, &dir.path().join("chain"), 50).unwrap();
    let client = Client::new(&url).unwrap();
    client.wait_for_height(1, WAIT).await.unwrap();
    let (developer, worker, user) = (dev_key(0), dev_key(1), dev_key(2));
    let send = async |key: &SecretKey, kind: TxKind| {
        let signer = Signer::connect(client.clone(), key.clone()).await.unwrap();
        signer.send_and_wait(kind, WAIT).await.unwrap().tx_id
    };
    let model = RegisterModel {
        artifact_hash: Hash32::digest(&[b"archive-test.gguf"]),
        claim: None,
        architecture: BoundedString::new("llama").unwrap(),
        layer_count: 4,
        royalty_bps: 100,
        price_floor: 10,
    };
    send(&developer, TxKind::RegisterModel(model)).await;
    send(&worker, TxKind::Bond(Bond { amount: 10_000 })).await;
    let served = ServedRange { model: 1, layer_start: 0, layer_end: 4, layer_time_us: 100 };
    let register = RegisterWorker {
        profile: DeviceProfile { memory_mib: 1_024, bandwidth_kbps: 1_000, latency_us: 0 },
        served: BoundedVec::new(vec![served]).unwrap(),
        endpoint: BoundedString::new("127.0.0.1:7000").unwrap(),
    };
    send(&worker, TxKind::RegisterWorker(register)).await;
    // The worker is also the gateway that reports (one stake backs both roles).
    let gateway = RegisterGateway { endpoint: BoundedString::new("127.0.0.1:8080").unwrap() };
    send(&worker, TxKind::RegisterGateway(gateway)).await;
    let submit = SubmitTask {
        model: 1,
        max_tokens: 10,
        prompt_hash: Hash32::digest(&[b"prompt"]),
        max_price: 10,
        workers: BoundedVec::new(vec![worker.public_key()]).unwrap(),
        gateway: worker.public_key(),
        seed: 3,
        payer: None,
        voucher: None,
    };
    let task = send(&user, TxKind::SubmitTask(submit)).await;
    let result = SubmitResult {
        task,
        output_hash: Hash32::digest(&[b"output"]),
        prompt_tokens: 2,
        completion_tokens: 3,
        receipts: BoundedVec::new(vec![
            WorkReceipt {
                task,
                worker: worker.public_key(),
                layer_start: 0,
                layer_end: 4,
                rows: 5,
                fed: Hash32::ZERO,
                drawn: Hash32::ZERO,
            }
            .sign(&worker),
        ])
        .unwrap(),
    };
    send(&worker, TxKind::SubmitResult(result)).await;
    // No validator is registered: the task settles at its draw, then leaves the state.
    wait_until("the task to leave the state", async || client.status().await.unwrap().tasks_held == 0).await;
    let archived = client.task(&task).await.unwrap();
    assert_eq!(archived.status, TaskStatus::Settled(SettleOutcome::NoQuorum));
    assert_eq!(archived.result.unwrap().fee, 50);
    let unknown = client.task(&Hash32::digest(&[b"no such task"])).await;
    assert_eq!(unknown.err().and_then(|e| e.code()), Some(polylink_chain::rpc::ErrorCode::NotFound));
}
