//! The validator's side of the chain RPC: its own transactions (one signer, nonces tracked
//! locally and refetched when the node disagrees), the records it reads, and registration.

use crate::error::{Result, ValidatorError};
use polylink_chain::rpc::client::Client;
use polylink_types::{Amount, Bond, Hash32, ModelId, PublicKey, SecretKey, TaskId, TxKind, UnsignedTx};
use serde_json::Value;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::Mutex;

/// A connected signer.
pub struct Chain {
    client: Client,
    chain_id: String,
    key: SecretKey,
    next_nonce: Mutex<Option<u64>>,
}

fn rpc(e: impl std::fmt::Display) -> ValidatorError {
    ValidatorError::Chain(e.to_string())
}

fn amount(v: &Value, key: &'static str) -> Result<Amount> {
    let text = v.get(key).and_then(Value::as_str).ok_or_else(|| ValidatorError::shape(key, v))?;
    text.parse().map_err(|_| ValidatorError::shape(key, v))
}

impl Chain {
    /// Connects to the node at `url` and learns its chain id.
    pub async fn connect(url: &str, key: SecretKey) -> Result<Self> {
        let client = Client::new(url).map_err(rpc)?;
        let chain_id = client.status().await.map_err(|e| rpc(format!("{url}: {e}")))?.chain_id;
        Ok(Self { client, chain_id, key, next_nonce: Mutex::new(None) })
    }

    /// The typed RPC client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The chain id (bound into every signature).
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// This validator's account key.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// The signing key.
    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    /// This validator's account record.
    pub async fn account(&self) -> Result<Value> {
        self.client.account(&self.public_key()).await.map_err(rpc)
    }

    async fn chain_nonce(&self) -> Result<u64> {
        let account = self.account().await?;
        account.get("nonce").and_then(Value::as_u64).ok_or_else(|| ValidatorError::shape("nonce", &account))
    }

    /// Signs `kind` with the next nonce and submits it; the node's refusal is the error.
    pub async fn send(&self, kind: TxKind) -> Result<Hash32> {
        let mut next = self.next_nonce.lock().await;
        let mut refetched = false;
        loop {
            let nonce = match *next {
                Some(n) => n,
                None => {
                    refetched = true;
                    self.chain_nonce().await?
                }
            };
            let tx = UnsignedTx { signer: self.public_key(), nonce, kind: kind.clone() }
                .sign(&self.key, &self.chain_id);
            match self.client.submit(&tx).await {
                Ok(id) => {
                    *next = Some(nonce + 1);
                    return Ok(id);
                }
                Err(e) if !refetched && e.to_string().contains("nonce") => *next = None,
                Err(e) => {
                    *next = None;
                    return Err(rpc(format!("{} refused: {e}", kind.name())));
                }
            }
        }
    }

    /// Sends `kind` and waits (up to `timeout`) until the account's nonce passes it.
    pub async fn send_and_wait(&self, kind: TxKind, timeout: Duration) -> Result<()> {
        self.send(kind.clone()).await?;
        let target = self.next_nonce.lock().await.unwrap_or(0);
        let deadline = tokio::time::Instant::now() + timeout;
        while self.chain_nonce().await? < target {
            if tokio::time::Instant::now() >= deadline {
                return Err(rpc(format!("{} not executed within {timeout:?}", kind.name())));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// A task's record.
    pub async fn task(&self, task: &TaskId) -> Result<Value> {
        self.client.get(&format!("/task/{task}")).await.map_err(rpc)
    }

    /// A model's artifact hash.
    pub async fn artifact(&self, model: ModelId) -> Result<Hash32> {
        let record: Value = self.client.get(&format!("/model/{model}")).await.map_err(rpc)?;
        let text = record.get("artifact_hash").and_then(Value::as_str);
        text.and_then(|t| Hash32::from_str(t).ok())
            .ok_or_else(|| ValidatorError::shape("artifact_hash", &record))
    }

    /// Bonds up to `stake` (the chain's minimum when `None`) and registers as a validator unless
    /// already registered; returns the stake bonded.
    pub async fn register(&self, stake: Option<Amount>) -> Result<Amount> {
        let params: Value = self.client.get("/params").await.map_err(rpc)?;
        let min = amount(params.get("params").unwrap_or(&Value::Null), "validator_stake_min")?;
        let want = stake.unwrap_or(min);
        let account = self.account().await?;
        let bonded = amount(account.get("stake").unwrap_or(&Value::Null), "bonded")?;
        let wait = Duration::from_secs(60);
        if bonded < want {
            self.send_and_wait(TxKind::Bond(Bond { amount: want - bonded }), wait).await?;
        }
        if account.get("validator").is_none_or(Value::is_null) {
            self.send_and_wait(TxKind::RegisterValidator, wait).await?;
        }
        let account = self.account().await?;
        if account.get("validator").is_none_or(Value::is_null) {
            return Err(rpc(format!("registration of {} did not take effect", self.public_key())));
        }
        amount(account.get("stake").unwrap_or(&Value::Null), "bonded")
    }
}
