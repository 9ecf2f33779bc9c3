//! Billing on a real one-validator dev chain run in this process: a request opens a task with
//! escrow before inference, the result is reported with the delivered token counts after it,
//! the user's balance goes down by exactly the charge the response announced, the task is
//! visible through the RPC, and an account that cannot pay gets a 402 that charges nothing.
//! The user calls with an on-chain API key made for its deposit: the gateway never holds its key.
//! A second user signs each request with its own key (a voucher) on a deposit without an API key:
//! the chain pays only what it signed, once; a voucher for another body, over its cap, replayed,
//! for another gateway or unreadable is refused with a 401 before anything is opened.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use polylink_chain::rpc::{Client, Signer};
use polylink_gateway::{Account, ApiKeys, Billing, ChainBilling, Gateway, Limits, Opening, UsageReport};
use polylink_ledger::{Genesis, dev_key};
use polylink_pipeline::{LocalBackend, LocalOptions};
use polylink_types::{
    Allow, ApiKey, Bond, BoundedString, BoundedVec, DeviceProfile, Hash32, PublicKey, RegisterGateway,
    RegisterModel, RegisterWorker, SecretKey, ServedRange, Transfer, TxKind, VOUCHER_HEADER, Voucher,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Starts a one-validator dev chain on its own thread; returns its RPC url.
fn start_chain(dir: &std::path::Path) -> String {
    let (mut genesis, _) = Genesis::dev("polylink-gateway-test", 4);
    // Long scoring windows: the fee stays charged (not yet settled) while the test looks.
    genesis.params.commit_window_blocks = 10_000;
    genesis.params.reveal_window_blocks = 10_000;
    genesis.params.unbonding_period_blocks = 20_003;
    genesis.params.epoch_length_blocks = 1_000_000;
    polylink_chain::spawn_dev(&genesis, dir, 100).unwrap()
}

async fn send(client: &Client, key: &SecretKey, kind: TxKind) {
    let signer = Signer::connect(client.clone(), key.clone()).await.unwrap();
    signer.send_and_wait(kind, Duration::from_secs(60)).await.unwrap();
}

async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..600 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn balance(client: &Client, who: &SecretKey) -> u128 {
    client.account(&who.public_key()).await.unwrap().balance
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_escrowed_reported_and_charged_exactly_on_chain() {
    let dir = tempfile::tempdir().unwrap();
    let url = start_chain(dir.path());
    let client = Client::new(&url).unwrap();
    wait_for("the chain", async || client.status().await.ok().filter(|s| s.height >= 1)).await;

    // The worker (also the model's developer) bonds, registers SmolLM2 and serves all its layers.
    let worker = dev_key(0);
    send(&client, &worker, TxKind::Bond(Bond { amount: 10_000 })).await;
    let model = RegisterModel {
        artifact_hash: Hash32::digest(&[b"smollm2-135m-instruct-q4_1"]),
        claim: None,
        architecture: BoundedString::new("llama").unwrap(),
        layer_count: 30,
        royalty_bps: 500,
        price_floor: 7,
    };
    send(&client, &worker, TxKind::RegisterModel(model)).await;
    let model_id = client.models().await.unwrap()[0].id;
    let served = ServedRange { model: model_id, layer_start: 0, layer_end: 30, layer_time_us: 500 };
    let profile = DeviceProfile { memory_mib: 1024, bandwidth_kbps: 100_000, latency_us: 0 };
    let (served, endpoint) =
        (BoundedVec::new(vec![served]).unwrap(), BoundedString::new("127.0.0.1:7000").unwrap());
    send(&client, &worker, TxKind::RegisterWorker(RegisterWorker { profile, served, endpoint })).await;
    assert_eq!(client.workers().await.unwrap().len(), 1);

    // A score validator, so each task waits for its committee instead of settling (and refunding) at once.
    let validator = dev_key(1);
    send(&client, &validator, TxKind::Bond(Bond { amount: 10_000 })).await;
    send(&client, &validator, TxKind::RegisterValidator).await;

    // The gateway: SmolLM2 locally, billed on the chain, for any account that allows it.
    let user = dev_key(2);
    let path = polylink_models::gguf_path(polylink_models::SMOLLM2_135M).unwrap();
    // The worker computes here and signs each task's receipt.
    let options = LocalOptions {
        threads: 1,
        model_id: Some(common::MODEL.into()),
        signer: Some(worker.clone()),
        ..LocalOptions::default()
    };
    let backend = Arc::new(LocalBackend::load(&path, &options).unwrap());
    let keys = ApiKeys::new();
    // The gateway has a key of its own, bonded and registered: it opens the tasks and reports
    // their results, holding no worker's key (the worker's receipts are its own signatures).
    let gateway_key = dev_key(3);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    send(&client, &gateway_key, TxKind::Bond(Bond { amount: 10_000 })).await;
    let endpoint = BoundedString::new(addr.to_string()).unwrap();
    send(&client, &gateway_key, TxKind::RegisterGateway(RegisterGateway { endpoint })).await;
    let billing = ChainBilling::connect(
        &url,
        HashMap::from([(common::MODEL.to_string(), model_id)]),
        gateway_key.clone(),
    )
    .await
    .unwrap()
    .with_local_worker(worker.public_key());
    let gateway = Arc::new(Gateway::new(backend, keys, Limits::default()).with_billing(Arc::new(billing)));
    let base = format!("http://{addr}/v1");
    tokio::spawn(gateway.clone().serve(listener));
    let http = reqwest::Client::new();

    // The user allows the gateway 100,000 with a key it made itself; a second account allows it
    // only 10; a key whose secret the chain does not know is refused as a wrong key.
    let user_key = ApiKey::new(user.public_key(), [9; 32]);
    let allow = |key: &ApiKey, limit| {
        TxKind::Allow(Allow { gateway: gateway_key.public_key(), limit, key_hash: key.hash() })
    };
    send(&client, &user, allow(&user_key, 100_000)).await;
    let stingy = SecretKey::from_label("stingy");
    send(&client, &worker, TxKind::Transfer(Transfer { to: stingy.public_key(), amount: 10_000 })).await;
    let stingy_key = ApiKey::new(stingy.public_key(), [3; 32]);
    send(&client, &stingy, allow(&stingy_key, 10)).await;
    let (user_key, stingy_key, forged_key) =
        (user_key.to_string(), stingy_key.to_string(), ApiKey::new(user.public_key(), [8; 32]).to_string());
    let before = balance(&client, &user).await;
    let gateway_before = balance(&client, &gateway_key).await;

    // One answer, one stream; each names its task and its charge.
    let ask = json!({"model": common::MODEL, "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 5, "temperature": 0});
    let resp =
        http.post(format!("{base}/chat/completions")).bearer_auth(&user_key).json(&ask).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let header =
        |r: &reqwest::Response, name: &str| r.headers().get(name).unwrap().to_str().unwrap().to_string();
    assert_eq!(header(&resp, "x-polylink-billing"), "on");
    let task1 = header(&resp, "x-polylink-task-id");
    let charge1: u128 = header(&resp, "x-polylink-charge").parse().unwrap();
    let price: u128 = header(&resp, "x-polylink-price-per-token").parse().unwrap();
    let answer: Value = resp.json().await.unwrap();
    let tokens = u128::from(answer["usage"]["total_tokens"].as_u64().unwrap());
    assert_eq!(price, 7);
    assert_eq!(charge1, tokens * price);

    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let resp = http
        .post(format!("{base}/chat/completions"))
        .bearer_auth(&user_key)
        .json(&streamed)
        .send()
        .await
        .unwrap();
    let task2 = header(&resp, "x-polylink-task-id");
    let text = resp.text().await.unwrap();
    let last_chunk: Value = text
        .split("\n\n")
        .filter_map(|f| f.strip_prefix("data: "))
        .filter(|d| d.contains("\"polylink\""))
        .map(|d| serde_json::from_str(d).unwrap())
        .last()
        .unwrap();
    assert_eq!(last_chunk["polylink"]["task_id"], task2.as_str());
    let charge2: u128 = last_chunk["polylink"]["charge"].as_str().unwrap().parse().unwrap();
    assert!(charge2 > 0);

    // An account that allows too little is refused before any inference, in the OpenAI shape;
    // a key the chain does not know is not a key.
    let resp = http
        .post(format!("{base}/chat/completions"))
        .bearer_auth(&stingy_key)
        .json(&ask)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 402);
    let refused: Value = resp.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "insufficient_quota", "{refused}");
    assert!(
        refused["error"]["message"].as_str().unwrap().contains("deposit for this gateway has 10 beyond"),
        "{refused}"
    );
    let resp = http
        .post(format!("{base}/chat/completions"))
        .bearer_auth(&forged_key)
        .json(&ask)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Both tasks are on chain with their results; the deposit fell by exactly the two charges.
    for (task, charge) in [(&task1, charge1), (&task2, charge2)] {
        let id = task.parse().unwrap();
        let record =
            wait_for("the result", async || client.task(&id).await.ok().filter(|t| t.result.is_some())).await;
        assert_eq!(record.user, user.public_key());
        assert_eq!(record.gateway, gateway_key.public_key());
        assert_eq!(record.workers.as_slice(), [worker.public_key()]);
        assert_eq!(record.result.as_ref().map(|r| r.fee), Some(charge), "{record:?}");
    }
    // (And by the fee of each SubmitTask, which the gateway signed and the user repaid it.)
    let tx_fee = client.params().await.unwrap().params.tx_fee;
    assert_eq!(balance(&client, &user).await, before, "the deposit pays, not the balance");
    assert_eq!(balance(&client, &gateway_key).await, gateway_before, "the gateway neither pays nor earns");
    let allowances = client.account(&user.public_key()).await.unwrap().allowances;
    assert_eq!(allowances[0].limit, 100_000 - charge1 - charge2 - 2 * tx_fee);

    // A payer whose allowance covers one task: a second task the gateway would open before the
    // first is reported is refused by the gateway itself (the chain may not count the first
    // yet; one it then refused in a block would leave its workers unpaid).
    let tight = SecretKey::from_label("tight");
    send(&client, &worker, TxKind::Transfer(Transfer { to: tight.public_key(), amount: 10_000 })).await;
    let one_task = 10 * 7 + tx_fee;
    send(&client, &tight, allow(&ApiKey::new(tight.public_key(), [4; 32]), one_task)).await;
    let direct = ChainBilling::connect(
        &url,
        HashMap::from([(common::MODEL.to_string(), model_id)]),
        gateway_key.clone(),
    )
    .await
    .unwrap();
    let placement = polylink_protocol::Placement { workers: vec![worker.public_key()], slot: 0 };
    let opening = Opening {
        model: common::MODEL,
        tokens_max: 10,
        prompt_hash: Hash32::digest(&[b"prompt"]),
        placement: &placement,
        seed: 1,
        max_price: None,
    };
    let payer = Account::keyed(tight.public_key());
    let first = direct.open(&payer, opening).await.unwrap();
    assert!(
        matches!(direct.open(&payer, opening).await, Err(polylink_gateway::GatewayError::InsufficientBalance(m)) if m.contains("has 0 beyond its open tasks")),
        "the first task's reservation counts"
    );
    let usage = UsageReport {
        output_hash: Hash32::ZERO,
        prompt_tokens: 0,
        completion_tokens: 0,
        receipts: Vec::new(),
    };
    assert_eq!(direct.close(&first, usage).await.unwrap().amount, 0, "no receipts: nothing billed");
    let metrics = gateway.metrics().render();
    assert!(
        metrics.contains(&format!("polylink_gateway_charged_units_total {}\n", charge1 + charge2)),
        "{metrics}"
    );

    // A user who signs its requests: a deposit without an API key, a voucher per request.
    let signer = SecretKey::from_label("signer");
    send(&client, &worker, TxKind::Transfer(Transfer { to: signer.public_key(), amount: 1_000_000 })).await;
    let deposit =
        TxKind::Allow(Allow { gateway: gateway_key.public_key(), limit: 500_000, key_hash: Hash32::ZERO });
    send(&client, &signer, deposit).await;
    let info: Value =
        http.get(format!("http://{addr}/polylink/info")).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["account"], gateway_key.public_key().to_string());
    assert_eq!(info["models"][common::MODEL], model_id);
    let chain_id = client.status().await.unwrap().chain_id;
    assert_eq!(info["chain_id"], chain_id.as_str());
    let body = serde_json::to_vec(&ask).unwrap();
    let voucher = |body: &[u8], max_spend: u128, gateway: PublicKey, nonce: u64| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
        Voucher {
            payer: signer.public_key(),
            gateway,
            model: model_id,
            request_hash: Hash32::digest(&[body]),
            max_spend,
            expires_ms: u64::try_from(now).unwrap() + 60_000,
            nonce,
        }
        .sign(&signer, &chain_id)
        .to_header()
    };
    let signed = |header: String, body: Vec<u8>| {
        http.post(format!("{base}/chat/completions"))
            .header(VOUCHER_HEADER, header)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let me = gateway_key.public_key();
    let good = voucher(&body, 100_000, me, 1);
    let resp = signed(good.clone(), body.clone()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let task3: polylink_types::TaskId = header(&resp, "x-polylink-task-id").parse().unwrap();
    let charge3: u128 = header(&resp, "x-polylink-charge").parse().unwrap();
    let record =
        wait_for("the signed task", async || client.task(&task3).await.ok().filter(|t| t.result.is_some()))
            .await;
    assert_eq!((record.user, record.result.map(|r| r.fee)), (signer.public_key(), Some(charge3)));
    let left = client.account(&signer.public_key()).await.unwrap().allowances[0].limit;
    assert_eq!(left, 500_000 - charge3 - tx_fee);

    let refusals = [
        ("used here already", good),
        ("another request body", voucher(b"{}", 100_000, me, 2)),
        ("it allows 1,", voucher(&body, 1, me, 3)),
        ("is for gateway", voucher(&body, 100_000, worker.public_key(), 4)),
        ("cannot read it", "00ff".to_string()),
    ];
    for (says, header) in refusals {
        let resp = signed(header, body.clone()).await.unwrap();
        assert_eq!(resp.status(), 401, "{says}");
        let refused: Value = resp.json().await.unwrap();
        assert_eq!(refused["error"]["code"], "invalid_voucher", "{refused}");
        assert!(refused["error"]["message"].as_str().unwrap().contains(says), "{says}: {refused}");
    }
    assert_eq!(
        client.account(&signer.public_key()).await.unwrap().allowances[0].limit,
        left,
        "refusals cost nothing"
    );
}
