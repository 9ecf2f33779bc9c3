//! A whole network in one process for the validator tests: a one-node dev chain with short
//! scoring windows, SmolLM2 registered with its real artifact hash, gateways that bill on that
//! chain and keep transcripts, and validators started through the library.
#![allow(dead_code)]

use polylink_chain::rpc::{Client, Signer};
use polylink_gateway::{ApiKeys, Billing, ChainBilling, Gateway, Limits, StoreConfig, Transcripts};
use polylink_ledger::{Genesis, Params, Task, TaskStatus, dev_key};
use polylink_pipeline::{LocalBackend, LocalOptions};
use polylink_protocol::InferenceBackend;
use polylink_types::{
    Allow, Bond, BoundedString, BoundedVec, DeviceProfile, Hash32, RegisterGateway, RegisterModel,
    RegisterWorker, SecretKey, ServedRange, TxKind,
};
use polylink_validator::{Config, Running, ScorerConfig};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// The gateway's model id.
pub const MODEL: &str = "smollm2";
/// The developer's royalty, bps.
pub const ROYALTY_BPS: u16 = 500;
/// Commit window, blocks (room for three validators to evaluate on a busy 2-core machine).
pub const COMMIT_WINDOW: u64 = 80;
/// Reveal window, blocks.
pub const REVEAL_WINDOW: u64 = 20;
/// Stake each validator and worker bonds.
pub const STAKE: u128 = 10_000;

/// The developer (registers the model), the user, and keys for workers and validators.
pub fn developer() -> SecretKey {
    dev_key(0)
}
pub fn user() -> SecretKey {
    dev_key(1)
}
pub fn worker(i: u32) -> SecretKey {
    dev_key(2 + i)
}
pub fn validator(i: u32) -> SecretKey {
    dev_key(10 + i)
}

/// A running dev chain.
pub struct Net {
    pub url: String,
    pub client: Client,
    pub model_id: u64,
    pub dir: tempfile::TempDir,
}

/// Starts a dev chain whose committees hold up to `committee_size` validators, registers SmolLM2.
pub async fn start(committee_size: u32) -> Net {
    start_with(committee_size, |_| {}).await
}

/// As [`start`], with the test's own changes to the genesis parameters.
pub async fn start_with(committee_size: u32, adjust: impl FnOnce(&mut Params)) -> Net {
    let dir = tempfile::tempdir().unwrap();
    let (mut genesis, _) = Genesis::dev("polylink-validator-test", 30);
    genesis.params.committee_size = committee_size;
    genesis.params.commit_window_blocks = COMMIT_WINDOW;
    genesis.params.reveal_window_blocks = REVEAL_WINDOW;
    genesis.params.unbonding_period_blocks = COMMIT_WINDOW + REVEAL_WINDOW + 3;
    // The blocks decide (at 100 ms a block the windows' time passes first).
    genesis.params.commit_window_ms = 2_000;
    genesis.params.commit_ms_per_token = 0;
    genesis.params.reveal_window_ms = 2_000;
    genesis.params.epoch_length_blocks = 1_000_000;
    adjust(&mut genesis.params);
    let url = polylink_chain::spawn_dev(&genesis, &dir.path().join("chain"), 100).unwrap();
    let client = Client::new(&url).unwrap();
    client.wait_for_height(1, Duration::from_secs(60)).await.unwrap();
    let sha = polylink_models::CATALOGUE
        .iter()
        .find(|m| m.id == polylink_models::SMOLLM2_135M)
        .and_then(|m| m.files.iter().find(|f| f.name.ends_with(".gguf")))
        .map(|f| Hash32::from_str(f.sha256).unwrap())
        .unwrap();
    let model = RegisterModel {
        artifact_hash: sha,
        claim: None,
        architecture: BoundedString::new("llama").unwrap(),
        layer_count: 30,
        royalty_bps: ROYALTY_BPS,
        price_floor: 7,
    };
    send(&client, &developer(), TxKind::RegisterModel(model)).await;
    let model_id = client.models().await.unwrap()[0].id;
    Net { url, client, model_id, dir }
}

/// Signs `kind` for `key`, submits it and waits until it is executed.
pub async fn send(client: &Client, key: &SecretKey, kind: TxKind) {
    try_send(client, key, kind).await.unwrap();
}

/// As [`send`], returning the node's refusal instead of failing.
pub async fn try_send(client: &Client, key: &SecretKey, kind: TxKind) -> Result<(), polylink_chain::Error> {
    let signer = Signer::connect(client.clone(), key.clone()).await?;
    signer.send_and_wait(kind, Duration::from_secs(120)).await.map(|_| ())
}

