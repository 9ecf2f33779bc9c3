//! What a role does on chain at start-up: sign and send a transaction and wait for the finalized
//! block that includes it, bond the stake a role needs, register a worker with its measured
//! profile or a gateway with its endpoint, let a gateway spend from an account, and find a model
//! by the hash of its artifact.

use crate::NodeError;
use polylink_chain::rpc::{Client, Signer};
use polylink_types::{
    Allow, Amount, ApiKey, Bond, BoundedString, BoundedVec, DeviceProfile, Event, Hash32, ModelId, PublicKey,
    RegisterGateway, RegisterWorker, SecretKey, ServedRange, TxKind,
};
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

/// How long a transaction may take to be finalized.
const FINALITY_TIMEOUT: Duration = Duration::from_secs(60);

fn chain_error(what: &str, e: impl std::fmt::Display) -> NodeError {
    NodeError::Chain(format!("{what}: {e}"))
}

/// Signs `kind` with `key` at its next nonce, submits it and waits for the finalized block that
/// includes it. Returns the transaction's events, or the ledger's reason for refusing it.
pub async fn send(client: &Client, key: &SecretKey, kind: TxKind) -> Result<Vec<Event>, NodeError> {
    let name = kind.name();
    let signer =
        Signer::connect(client.clone(), key.clone()).await.map_err(|e| chain_error("chain status", e))?;
    let included = signer.send_and_wait(kind, FINALITY_TIMEOUT).await.map_err(|e| chain_error(name, e))?;
    Ok(included.events)
}

/// `user` locks a deposit of `limit` for `gateway`, which opens its tasks from it for callers
/// that present `api_key` (whose account must be `user`'s); nothing is sent when that deposit
/// stands already with at least `limit` left (else it is topped up to `limit`).
pub async fn allow(
    client: &Client,
    user: &SecretKey,
    gateway: PublicKey,
    limit: Amount,
    api_key: &ApiKey,
) -> Result<(), NodeError> {
    let account = client.account(&user.public_key()).await.map_err(|e| chain_error("account", e))?;
    let key_hash = api_key.hash();
    if account.allowances.iter().any(|a| a.gateway == gateway && a.key_hash == key_hash && a.limit >= limit) {
        return Ok(());
    }
    send(client, user, TxKind::Allow(Allow { gateway, limit, key_hash })).await.map(|_| ())
}

/// Bonds whatever `key` lacks of `stake_min` (nothing if it holds enough already).
pub async fn ensure_bonded(client: &Client, key: &SecretKey, stake_min: Amount) -> Result<(), NodeError> {
    let account = client.account(&key.public_key()).await.map_err(|e| chain_error("account", e))?;
    let bonded = account.stake.bonded;
    if bonded >= stake_min {
        return Ok(());
    }
    send(client, key, TxKind::Bond(Bond { amount: stake_min - bonded })).await.map(|_| ())
}

/// A role whose registration needs a minimum stake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A worker (`worker_stake_min`).
    Worker,
    /// A score validator (`validator_stake_min`).
    Validator,
    /// A gateway (`gateway_stake_min`).
    Gateway,
}

/// The minimum stake of `role` from the chain's params.
pub async fn stake_min(client: &Client, role: Role) -> Result<Amount, NodeError> {
    let params = client.params().await.map_err(|e| chain_error("params", e))?.params;
    Ok(match role {
        Role::Worker => params.worker_stake_min,
        Role::Validator => params.validator_stake_min,
        Role::Gateway => params.gateway_stake_min,
    })
}

/// The on-chain id of the model whose artifact hash is `artifact`.
pub async fn model_by_artifact(client: &Client, artifact: &Hash32) -> Result<ModelId, NodeError> {
    let models = client.models().await.map_err(|e| chain_error("models", e))?;
    models.iter().find(|m| &m.model.artifact_hash == artifact).map(|m| m.id).ok_or_else(|| {
        NodeError::Chain(format!("no model with artifact hash {artifact} is registered on chain"))
    })
}

