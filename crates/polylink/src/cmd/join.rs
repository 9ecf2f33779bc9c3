//! `polylink join --chain <rpc> --model <gguf> [--layers a..b] [--listen ip:port] [--advertise
//! ip:port]`: one command puts this device into a network. It opens (or creates) the encrypted
//! key file, waits for the funds its stake needs (saying how to send them), loads and profiles
//! the model within the owner's limits, checks that its advertised endpoint answers, bonds,
//! registers, serves the registered gateways, and prints one JSON line per event on stdout:
//! `faucet` (a dev chain's faucet funded it) or `funds_needed`, `ready` (account, endpoint,
//! layers), `earned` (whenever its balance grows),
//! and `left`. Ctrl-C (or SIGTERM) leaves cleanly: the whole stake starts unbonding, so the
//! worker is inactive at once (gateways drop it) and its stake comes back after the unbonding
//! period with `polylink leave --withdraw`.

use super::keyfile;
use super::wallet::now_ms;
use anyhow::{Context, bail};
use clap::Args;
use commonware_runtime::{Runner, Spawner, Supervisor};
use polylink_chain::rpc::{Client, Signer};
use polylink_node::onchain::{self, Role, STAKE_BUFFER, WorkerRegistration};
use polylink_node::peers::{self, ProbeConfig};
use polylink_node::worker::{self, WorkerConfig};
use polylink_node::{NodeError, profile, registry};
use polylink_pipeline::engine::EngineLimits;
use polylink_pipeline::server::{Admission, KeySet};
use polylink_pipeline::transport;
use polylink_protocol::{PROBE_PATH, PROBE_TTL_MAX_MS, ProbeAnswer, ProbeRequest};
use polylink_types::{Amount, Hash32, PublicKey, SecretKey, TxKind, Unbond};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How long a transaction may take to be finalized.
const FINALITY: Duration = Duration::from_secs(60);

/// `polylink join` flags.
#[derive(Args)]
pub struct JoinCmd {
    /// RPC url of a chain node of the network.
    #[arg(long)]
    chain: String,
    /// The model's GGUF file (a model registered on that chain).
    #[arg(long)]
    model: PathBuf,
    /// Layers to serve, `a..b` (default: the whole model if it fits the memory, else the range
    /// the network's pipelines need most that fits).
    #[arg(long)]
    layers: Option<String>,
    /// Address to listen on for gateways (`0.0.0.0:PORT` to be reachable from other machines).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The address others reach it at, registered on chain (default: the address it listens on).
    #[arg(long)]
    advertise: Option<SocketAddr>,
    /// The encrypted key file (created with a fresh account if missing; the passphrase comes
    /// from POLYLINK_PASSPHRASE or POLYLINK_PASSPHRASE_FILE).
    #[arg(long, default_value = "polylink-key.json")]
    key_file: PathBuf,
    /// Most compute threads the worker may use.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Most memory the worker may use, MiB (registered as the device's memory; default: what the
    /// machine has available).
    #[arg(long)]
    memory_mib: Option<u64>,
    /// Most sessions held at once.
    #[arg(long, default_value_t = 64)]
    sessions_max: usize,
}

/// `polylink leave`: stop being a worker (and any other role) of a network.
#[derive(Args)]
pub struct LeaveCmd {
    /// RPC url of a chain node of the network.
    #[arg(long)]
    chain: String,
    /// The encrypted key file `polylink join` made.
    #[arg(long, default_value = "polylink-key.json")]
    key_file: PathBuf,
    /// Also withdraw every unbonding entry that has matured.
    #[arg(long)]
    withdraw: bool,
}

/// Prints one JSON event line on stdout.
pub(crate) fn emit(value: serde_json::Value) {
    println!("{value}");
    let _ = std::io::Write::flush(&mut std::io::stdout());
}

fn chain_err(what: &str, e: impl std::fmt::Display) -> NodeError {
    NodeError::Chain(format!("{what}: {e}"))
}