/// Polls `check` every 100 ms for up to two minutes.
pub async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..1200 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Balance of `key`.
/// `key`'s funds: its balance plus its deposits.
pub async fn balance(net: &Net, key: &SecretKey) -> u128 {
    let account = net.client.account(&key.public_key()).await.unwrap();
    account.balance + account.allowances.iter().map(|d| d.limit).sum::<u128>()
}

/// Bonded stake of `key`.
pub async fn bonded(net: &Net, key: &SecretKey) -> u128 {
    net.client.account(&key.public_key()).await.unwrap().stake.bonded
}

/// The SmolLM2 GGUF.
pub fn smollm2() -> PathBuf {
    polylink_models::gguf_path(polylink_models::SMOLLM2_135M).unwrap()
}

/// A local backend over `gguf` that calls itself [`MODEL`], computing as `worker` (which signs
/// the receipts of its generations).
pub fn local(gguf: &std::path::Path, worker: &SecretKey) -> Arc<LocalBackend> {
    let options = LocalOptions {
        threads: 1,
        model_id: Some(MODEL.into()),
        signer: Some(worker.clone()),
        ..LocalOptions::default()
    };
    Arc::new(LocalBackend::load(gguf, &options).unwrap())
}

/// A gateway serving `backend` as worker `worker` (bonded and registered here), billing the
/// user's key `api_key`, keeping transcripts unless `withhold`.
pub async fn gateway(
    net: &Net,
    backend: Arc<dyn InferenceBackend>,
    worker: &SecretKey,
    withhold: bool,
) -> String {
    let store = StoreConfig {
        entries_max: 100,
        dir: Some(net.dir.path().join(format!("transcripts-{}", worker.public_key()))),
        ..StoreConfig::default()
    };
    gateway_with(net, backend, worker, (!withhold).then_some(store)).await
}

/// As [`gateway`], keeping transcripts in `store` (none: withholding them).
pub async fn gateway_with(
    net: &Net,
    backend: Arc<dyn InferenceBackend>,
    worker: &SecretKey,
    store: Option<StoreConfig>,
) -> String {
    gateway_billing(net, backend, worker, store, |billing| Arc::new(billing)).await
}

/// As [`gateway_with`], billing through what `wrap` makes of the honest billing (an attacker's
/// gateway wraps it to misreport).
pub async fn gateway_billing(
    net: &Net,
    backend: Arc<dyn InferenceBackend>,
    worker: &SecretKey,
    store: Option<StoreConfig>,
    wrap: impl FnOnce(ChainBilling) -> Arc<dyn Billing>,
) -> String {
    // The operator's one key is its worker's and its gateway's (one stake backs both roles).
    gateway_of(net, backend, worker, worker, store, wrap).await
}

/// A gateway run by `operator` (registered as a gateway only), keeping transcripts, whose
/// backend computes as `worker` (bonded and registered here): two owners.
pub async fn gateway_operated_by(
    net: &Net,
    backend: Arc<dyn InferenceBackend>,
    worker: &SecretKey,
    operator: &SecretKey,
) -> String {
    let store = StoreConfig {
        entries_max: 100,
        dir: Some(net.dir.path().join(format!("transcripts-{}", operator.public_key()))),
        ..StoreConfig::default()
    };
    gateway_of(net, backend, worker, operator, Some(store), |billing| Arc::new(billing)).await
}

async fn gateway_of(
    net: &Net,
    backend: Arc<dyn InferenceBackend>,
    worker: &SecretKey,
    operator: &SecretKey,
    store: Option<StoreConfig>,
    wrap: impl FnOnce(ChainBilling) -> Arc<dyn Billing>,
) -> String {
    register_worker(net, worker).await;
    if operator.public_key() != worker.public_key() {
        send(&net.client, operator, TxKind::Bond(Bond { amount: STAKE })).await;
    }
    // The gateway registers where the validators find the transcripts.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let endpoint = BoundedString::new(addr.to_string()).unwrap();
    send(&net.client, operator, TxKind::RegisterGateway(RegisterGateway { endpoint })).await;
    let base = format!("http://{addr}");
    // The user locks a deposit for this gateway (which knows it by a listed key; the key hash on
    // chain only says the deposit is not for signed requests alone).
    let limit = polylink_ledger::DEV_BALANCE / 10;
    let allow = Allow { gateway: operator.public_key(), limit, key_hash: Hash32::digest(&[b"listed key"]) };
    send(&net.client, &user(), TxKind::Allow(allow)).await;
    let mut keys = ApiKeys::new();
    keys.insert(API_KEY, user().public_key());
    let billing =
        ChainBilling::connect(&net.url, HashMap::from([(MODEL.to_string(), net.model_id)]), operator.clone())
            .await
            .unwrap()
            .with_local_worker(worker.public_key());
    let mut gw = Gateway::new(backend, keys, Limits::default()).with_billing(wrap(billing));
    if let Some(store) = store {
        gw = gw.with_transcripts(Arc::new(Transcripts::connect(&net.url, store).await.unwrap()));
    }
    tokio::spawn(Arc::new(gw).serve(listener));
    base
}

