//! The worker role: serve layers `a..b` of a GGUF model as a pipeline stage.

use crate::NodeError;
use crate::profile::{self, Measured};
use commonware_cryptography::Signer;
use commonware_cryptography::ed25519::{PrivateKey, PublicKey};
use commonware_runtime::{Listener, Network, Spawner, Supervisor, tokio};
use polylink_infer::{Gguf, HParams, Pool, Shard};
use polylink_pipeline::engine::{EngineHandle, EngineLimits};
use polylink_pipeline::server::{Admission, serve};
use polylink_pipeline::wire::WireLimits;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

/// How to run a worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The model's GGUF file.
    pub model: PathBuf,
    /// Layers to serve; `None` serves the whole model.
    pub layers: Option<Range<usize>>,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The worker's identity (its on-chain key).
    pub key: PrivateKey,
    /// Compute threads.
    pub threads: usize,
    /// Session limits.
    pub limits: EngineLimits,
    /// Layers to skip while claiming to serve them: a cheating worker, for the attack tests only.
    pub drop_layers: Option<Range<usize>>,
    /// Which heads may run inference here (on a chain: its registered gateways).
    pub admission: Admission,
}

/// A worker that has loaded its shard and bound its address, ready to serve.
pub struct Ready {
    /// The address it listens on (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// Its public key.
    pub key: PublicKey,
    /// The layers it serves.
    pub layers: Range<usize>,
    /// Its measured speed and memory.
    pub measured: Measured,
}

/// Parses `a..b` into a layer range.
pub fn parse_layers(text: &str) -> Result<Range<usize>, NodeError> {
    let bad = |reason: &str| NodeError::Layers { range: text.to_string(), reason: reason.to_string() };
    let (a, b) = text.split_once("..").ok_or_else(|| bad("expected a..b"))?;
    let a = a.trim().parse::<usize>().map_err(|_| bad("start is not a number"))?;
    let b = b.trim().parse::<usize>().map_err(|_| bad("end is not a number"))?;
    if a >= b {
        return Err(bad("start must be below end"));
    }
    Ok(a..b)
}

/// Loads the shard, measures it, binds the address, awaits `on_ready` (e.g. registering on chain;
/// its error stops the worker), then serves until the runtime stops.
pub async fn run<F>(
    context: tokio::Context,
    config: WorkerConfig,
    on_ready: impl FnOnce(Ready) -> F,
) -> Result<(), NodeError>
where
    F: Future<Output = Result<(), NodeError>>,
{
    let gguf = Gguf::open(&config.model)?;
    let n_layers = HParams::from_gguf(&gguf)?.n_layers;
    let layers = config.layers.clone().unwrap_or(0..n_layers);
    if layers.end > n_layers {
        return Err(NodeError::Layers {
            range: format!("{}..{}", layers.start, layers.end),
            reason: format!("the model has {n_layers} layers"),
        });
    }
    let mut shard = Shard::load(&gguf, layers.clone(), Arc::new(Pool::new(config.threads.max(1))))?;
    if let Some(drop) = config.drop_layers.clone() {
        tracing::warn!(?drop, "CHEATING: skipping layers while claiming to serve them (attack tests only)");
        shard = shard.without_layers(drop)?;
    }
    let shard = Arc::new(shard);
    let measured = profile::measure(&shard, 8)?;
    let listener = context
        .bind(config.listen)
        .await
        .map_err(|e| NodeError::Listen { addr: config.listen, reason: e.to_string() })?;
    let addr = listener
        .local_addr()
        .map_err(|e| NodeError::Listen { addr: config.listen, reason: e.to_string() })?;
    on_ready(Ready { addr, key: config.key.public_key(), layers, measured }).await?;
    // The worker signs a receipt for every task session it serves with its own account key.
    let signer = polylink_pipeline::transport::account_key(&config.key);
    let engine = EngineHandle::start(context.child("engine"), shard, config.limits, Some(signer));
    let server = context.spawn(move |context| {
        serve(context, config.key, listener, engine, WireLimits::default(), config.admission)
    });
    match server.await {
        Ok(result) => Ok(result?),
        Err(e) => Err(NodeError::Listen { addr, reason: format!("server task ended: {e}") }),
    }
}
