//! `polylink gateway --chain <rpc> --model <gguf> [--listen ip:port] [--advertise ip:port]`: a
//! gateway on its own machine for any network. It opens (or creates) its encrypted key file,
//! waits for the funds its stake needs (a dev chain's faucet, else it says how to send them),
//! binds its port, bonds and registers as a gateway at its advertised endpoint (validators fetch
//! its transcripts there), and serves the OpenAI-compatible API over every worker of the model
//! registered on chain (whole-model workers, and pipelines the planner assembles from layer
//! ranges of different owners), following the registry so a worker that joins later is served
//! without a restart. Users call it with the API key `polylink wallet allow --gateway <its
//! account>` prints: it spends from their own balances, and holds no key but its own. It prints
//! JSON lines on stdout (`faucet` or `funds_needed`, `ready` with its account and base url, `left`);
//! Ctrl-C (or SIGTERM) leaves: its stake starts unbonding.
use super::join::{await_funds, emit, leave, open_role};
use anyhow::{Context, bail};
use clap::Args;
use commonware_runtime::{Runner, Supervisor};
use polylink_chain::rpc::Client;
use polylink_gateway::Limits;
use polylink_node::gateway::{self, GatewayRole};
use polylink_node::onchain::{self, Role, STAKE_BUFFER};
use serde_json::json;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `polylink gateway` flags.
#[derive(Args)]
pub struct GatewayCmd {
    /// RPC url of a chain node of the network.
    #[arg(long)]
    chain: String,
    /// The model's GGUF file (a model registered on that chain; only its tokenizer and chat
    /// template are read here).
    #[arg(long)]
    model: PathBuf,
    /// The model name clients ask for (default: the file name without `.gguf`).
    #[arg(long)]
    model_name: Option<String>,
    /// Address to listen on (`0.0.0.0:PORT` to be reachable from other machines).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The address users and validators reach it at, registered on chain (default: the address
    /// it listens on).
    #[arg(long)]
    advertise: Option<SocketAddr>,
    /// The encrypted key file (created with a fresh account if missing; the passphrase comes
    /// from POLYLINK_PASSPHRASE or is asked for).
    #[arg(long, default_value = "polylink-gateway-key.json")]
    key_file: PathBuf,
    /// Where transcripts wait for the validators.
    #[arg(long, default_value = "polylink-gateway/transcripts")]
    transcripts_dir: PathBuf,
    /// Requests in flight per API key.
    #[arg(long, default_value_t = 16)]
    requests_per_key: usize,
}

impl GatewayCmd {
    pub fn run(self) -> anyhow::Result<()> {
        let (key, artifact) = open_role(&self.key_file, &self.model)?;
        let account = key.public_key();
        let model_name = match &self.model_name {
            Some(name) => name.clone(),
            None => self
                .model
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_lowercase)
                .context("the model file has no name; give --model-name")?,
        };
        let endpoint = self.advertise.unwrap_or(self.listen);
        if endpoint.ip().is_unspecified() || endpoint.port() == 0 {
            bail!(
                "{endpoint} is not an address others can dial: give --advertise IP:PORT (this machine's address \
                 as the network sees it)"
            );
        }
        commonware_runtime::tokio::Runner::default().start(|context| async move {
            let stop = super::stop_signal()?;
            tokio::pin!(stop);
            let client = Client::new(&self.chain)?;
            let model_id = onchain::model_by_artifact(&client, &artifact).await?;
            let stake = onchain::stake_min(&client, Role::Gateway).await?.saturating_mul(STAKE_BUFFER);
            let fees = client.params().await?.params.tx_fee * 10;
            await_funds(&client, &account, stake + fees).await?;
            let listener = tokio::net::TcpListener::bind(self.listen)
                .await
                .with_context(|| format!("listening on {}", self.listen))?;
            onchain::register_gateway(&client, &key, endpoint).await?;
            let role = GatewayRole {
                rpc_url: &self.chain,
                gguf: &self.model,
                model_name: &model_name,
                model_id,
                key: key.clone(),
                deployments: Vec::new(),
                known: HashSet::new(),
                transcripts_dir: self.transcripts_dir.clone(),
                limits: Limits { requests_per_key_max: self.requests_per_key.max(1), ..Limits::default() },
            };
            let serving = gateway::start(&context.child("role"), role, listener).await?;
            emit(json!({
                "event": "ready", "account": account, "endpoint": endpoint,
                "base_url": format!("http://{endpoint}/v1"), "model": model_name, "chain_model": model_id,
                "allow": format!("polylink wallet allow --gateway {account} --limit <units>"),
            }));
            tokio::select! {
                served = serving => served.context("the gateway stopped"),
                _ = stop => leave(&client, &key).await,
            }
        })
    }
}