/// Bonds [`STAKE`] for `worker` and registers it as serving the whole model.
pub async fn register_worker(net: &Net, worker: &SecretKey) {
    send(&net.client, worker, TxKind::Bond(Bond { amount: STAKE })).await;
    let served = ServedRange { model: net.model_id, layer_start: 0, layer_end: 30, layer_time_us: 500 };
    let profile = DeviceProfile { memory_mib: 1024, bandwidth_kbps: 100_000, latency_us: 0 };
    let served = BoundedVec::new(vec![served]).unwrap();
    let endpoint = BoundedString::new("127.0.0.1:7000").unwrap();
    send(&net.client, worker, TxKind::RegisterWorker(RegisterWorker { profile, served, endpoint })).await;
}

/// The user's API key at every test gateway.
pub const API_KEY: &str = "sk-validator-test-user";

/// Starts validator `i` (bonding [`STAKE`]); it finds each task's gateway through the chain.
pub async fn validator_node(net: &Net, i: u32, score_override: Option<u16>) -> Running {
    let config = Config {
        chain_url: net.url.clone(),
        key: validator(i),
        data_dir: Some(net.dir.path().join(format!("validator-{i}"))),
        stake: Some(STAKE),
        scorer: ScorerConfig { seed: u64::from(i), ..ScorerConfig::default() },
        score_override,
    };
    polylink_validator::start(config).await.unwrap()
}

/// Asks `base` one greedy chat question; returns the task id and the answer text.
pub async fn ask(base: &str, question: &str, max_tokens: u32) -> (String, String) {
    ask_chat(base, json!([{"role": "user", "content": question}]), max_tokens).await
}

/// Posts a chat completion `body` as the test user; the task id it opened and the response.
async fn post_chat(base: &str, body: Value) -> (String, reqwest::Response) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(API_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let task = resp.headers()["x-polylink-task-id"].to_str().unwrap().to_string();
    (task, resp)
}

/// A greedy chat completion of `messages` (any roles and turns); returns (task id, answer).
pub async fn ask_chat(base: &str, messages: Value, max_tokens: u32) -> (String, String) {
    let body = json!({"model": MODEL, "messages": messages, "max_tokens": max_tokens, "temperature": 0});
    let (task, resp) = post_chat(base, body).await;
    let answer: Value = resp.json().await.unwrap();
    (task, answer["choices"][0]["message"]["content"].as_str().unwrap().to_string())
}

/// Streams a greedy answer to `question` and hangs up after reading `events` SSE events;
/// returns the task id and the text the client read.
pub async fn hang_up(base: &str, question: &str, max_tokens: u32, events: usize) -> (String, String) {
    use futures::StreamExt;
    let body = json!({
        "model": MODEL, "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens, "temperature": 0, "stream": true,
    });
    let (task, resp) = post_chat(base, body).await;
    let (mut stream, mut buf, mut text) = (resp.bytes_stream(), String::new(), String::new());
    let mut seen = 0;
    while seen < events {
        let Some(Ok(bytes)) = stream.next().await else { break };
        buf.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buf.find("\n\n") {
            let line = buf[..end].trim_start_matches("data: ").to_string();
            buf.drain(..end + 2);
            seen += 1;
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                text.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
            }
        }
    }
    (task, text)
}

/// The task's record.
pub async fn task(net: &Net, task: &str) -> Option<Task> {
    net.client.task(&task.parse().ok()?).await.ok()
}

/// The task's record once it is settled.
pub async fn settled(net: &Net, id: &str) -> Task {
    wait_for("the settlement", async || {
        task(net, id).await.filter(|t| matches!(t.status, TaskStatus::Settled(_)))
    })
    .await
}

/// The task's record once it has a committee.
pub async fn scoring(net: &Net, id: &str) -> Task {
    wait_for("the committee", async || task(net, id).await.filter(|t| t.status == TaskStatus::Scoring)).await
}
