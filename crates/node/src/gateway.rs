//! The gateway role: the OpenAI-compatible API over the model's deployments, a task on chain per
//! request (escrow before inference, a result with the workers' receipts after), transcripts kept
//! for the validators, and the chain's worker registry followed so every registered worker that
//! answers is served, with no restart. `up` runs it beside the workers it started; `polylink
//! gateway` runs it alone, on its own machine, for any network.
use crate::NodeError;
use crate::discovery::{self, FollowConfig};
use commonware_runtime::{Handle, Spawner, Supervisor, tokio as cw};
use futures::future::BoxFuture;
use polylink_chain::rpc::{Client, RESTART_PATIENCE};
use polylink_gateway::{
    ApiKeys, ChainBilling, EndpointProbe, Gateway, Limits, ProbeError, StoreConfig, Transcripts,
};
use polylink_pipeline::transport::key_from_seed;
use polylink_pipeline::{Deployment, PipelineBackend};
use polylink_types::{ModelId, PublicKey, SecretKey};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One gateway: its key, its chain, its model and what it starts with.
pub struct GatewayRole<'a> {
    /// The chain node's RPC url.
    pub rpc_url: &'a str,
    /// The model's GGUF (only its tokenizer and chat template are read: the weights stay on the
    /// workers).
    pub gguf: &'a Path,
    /// The name clients ask for.
    pub model_name: &'a str,
    /// The model's id on chain.
    pub model_id: ModelId,
    /// The gateway's own account key, registered on chain: it opens tasks, reports results and
    /// (as the pipeline key derived from it) is the head the workers admit.
    pub key: SecretKey,
    /// Deployments it starts with (`up`'s own workers), possibly none.
    pub deployments: Vec<Deployment<cw::Context>>,
    /// Workers those deployments cover, which discovery leaves alone.
    pub known: HashSet<PublicKey>,
    /// Where transcripts wait for the validators.
    pub transcripts_dir: PathBuf,
    /// Request limits.
    pub limits: Limits,
}

/// Answers joining devices' reachability probes by dialing them from here, for accounts that
/// hold at least a worker's minimum stake (bonded or still in their balance: a device about to
/// join holds it before it bonds), so probing is not free to anyone.
struct Prober {
    context: cw::Context,
    client: Client,
}

impl EndpointProbe for Prober {
    fn probe(&self, account: PublicKey, endpoint: SocketAddr) -> BoxFuture<'static, Result<(), ProbeError>> {
        let (context, client) = (self.context.child("reach"), self.client.clone());
        Box::pin(async move {
            let unavailable =
                |e: polylink_chain::Error| ProbeError::Refused(format!("the chain cannot be read now: {e}"));
            let min = client.params().await.map_err(unavailable)?.params.worker_stake_min;
            let record = client.account(&account).await.map_err(unavailable)?;
            let held = record.balance.saturating_add(record.stake.bonded);
            if held < min {
                return Err(ProbeError::Refused(format!(
                    "account {account} holds {held}, less than a worker's minimum stake of {min}: only a device \
                     about to join may ask for a probe"
                )));
            }
            crate::peers::reach(context, account, endpoint).await.map_err(|e| {
                tracing::info!(%account, %endpoint, "probe: {e}");
                ProbeError::Unreachable
            })
        })
    }
}

/// Starts serving `role` on `listener`; returns the server's task.
pub async fn start(
    context: &cw::Context,
    role: GatewayRole<'_>,
    listener: tokio::net::TcpListener,
) -> Result<Handle<()>, NodeError> {
    let setup = |e: &dyn std::fmt::Display| NodeError::Chain(format!("starting the gateway: {e}"));
    let backend = Arc::new(
        PipelineBackend::new(context.child("generations"), role.gguf, role.model_name, role.deployments)
            .map_err(|e| setup(&e))?,
    );
    let layers = polylink_infer::HParams::from_gguf(&polylink_infer::Gguf::open(role.gguf)?)?.n_layers as u32;
    let follow = FollowConfig { known: role.known, ..FollowConfig::new(role.model_id, layers) };
    let client = Client::new(role.rpc_url).map_err(|e| setup(&e))?.with_patience(RESTART_PATIENCE);
    let probe_client = client.clone();
    let head_key = key_from_seed(&role.key.seed())?;
    let followed = backend.clone();
    context
        .child("discovery")
        .spawn(move |context| discovery::follow(context, client, head_key, followed, follow));
    // Callers come with on-chain keys, checked against their accounts' allowances.
    let models = HashMap::from([(role.model_name.to_string(), role.model_id)]);
    let billing = ChainBilling::connect(role.rpc_url, models, role.key).await.map_err(|e| setup(&e))?;
    let store = StoreConfig { dir: Some(role.transcripts_dir), ..StoreConfig::default() };
    let transcripts = Arc::new(Transcripts::connect(role.rpc_url, store).await.map_err(|e| setup(&e))?);
    let gateway = Gateway::new(backend, ApiKeys::new(), role.limits)
        .with_billing(Arc::new(billing))
        .with_transcripts(transcripts)
        .with_probe(Arc::new(Prober { context: context.child("probe"), client: probe_client }));
    Ok(context.child("gateway").spawn(move |_| async move {
        if let Err(e) = Arc::new(gateway).serve(listener).await {
            tracing::error!("gateway stopped: {e}");
        }
    }))
}