/// Unbonds everything `key` has bonded (its roles become inactive at once); returns the amount.
async fn unbond_all(client: &Client, key: &SecretKey) -> anyhow::Result<Amount> {
    let bonded = client.account(&key.public_key()).await?.stake.bonded;
    if bonded > 0 {
        let signer = Signer::connect(client.clone(), key.clone()).await?;
        signer.send_and_wait(TxKind::Unbond(Unbond { amount: bonded }), FINALITY).await?;
    }
    Ok(bonded)
}

impl LeaveCmd {
    pub fn run(self) -> anyhow::Result<()> {
        let key = keyfile::open(&self.key_file, &keyfile::passphrase()?)?;
        super::wallet::block_on(async {
            let client = Client::new(&self.chain)?;
            if self.withdraw {
                let signer = Signer::connect(client.clone(), key.clone()).await?;
                signer.send_and_wait(TxKind::Withdraw, FINALITY).await?;
            }
            leave(&client, &key).await
        })
    }
}

/// Bytes the worker needs for `layers` of the model: their weights, the tensors outside the
/// blocks (embedding, head), and one full-context session's KV cache.
fn bytes_needed(info: &polylink_infer::ModelInfo, layers: &std::ops::Range<usize>) -> u64 {
    let weights: u64 = info.layer_bytes.get(layers.clone()).map_or(0, |l| l.iter().sum());
    let kv = info.kv_bytes_per_position(layers.len()) * info.hparams.context_len as u64;
    weights + info.other_bytes + kv
}