/// What a worker tells the chain about itself.
#[derive(Debug, Clone)]
pub struct WorkerRegistration {
    /// The model served.
    pub model: ModelId,
    /// Its layers.
    pub layers: Range<usize>,
    /// Measured decode time per layer per token.
    pub layer_time_us: u64,
    /// Memory available, bytes.
    pub memory_bytes: u64,
    /// Measured link bandwidth, kbit/s.
    pub bandwidth_kbps: u64,
    /// Measured one-way latency to its peers (median), microseconds; 0 when none was measured.
    pub latency_us: u64,
    /// Where its pipeline server listens.
    pub endpoint: SocketAddr,
}

/// How many times its role's minimum a node bonds by default: a slash (at a worker's last strike,
/// or a validator's outlier score) then leaves it above the minimum and in the network.
pub const STAKE_BUFFER: Amount = 2;

/// Bonds [`STAKE_BUFFER`] times the worker minimum if needed and registers (or updates) `key` as
/// a worker; nothing is sent when it is registered already with the same endpoint and layers and
/// a speed within a factor of 3 (a restart).
pub async fn register_worker(
    client: &Client,
    key: &SecretKey,
    registration: &WorkerRegistration,
) -> Result<PublicKey, NodeError> {
    ensure_bonded(client, key, stake_min(client, Role::Worker).await?.saturating_mul(STAKE_BUFFER)).await?;
    let served = ServedRange {
        model: registration.model,
        layer_start: registration.layers.start as u32,
        layer_end: registration.layers.end as u32,
        layer_time_us: registration.layer_time_us.clamp(1, u64::from(u32::MAX)) as u32,
    };
    let profile = DeviceProfile {
        memory_mib: (registration.memory_bytes >> 20).max(1),
        bandwidth_kbps: registration.bandwidth_kbps,
        latency_us: registration.latency_us,
    };
    let endpoint = registration.endpoint.to_string();
    // A worker restarted where it was, serving what it served at about the speed it measured
    // before, is registered already: it pays no fee to say so again (`up` restarts its workers).
    let account = client.account(&key.public_key()).await.map_err(|e| chain_error("account", e))?;
    if let Some(w) = &account.worker
        && w.endpoint.as_str() == endpoint
        && let [on_chain] = w.served.as_slice()
        && (on_chain.model, on_chain.layer_start, on_chain.layer_end)
            == (served.model, served.layer_start, served.layer_end)
        && similar(on_chain.layer_time_us, served.layer_time_us)
    {
        tracing::info!(%endpoint, "registered already with this endpoint, these layers and about this speed");
        return Ok(key.public_key());
    }
    let served = BoundedVec::new(vec![served]).map_err(|e| chain_error("served ranges", e))?;
    let endpoint = BoundedString::new(endpoint).map_err(|e| chain_error("endpoint", e))?;
    send(client, key, TxKind::RegisterWorker(RegisterWorker { profile, served, endpoint })).await?;
    Ok(key.public_key())
}

/// Whether two measured per-layer times are within a factor of 3 of each other. A device
/// measures differently each time it starts (more so while its neighbours load), and the
/// registered time is only a hint for planning: gateways route by the step times they measure.
fn similar(a: u32, b: u32) -> bool {
    let (lo, hi) = (u64::from(a.min(b)), u64::from(a.max(b)));
    hi <= lo * 3
}

/// Bonds [`STAKE_BUFFER`] times the gateway minimum if needed and registers (or moves) `key` as a
/// gateway serving transcripts at `endpoint`; nothing is sent when it is registered there already.
pub async fn register_gateway(
    client: &Client,
    key: &SecretKey,
    endpoint: SocketAddr,
) -> Result<(), NodeError> {
    ensure_bonded(client, key, stake_min(client, Role::Gateway).await?.saturating_mul(STAKE_BUFFER)).await?;
    let account = client.account(&key.public_key()).await.map_err(|e| chain_error("account", e))?;
    let endpoint = endpoint.to_string();
    if account.gateway.is_some_and(|g| g.endpoint.as_str() == endpoint) {
        return Ok(());
    }
    let endpoint = BoundedString::new(endpoint).map_err(|e| chain_error("endpoint", e))?;
    send(client, key, TxKind::RegisterGateway(RegisterGateway { endpoint })).await.map(|_| ())
}
