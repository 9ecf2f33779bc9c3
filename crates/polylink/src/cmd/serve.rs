//! `polylink serve`: the OpenAI-compatible gateway over a local model.

use anyhow::Context;
use clap::Args;
use polylink_gateway::{ApiKeys, ChainBilling, Gateway, Limits, StoreConfig, Transcripts};
use polylink_pipeline::{LocalBackend, LocalOptions};
use polylink_protocol::GatewayReady;
use polylink_types::SecretKey;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::{info, warn};

#[derive(Args)]
pub struct ServeCmd {
    /// The GGUF model to serve whole (default: the fetched SmolLM2-135M-Instruct).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Model id clients use (default: the file name without `.gguf`).
    #[arg(long)]
    model_id: Option<String>,
    /// Address to listen on (port 0 picks a free port; the log says which).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// TOML keys file: `[[key]]` entries with `api_key` and `account` (the paying account's public
    /// key). With --chain, callers may also use on-chain keys made by `polylink wallet allow`.
    #[arg(long)]
    keys: Option<PathBuf>,
    /// An API key to accept, bound to the dev account derived from the key itself (repeatable;
    /// for serving without a chain).
    #[arg(long = "api-key", env = "POLYLINK_API_KEY")]
    api_keys: Vec<String>,
    /// Kernel threads of the engine.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Sessions the engine decodes together.
    #[arg(long, default_value_t = 8)]
    sessions: usize,
    /// Largest request body, bytes.
    #[arg(long, default_value_t = 1 << 20)]
    body_bytes_max: usize,
    /// Longest prompt, tokens.
    #[arg(long, default_value_t = 4096)]
    prompt_tokens_max: usize,
    /// Largest `max_tokens` a request may ask for.
    #[arg(long, default_value_t = 2048)]
    max_tokens_max: usize,
    /// Requests in flight per API key.
    #[arg(long, default_value_t = 4)]
    requests_per_key: usize,
    /// Longest a generation may run, milliseconds.
    #[arg(long, default_value_t = 300_000)]
    timeout_ms: u64,
    /// RPC url of a chain node: every request then opens a task (escrow) and reports its result.
    #[arg(long)]
    chain: Option<String>,
    /// The served model's on-chain id (with --chain; default: the registered model whose
    /// artifact hash is the served file's sha256).
    #[arg(long)]
    chain_model: Option<u64>,
    /// Where transcripts of billed requests are kept for the validators (with --chain).
    #[arg(long, default_value = "polylink-data/transcripts")]
    transcripts_dir: PathBuf,
    /// Seed (64 hex characters) of the registered worker key that serves the model (with --chain
    /// it is also this gateway's key: bonded and registered as a gateway, it reports results).
    #[arg(long, env = "POLYLINK_WORKER_SEED")]
    worker_seed: Option<String>,
    /// With --chain: the address validators reach this gateway at, registered on chain
    /// (default: the address it listens on).
    #[arg(long)]
    advertise: Option<SocketAddr>,
}