/// Waits until `account` holds `need` (balance plus bonded): it asks the chain's faucet first (a
/// dev chain has one), else prints once how to send it.
pub(crate) async fn await_funds(client: &Client, account: &PublicKey, need: Amount) -> anyhow::Result<()> {
    let mut told = false;
    let mut asked_faucet = false;
    loop {
        let view = client.account(account).await?;
        let have = view.balance + view.stake.bonded;
        if have >= need {
            return Ok(());
        }
        if !asked_faucet {
            asked_faucet = true;
            match client.faucet(account).await {
                Ok(tx) => {
                    emit(json!({ "event": "faucet", "account": account, "tx": tx }));
                    // Its transfer lands within a few blocks; ask for more only if it falls short.
                    let deadline = tokio::time::Instant::now() + FINALITY;
                    while tokio::time::Instant::now() < deadline {
                        let view = client.account(account).await?;
                        if view.balance + view.stake.bonded > have {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    continue;
                }
                Err(e) => tracing::info!("no faucet funds: {e}"),
            }
        }
        if !told {
            emit(json!({
                "event": "funds_needed", "account": account, "need": need.to_string(), "have": have.to_string(),
                "how": format!("from any funded wallet: polylink wallet transfer --to {account} --amount {}", need - have),
            }));
            told = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How to make an endpoint reachable, for the errors below.
const REACH_FIX: &str = "listen where others can reach this machine (--listen 0.0.0.0:PORT), advertise its \
                         address as they see it (--advertise IP:PORT), and let that port through the firewall";

/// Fails with how to fix it unless `endpoint` answers as `account`: first from this machine, then
/// from the network, asked of up to three registered gateways (`POST /polylink/probe`), which
/// dial it as they will to send it work. A gateway that cannot be asked does not count either
/// way; with none to ask, the local check stands alone.
async fn check_reachable(
    context: commonware_runtime::tokio::Context,
    client: &Client,
    key: &SecretKey,
    endpoint: SocketAddr,
) -> Result<(), NodeError> {
    let account = key.public_key();
    if let Err(error) = peers::reach(context, account, endpoint).await {
        return Err(NodeError::Chain(format!(
            "the advertised endpoint {endpoint} does not answer ({error}): {REACH_FIX}"
        )));
    }
    let gateways = client.gateways().await.map_err(|e| chain_err("listing gateways", e))?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| chain_err("http client", e))?;
    let mut refusals = Vec::new();
    for gateway in gateways.iter().take(3) {
        let url = format!("http://{}{PROBE_PATH}", gateway.gateway.endpoint.as_str());
        let request = ProbeRequest::signed(key, endpoint, now_ms().saturating_add(PROBE_TTL_MAX_MS / 2));
        let asked = http.post(&url).json(&request).send().await;
        let answer = match asked {
            Ok(resp) if resp.status().is_success() => resp.json::<ProbeAnswer>().await.ok(),
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                tracing::info!(%url, %status, %body, "a gateway would not check this endpoint");
                None
            }
            Err(_) => None,
        };
        match answer {
            Some(ProbeAnswer { reachable: true, .. }) => return Ok(()),
            Some(ProbeAnswer { error, .. }) => {
                refusals.push(format!("gateway {} ({})", gateway.account, error.unwrap_or_default()))
            }
            None => tracing::info!(%url, "a gateway could not be asked to check this endpoint"),
        }
    }
    if refusals.is_empty() {
        return Ok(());
    }
    Err(NodeError::Chain(format!(
        "the advertised endpoint {endpoint} answers here but not from the network: {}: {REACH_FIX}",
        refusals.join("; ")
    )))
}

/// Opens (or creates) a role's encrypted key file and hashes the model file it serves.
pub(crate) fn open_role(
    key_file: &std::path::Path,
    model: &std::path::Path,
) -> anyhow::Result<(SecretKey, Hash32)> {
    let passphrase = keyfile::passphrase()?;
    let (key, created) = keyfile::open_or_create(key_file, &passphrase)?;
    tracing::info!(account = %key.public_key(), key_file = %key_file.display(), created, "account");
    let artifact = polylink_models::sha256_file(model)
        .with_context(|| format!("hashing {}", model.display()))?
        .parse()
        .context("artifact hash")?;
    Ok((key, artifact))
}

impl JoinCmd {
    pub fn run(self) -> anyhow::Result<()> {
        let (account_key, artifact) = open_role(&self.key_file, &self.model)?;
        let account = account_key.public_key();
        let key = transport::key_from_seed(&account_key.seed())?;
        let info = polylink_infer::ModelInfo::from_gguf(&polylink_infer::Gguf::open(&self.model)?)?;
        let budget =
            self.memory_mib.map_or_else(polylink_node::platform::available_memory_bytes, |mib| mib << 20);
        let fits = |layers: &std::ops::Range<usize>| bytes_needed(&info, layers) <= budget;
        let layers = match self.layers.as_deref() {
            Some(text) => {
                let layers = worker::parse_layers(text)?;
                if self.memory_mib.is_some() && !fits(&layers) {
                    bail!(
                        "layers {}..{} need about {} MiB (weights and one full-context session), more than \
                         --memory-mib {}: serve fewer layers with --layers a..b, or leave --layers out",
                        layers.start,
                        layers.end,
                        bytes_needed(&info, &layers) >> 20,
                        budget >> 20
                    );
                }
                layers
            }
            // The whole model if it fits, else the range the network's pipelines need most.
            None => {
                let served = super::wallet::block_on(async {
                    let client = Client::new(&self.chain)?;
                    let model = onchain::model_by_artifact(&client, &artifact).await?;
                    let min = client.params().await?.params.worker_stake_min;
                    Ok(registry::served_ranges(&registry::fetch(&client).await?, model, min))
                })?;
                let n = info.hparams.n_layers;
                registry::choose_layers(n, fits, &served).with_context(|| {
                    format!(
                        "not even one layer of the model fits in {} MiB (it needs about {} MiB)",
                        budget >> 20,
                        bytes_needed(&info, &(0..1)) >> 20
                    )
                })?
            }
        };
        if self.advertise.unwrap_or(self.listen).ip().is_unspecified() {
            bail!(
                "{} is where it listens, not an address others can dial: give --advertise IP:PORT (this machine's \
                 address as the network sees it)",
                self.listen
            );
        }
        let gateways = KeySet::default();
        let config = WorkerConfig {
            model: self.model.clone(),
            layers: Some(layers),
            listen: self.listen,
            key,
            threads: self.threads.max(1),
            limits: EngineLimits { sessions_max: self.sessions_max, ..EngineLimits::default() },
            drop_layers: None,
            admission: Admission::Listed(gateways.clone()),
        };
        let (chain, advertise, memory_mib) = (self.chain.clone(), self.advertise, self.memory_mib);
        commonware_runtime::tokio::Runner::default().start(|context| async move {
            let stop = super::stop_signal()?;
            tokio::pin!(stop);
            let client = Client::new(&chain)?;
            let model = onchain::model_by_artifact(&client, &artifact).await?;
            let stake = onchain::stake_min(&client, Role::Worker).await?.saturating_mul(STAKE_BUFFER);
            let fees = client.params().await?.params.tx_fee * 10;
            await_funds(&client, &account, stake + fees).await?;
            let (probe_context, follow_context, earn_context) =
                (context.child("peers"), context.child("gateways"), context.child("earnings"));
            // The worker serves from its ready callback on; the rest of joining runs beside it
            // (the reachability check needs it answering).
            let (ready_tx, ready_rx) = futures::channel::oneshot::channel();
            let serving = worker::run(context, config, move |ready| async move {
                let _ = ready_tx.send(ready);
                Ok(())
            });
            tokio::pin!(serving);
            let setup = async {
                let ready = ready_rx.await.context("the worker stopped before it was ready")?;
                let endpoint = advertise.unwrap_or(ready.addr);
                check_reachable(probe_context.child("reachable"), &client, &account_key, endpoint).await?;
                let probe_key = transport::key_from_seed(&account_key.seed())?;
                let peers = registry::measure_peers(
                    probe_context,
                    &probe_key,
                    &client,
                    model,
                    &ProbeConfig::default(),
                )
                .await?;
                let measured = peers::summarize(&peers);
                let bandwidth_kbps = match measured {
                    Some(summary) => summary.bandwidth_kbps,
                    None => profile::loopback_bandwidth_kbps(32 << 20)
                        .map_err(|e| chain_err("measuring the link", e))?,
                };
                let memory_bytes = memory_mib.map_or(ready.measured.memory_bytes, |mib| mib << 20);
                let registration = WorkerRegistration {
                    model,
                    layers: ready.layers.clone(),
                    layer_time_us: ready.measured.layer_time_us,
                    memory_bytes,
                    bandwidth_kbps,
                    latency_us: measured.map_or(0, |s| s.latency_us),
                    endpoint,
                };
                onchain::register_worker(&client, &account_key, &registration).await?;
                gateways.replace(registry::gateway_keys(&client).await?);
                let (followed, every) = (client.clone(), Duration::from_secs(2));
                follow_context
                    .spawn(move |context| registry::follow_gateways(context, followed, gateways, every));
                let start = client.account(&account).await?.balance;
                emit(json!({
                    "event": "ready", "account": account, "endpoint": endpoint, "listen": ready.addr,
                    "layers": [ready.layers.start, ready.layers.end], "model": model,
                }));
                let earned = client.clone();
                earn_context.spawn(move |_| earnings(earned, account, start));
                anyhow::Ok(())
            };
            tokio::select! {
                served = &mut serving => return served.map_err(anyhow::Error::from),
                set = setup => set?,
                _ = &mut stop => return leave(&client, &account_key).await,
            }
            tokio::select! {
                served = serving => served.map_err(anyhow::Error::from),
                _ = stop => leave(&client, &account_key).await,
            }
        })
    }
}

/// Leaves the network: unbonds the whole stake and says so.
pub(crate) async fn leave(client: &Client, key: &SecretKey) -> anyhow::Result<()> {
    let unbonding = unbond_all(client, key).await?;
    let balance = client.account(&key.public_key()).await?.balance;
    emit(json!({
        "event": "left", "account": key.public_key(), "unbonding": unbonding.to_string(),
        "balance": balance.to_string(),
    }));
    Ok(())
}

/// Prints an `earned` line whenever the balance rises above what it was when serving began.
async fn earnings(client: Client, account: PublicKey, start: Amount) {
    let mut last = start;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Ok(view) = client.account(&account).await else { continue };
        if view.balance > last {
            emit(json!({
                "event": "earned", "account": account, "since_ready": (view.balance - start).to_string(),
                "balance": view.balance.to_string(),
            }));
            last = view.balance;
        }
    }
}
