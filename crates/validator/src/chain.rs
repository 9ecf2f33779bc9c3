//! The validator's side of the chain RPC: its own transactions (through the one [`Signer`]), the
//! records it reads, and registration.

use crate::error::{Result, ValidatorError};
use polylink_chain::rpc::{AccountView, Client, RESTART_PATIENCE, Signer};
use polylink_ledger::Task;
use polylink_types::{Amount, Bond, Hash32, ModelId, PublicKey, SecretKey, TaskId, TxId, TxKind};
use std::time::Duration;

/// How long registration waits for each of its transactions.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(60);

/// A connected signer.
pub(crate) struct Chain {
    signer: Signer,
}

fn rpc(e: impl std::fmt::Display) -> ValidatorError {
    ValidatorError::Chain(e.to_string())
}

impl Chain {
    /// Connects to the node at `url` and learns its chain id.
    pub(crate) async fn connect(url: &str, key: SecretKey) -> Result<Self> {
        let client = Client::new(url).map_err(rpc)?.with_patience(RESTART_PATIENCE);
        let signer = Signer::connect(client, key).await.map_err(|e| rpc(format!("{url}: {e}")))?;
        Ok(Self { signer })
    }

    /// The typed RPC client.
    pub(crate) fn client(&self) -> &Client {
        self.signer.client()
    }

    /// The chain id (bound into every signature).
    pub(crate) fn chain_id(&self) -> &str {
        self.signer.chain_id()
    }

    /// This validator's account key.
    pub(crate) fn public_key(&self) -> PublicKey {
        self.signer.public_key()
    }

    /// This validator's account record.
    pub(crate) async fn account(&self) -> Result<AccountView> {
        self.client().account(&self.public_key()).await.map_err(rpc)
    }

    /// Signs `kind` with the next nonce and submits it; the node's refusal is the error.
    pub(crate) async fn send(&self, kind: TxKind) -> Result<TxId> {
        let name = kind.name();
        self.signer.send(kind).await.map_err(|e| rpc(format!("{name} refused: {e}")))
    }

    /// [`Self::send`] with the node's own error: one without a refusal code never reached the
    /// node or got no answer (the node may be restarting), so it is worth sending again.
    pub(crate) async fn try_send(&self, kind: TxKind) -> std::result::Result<TxId, polylink_chain::Error> {
        self.signer.send(kind).await
    }

    /// A task's record.
    pub(crate) async fn task(&self, task: &TaskId) -> Result<Task> {
        self.client().task(task).await.map_err(rpc)
    }

    /// A model's artifact hash.
    pub(crate) async fn artifact(&self, model: ModelId) -> Result<Hash32> {
        Ok(self.client().model(model).await.map_err(rpc)?.artifact_hash)
    }

    /// Bonds up to `stake` (twice the chain's minimum when `None`) and registers as a validator unless
    /// already registered; returns the stake bonded.
    pub(crate) async fn register(&self, stake: Option<Amount>) -> Result<Amount> {
        let min = self.client().params().await.map_err(rpc)?.params.validator_stake_min;
        // By default twice the minimum: one slash leaves the validator in the committees.
        let want = stake.unwrap_or(min.saturating_mul(2));
        let account = self.account().await?;
        let bonded = account.stake.bonded;
        let wait = |kind: TxKind| async move {
            let name = kind.name();
            self.signer.send_and_wait(kind, REGISTER_TIMEOUT).await.map_err(|e| rpc(format!("{name}: {e}")))
        };
        if bonded < want {
            wait(TxKind::Bond(Bond { amount: want - bonded })).await?;
        }
        if account.validator.is_none() {
            wait(TxKind::RegisterValidator).await?;
        }
        let account = self.account().await?;
        if account.validator.is_none() {
            return Err(rpc(format!("registration of {} did not take effect", self.public_key())));
        }
        Ok(account.stake.bonded)
    }
}