impl ServeCmd {
    pub fn run(self) -> anyhow::Result<()> {
        let model = match &self.model {
            Some(p) => p.clone(),
            None => polylink_models::gguf_path(polylink_models::SMOLLM2_135M)
                .context("no --model given and SmolLM2 is not fetched (run `polylink models fetch`)")?,
        };
        let mut keys = match &self.keys {
            Some(path) => ApiKeys::load(path)?,
            None => ApiKeys::new(),
        };
        for key in &self.api_keys {
            keys.insert(key, SecretKey::from_label(key).public_key());
        }
        anyhow::ensure!(
            !keys.is_empty() || self.chain.is_some(),
            "no API keys: give --keys FILE or --api-key KEY (with --chain, on-chain keys are accepted too)"
        );
        let worker_key = match self.worker_seed.as_deref() {
            Some(seed) => {
                let seed: [u8; 32] = hex::decode(seed.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .context("--worker-seed must be 64 hex characters")?;
                Some(SecretKey::from_seed(seed))
            }
            None => None,
        };
        let options = LocalOptions {
            threads: self.threads,
            sessions_max: self.sessions,
            model_id: self.model_id.clone(),
            // The worker key signs the receipt of each billed generation this machine computes.
            signer: worker_key.clone(),
            ..LocalOptions::default()
        };
        info!(model = %model.display(), "loading");
        let backend = LocalBackend::load(&model, &options)?;
        let limits = Limits {
            body_bytes_max: self.body_bytes_max,
            prompt_tokens_max: self.prompt_tokens_max,
            max_tokens_max: self.max_tokens_max,
            requests_per_key_max: self.requests_per_key,
            request_timeout_ms: self.timeout_ms,
            ..Limits::default()
        };
        for account in keys.accounts() {
            info!(%account, "api key bound to account");
        }
        let gateway = Gateway::new(Arc::new(backend), keys, limits);
        let model_id = gateway_model_id(&gateway)?;
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        runtime.block_on(async move {
            let mut ready =
                GatewayReady { addr: self.listen, model: model_id.clone(), worker: None, gateway: None, chain_model: None };
            let listener = tokio::net::TcpListener::bind(self.listen)
                .await
                .with_context(|| format!("cannot listen on {}", self.listen))?;
            ready.addr = listener.local_addr()?;
            let gateway = match &self.chain {
                Some(url) => {
                    let worker = worker_key.clone().context("--chain needs --worker-seed (the worker key)")?;
                    let chain_model = match self.chain_model {
                        Some(id) => id,
                        None => registered_model(url, &model).await?,
                    };
                    // One operator, one key: the machine that computes also opens its tasks and
                    // reports them, registered as a gateway where validators reach it.
                    let client = polylink_chain::rpc::Client::new(url)?;
                    let endpoint = self.advertise.unwrap_or(ready.addr);
                    polylink_node::onchain::register_gateway(&client, &worker, endpoint).await?;
                    let models = HashMap::from([(model_id, chain_model)]);
                    let billing = ChainBilling::connect(url, models, worker.clone())
                        .await?
                        .with_local_worker(worker.public_key());
                    // Every billed task is scored by validators who fetch its transcript: a
                    // gateway that kept none would have its worker scored 0.
                    let store = StoreConfig { dir: Some(self.transcripts_dir.clone()), ..StoreConfig::default() };
                    let transcripts = Transcripts::connect(url, store).await?;
                    info!(chain = %url, worker = %worker.public_key(), model = chain_model, %endpoint, transcripts = %self.transcripts_dir.display(), "billing on; registered as a gateway");
                    (ready.worker, ready.chain_model) = (Some(worker.public_key()), Some(chain_model));
                    ready.gateway = Some(worker.public_key());
                    gateway.with_billing(Arc::new(billing)).with_transcripts(Arc::new(transcripts))
                }
                None => {
                    warn!("billing off: no --chain given; requests are served without opening tasks or charging");
                    gateway
                }
            };
            let stop = super::stop_signal()?;
            info!(addr = %ready.addr, "gateway listening");
            // The one line on stdout: whoever started this process reads where it listens.
            println!("{}", ready.to_line());
            std::io::Write::flush(&mut std::io::stdout())?;
            tokio::select! {
                served = Arc::new(gateway).serve(listener) => served.context("serving"),
                _ = stop => { info!("shutting down"); Ok(()) }
            }
        })
    }
}

/// The on-chain id of the model registered with the sha256 of `gguf` as its artifact hash.
async fn registered_model(url: &str, gguf: &std::path::Path) -> anyhow::Result<u64> {
    let sha = polylink_models::sha256_file(gguf).with_context(|| format!("hashing {}", gguf.display()))?;
    let client = polylink_chain::rpc::Client::new(url)?;
    let models = client.models().await.with_context(|| format!("listing the models registered at {url}"))?;
    let found = models.iter().find(|m| m.model.artifact_hash.to_string() == sha);
    let found = found.with_context(|| {
        format!(
            "{} (sha256 {sha}) is not registered on the chain at {url}: register it first, or name its id with --chain-model",
            gguf.display()
        )
    })?;
    Ok(found.id)
}

/// The id the local backend serves its model under.
fn gateway_model_id(gateway: &Gateway) -> anyhow::Result<String> {
    gateway.models().into_iter().next().map(|m| m.id).context("the backend serves no model")
}
