//! `polylink worker --model <gguf> [--layers a..b] [--chain URL]`: profile this device, measure
//! the links to the model's other registered workers, register on chain with stake (profile and
//! endpoint), and serve the model (whole or a layer range) to pipeline heads.
//! `polylink worker register …` only sends the registration transaction from a wallet.

use super::register::WorkerCmd;
use super::wallet::WalletOpts;
use anyhow::Context;
use clap::Args;
use commonware_runtime::{Runner, Spawner, Supervisor};
use polylink_chain::rpc::Client;
use polylink_node::onchain::{self, WorkerRegistration};
use polylink_node::peers::{self, ProbeConfig};
use polylink_node::worker::{self, WorkerConfig};
use polylink_node::{NodeError, profile, registry};
use polylink_pipeline::engine::EngineLimits;
use polylink_pipeline::server::{Admission, KeySet};
use polylink_pipeline::transport::peer_bytes;
use polylink_protocol::{LinkSummary, WorkerReady};
use polylink_types::{Hash32, PublicKey, SecretKey};
use std::net::SocketAddr;
use std::path::PathBuf;

/// `polylink worker`: run one (the default), or register one from a wallet.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WorkerCmdLine {
    #[command(flatten)]
    opts: WalletOpts,
    #[command(subcommand)]
    sub: Option<WorkerCmd>,
    #[command(flatten)]
    run: WorkerRun,
}

/// Serve a model, whole or as a layer range.
#[derive(Args)]
pub struct WorkerRun {
    /// The model's GGUF file.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Layers to serve, `a..b` (default: the whole model).
    #[arg(long)]
    layers: Option<String>,
    /// Address to listen on for pipeline heads (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The worker's ed25519 seed, 64 hex characters (its on-chain key).
    #[arg(long, env = "POLYLINK_WORKER_SEED")]
    key_seed: Option<String>,
    /// Compute threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Most sessions held at once.
    #[arg(long, default_value_t = 64)]
    sessions_max: usize,
    /// RPC url of a chain node: bond the worker stake if needed and register the measured profile.
    #[arg(long)]
    chain: Option<String>,
    /// Link bandwidth to report when no registered peer answers, kbit/s (default: measured over
    /// loopback, the link local stages use). With peers, the median measured to them is reported.
    #[arg(long)]
    bandwidth_kbps: Option<u64>,
    /// Endpoint to register on chain, `ip:port` (default: the address it listens on).
    #[arg(long)]
    advertise: Option<SocketAddr>,
    /// ATTACK TESTS ONLY: skip these layers while claiming to serve the model (a cheating worker).
    #[arg(long, hide = true)]
    cheat_drop_layers: Option<String>,
}

impl WorkerCmdLine {
    pub fn run(self) -> anyhow::Result<()> {
        match self.sub {
            Some(cmd) => cmd.run(&self.opts),
            None => self.run.run(),
        }
    }
}

/// Parses a 64-hex-character seed.
pub fn parse_seed(text: &str, what: &str) -> anyhow::Result<[u8; 32]> {
    hex::decode(text.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .with_context(|| format!("{what} must be 64 hex characters (32 bytes)"))
}

impl WorkerRun {
    pub fn run(self) -> anyhow::Result<()> {
        let model = self.model.context("--model is required")?;
        let seed = parse_seed(
            self.key_seed.as_deref().context("give --key-seed or POLYLINK_WORKER_SEED (the worker's key)")?,
            "--key-seed",
        )?;
        let key = polylink_pipeline::transport::key_from_seed(&seed)?;
        let gateways = KeySet::default();
        let account = SecretKey::from_seed(seed);
        let layers = self.layers.as_deref().map(worker::parse_layers).transpose()?;
        let drop_layers = self.cheat_drop_layers.as_deref().map(worker::parse_layers).transpose()?;
        let artifact = match &self.chain {
            Some(_) => Some(
                polylink_models::sha256_file(&model)
                    .with_context(|| format!("hashing {}", model.display()))?
                    .parse::<Hash32>()
                    .context("artifact hash")?,
            ),
            None => None,
        };
        let config = WorkerConfig {
            model,
            layers,
            listen: self.listen,
            key,
            threads: self.threads,
            limits: EngineLimits { sessions_max: self.sessions_max, ..EngineLimits::default() },
            drop_layers,
            // On a chain only its registered gateways run inference here; alone, anyone may.
            admission: match &self.chain {
                Some(_) => Admission::Listed(gateways.clone()),
                None => Admission::Anyone,
            },
        };
        let chain = self.chain.clone();
        let (bandwidth, advertise) = (self.bandwidth_kbps, self.advertise);
        let probe_key = config.key.clone();
        commonware_runtime::tokio::Runner::default().start(|context| async move {
            let probe_context = context.child("peers");
            let follow_context = context.child("gateways");
            worker::run(context, config, |ready| async move {
                let mut registered = None;
                let endpoint = advertise.unwrap_or(ready.addr);
                let mut peers = Vec::new();
                let mut link = None;
                if let (Some(url), Some(artifact)) = (chain, artifact) {
                    let client = Client::new(&url).map_err(|e| NodeError::Chain(e.to_string()))?;
                    let model = onchain::model_by_artifact(&client, &artifact).await?;
                    let config = ProbeConfig::default();
                    peers =
                        registry::measure_peers(probe_context, &probe_key, &client, model, &config).await?;
                    let measured = peers::summarize(&peers);
                    let bandwidth_kbps = match (measured, bandwidth) {
                        (Some(summary), _) => summary.bandwidth_kbps,
                        (None, Some(kbps)) => kbps,
                        (None, None) => profile::loopback_bandwidth_kbps(32 << 20)
                            .map_err(|e| NodeError::Chain(format!("measuring the link: {e}")))?,
                    };
                    let latency_us = measured.map_or(0, |summary| summary.latency_us);
                    let registration = WorkerRegistration {
                        model,
                        layers: ready.layers.clone(),
                        layer_time_us: ready.measured.layer_time_us,
                        memory_bytes: ready.measured.memory_bytes,
                        bandwidth_kbps,
                        latency_us,
                        endpoint,
                    };
                    onchain::register_worker(&client, &account, &registration).await?;
                    tracing::info!(
                        account = %account.public_key(), model, layers = ?ready.layers, %endpoint,
                        latency_us, bandwidth_kbps, peers = peers.len(), "registered on chain"
                    );
                    registered = Some(model);
                    link = Some(LinkSummary { latency_us, bandwidth_kbps });
                    // The gateways it serves: read once before it says it is ready, then followed.
                    gateways.replace(registry::gateway_keys(&client).await?);
                    tracing::info!(gateways = gateways.len(), "serving the registered gateways");
                    let every = std::time::Duration::from_secs(2);
                    follow_context
                        .spawn(move |context| registry::follow_gateways(context, client, gateways, every));
                }
                // One line on stdout: what `polylink up` and tests read to find the worker.
                let line = WorkerReady {
                    key: PublicKey(peer_bytes(&ready.key)),
                    account: account.public_key(),
                    addr: ready.addr,
                    layers: ready.layers.clone(),
                    layer_time_us: ready.measured.layer_time_us,
                    memory_bytes: ready.measured.memory_bytes,
                    model: registered,
                    endpoint,
                    link,
                    peers,
                };
                println!("{}", line.to_line());
                Ok(())
            })
            .await
        })?;
        Ok(())
    }
}
