//! What a role does on chain at start-up: sign and send a transaction and wait for the finalized
//! block that includes it, bond the stake a role needs, register a worker with its measured
//! profile, and find a model by the hash of its artifact.

use crate::NodeError;
use futures::StreamExt;
use polylink_chain::rpc::client::Client;
use polylink_types::{
    Amount, Bond, BoundedString, BoundedVec, DeviceProfile, Hash32, ModelId, PublicKey, RegisterWorker,
    SecretKey, ServedRange, TxKind, UnsignedTx,
};
use serde_json::Value;
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
pub async fn send(client: &Client, key: &SecretKey, kind: TxKind) -> Result<Value, NodeError> {
    let status = client.status().await.map_err(|e| chain_error("chain status", e))?;
    let account = client.account(&key.public_key()).await.map_err(|e| chain_error("account", e))?;
    let nonce = account.get("nonce").and_then(Value::as_u64).unwrap_or(0);
    let tx = UnsignedTx { signer: key.public_key(), nonce, kind }.sign(key, &status.chain_id);
    let id = tx.id().to_string();
    let mut blocks = client.events().await.map_err(|e| chain_error("event stream", e))?;
    client.submit(&tx).await.map_err(|e| chain_error("submit", e))?;
    let included = async {
        while let Some(block) = blocks.next().await {
            let ids = block.get("tx_ids").and_then(Value::as_array).cloned().unwrap_or_default();
            if let Some(index) = ids.iter().position(|v| v.as_str() == Some(id.as_str())) {
                return block.get("receipts").and_then(|r| r.get(index)).cloned();
            }
        }
        None
    };
    let receipt = tokio::time::timeout(FINALITY_TIMEOUT, included)
        .await
        .map_err(|_| NodeError::Chain(format!("transaction {id} not finalized within 60 s")))?
        .ok_or_else(|| NodeError::Chain(format!("event stream closed before {id} was finalized")))?;
    if receipt.get("ok").and_then(Value::as_bool) == Some(true) {
        Ok(receipt.get("events").cloned().unwrap_or(Value::Null))
    } else {
        let reason = receipt.get("error").and_then(Value::as_str).unwrap_or("refused");
        Err(NodeError::Chain(format!("transaction {id} refused: {reason}")))
    }
}

fn amount(value: &Value, field: &str) -> Result<Amount, NodeError> {
    value
        .get(field)
        .and_then(|a| a.as_str().map(str::to_string).or_else(|| a.as_u64().map(|n| n.to_string())))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| NodeError::Chain(format!("no amount {field} in {value}")))
}

/// Bonds whatever `key` lacks of `stake_min` (nothing if it holds enough already).
pub async fn ensure_bonded(client: &Client, key: &SecretKey, stake_min: Amount) -> Result<(), NodeError> {
    let account = client.account(&key.public_key()).await.map_err(|e| chain_error("account", e))?;
    let bonded = account.get("stake").map(|s| amount(s, "bonded")).transpose()?.unwrap_or(0);
    if bonded >= stake_min {
        return Ok(());
    }
    send(client, key, TxKind::Bond(Bond { amount: stake_min - bonded })).await.map(|_| ())
}

/// The minimum stake of a role (`worker_stake_min`, `validator_stake_min`) from the chain's params.
pub async fn stake_min(client: &Client, field: &str) -> Result<Amount, NodeError> {
    let answer: Value = client.get("/params").await.map_err(|e| chain_error("params", e))?;
    amount(&answer["params"], field)
}

/// The on-chain id of the model whose artifact hash is `artifact`.
pub async fn model_by_artifact(client: &Client, artifact: &Hash32) -> Result<ModelId, NodeError> {
    let models: Value = client.get("/models").await.map_err(|e| chain_error("models", e))?;
    let wanted = artifact.to_string();
    models
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["model"]["artifact_hash"].as_str() == Some(wanted.as_str()))
        .and_then(|m| m["id"].as_u64())
        .ok_or_else(|| {
            NodeError::Chain(format!("no model with artifact hash {wanted} is registered on chain"))
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

/// Bonds the worker minimum if needed and registers (or updates) `key` as a worker.
pub async fn register_worker(
    client: &Client,
    key: &SecretKey,
    registration: &WorkerRegistration,
) -> Result<PublicKey, NodeError> {
    ensure_bonded(client, key, stake_min(client, "worker_stake_min").await?).await?;
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
    let served = BoundedVec::new(vec![served]).map_err(|e| chain_error("served ranges", e))?;
    let endpoint =
        BoundedString::new(registration.endpoint.to_string()).map_err(|e| chain_error("endpoint", e))?;
    send(client, key, TxKind::RegisterWorker(RegisterWorker { profile, served, endpoint })).await?;
    Ok(key.public_key())
}
