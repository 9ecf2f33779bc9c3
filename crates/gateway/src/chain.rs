//! [`Billing`] against a PolyLink chain node, through its typed RPC client.
//!
//! Open: the gateway signs a SubmitTask for the caller's account (escrow `tokens × price` at the
//! model's current price, that price as the most the user accepts, this gateway's worker as the
//! head) and submits it; the mempool admits it only if the balance covers the escrow, so
//! inference starts without waiting for a block. Close: once the task is executed on chain, the
//! worker key signs a SubmitResult with the output hash and the delivered token counts; the
//! ledger charges those tokens and refunds the rest. Nonces are tracked per signer so one
//! account can have several tasks pending in the same block.

use crate::billing::{Billing, Charge, Opening, Ticket, UsageReport};
use crate::error::{GatewayError, Result};
use crate::keys::Account;
use futures::future::BoxFuture;
use polylink_chain::rpc::{Client, ErrorCode, Signer};
use polylink_types::{
    Amount, BoundedVec, Hash32, ModelId, PublicKey, STAGES_MAX, SecretKey, StandIn, SubmitResult, SubmitTask,
    TxKind,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Bills every request as a task on a chain node.
pub struct ChainBilling {
    client: Client,
    chain_id: String,
    models: HashMap<String, ModelId>,
    worker: SecretKey,
    /// Keys of the other workers this gateway reports for (pipeline heads it operates).
    worker_keys: HashMap<PublicKey, SecretKey>,
    /// One signer per account this gateway sends for, so each keeps its own nonces.
    signers: Mutex<HashMap<PublicKey, Arc<Signer>>>,
    settle_timeout: Duration,
}

fn chain(e: polylink_chain::Error) -> GatewayError {
    GatewayError::Billing(e.to_string())
}

impl ChainBilling {
    /// Connects to the node at `rpc_url`; `models` maps gateway model ids to on-chain model ids,
    /// `worker` is the registered worker key that serves them and reports results.
    pub async fn connect(rpc_url: &str, models: HashMap<String, ModelId>, worker: SecretKey) -> Result<Self> {
        let client = Client::new(rpc_url).map_err(|e| GatewayError::Setup(format!("chain client: {e}")))?;
        let status =
            client.status().await.map_err(|e| GatewayError::Setup(format!("chain at {rpc_url}: {e}")))?;
        Ok(Self {
            client,
            chain_id: status.chain_id,
            models,
            worker,
            worker_keys: HashMap::new(),
            signers: Mutex::new(HashMap::new()),
            settle_timeout: Duration::from_secs(120),
        })
    }

    /// Adds worker keys this gateway may report results for: a placement naming one of them as
    /// its head is billed with it (the others are paid but sign nothing).
    pub fn with_worker_keys(mut self, keys: impl IntoIterator<Item = SecretKey>) -> Self {
        self.worker_keys.extend(keys.into_iter().map(|k| (k.public_key(), k)));
        self
    }

    /// Signs `kind` for `key` with its next nonce and submits it; returns the transaction id.
    async fn send(&self, key: &SecretKey, kind: TxKind) -> Result<Hash32> {
        let signer = {
            let mut signers = self.signers.lock().await;
            let entry = signers.entry(key.public_key());
            entry
                .or_insert_with(|| Arc::new(Signer::new(self.client.clone(), &self.chain_id, key.clone())))
                .clone()
        };
        signer.send(kind).await.map_err(|e| match e.code() {
            Some(ErrorCode::InsufficientBalance) => GatewayError::InsufficientBalance(e.to_string()),
            _ => chain(e),
        })
    }

    async fn open_task(&self, account: &Account, opening: Opening<'_>) -> Result<Ticket> {
        let Opening { model, tokens_max, prompt_hash, placement, seed, max_price } = opening;
        let model_id = *self
            .models
            .get(model)
            .ok_or_else(|| GatewayError::Billing(format!("model {model} has no on-chain id")))?;
        let price = self.client.model(model_id).await.map_err(chain)?.price;
        if let Some(max) = max_price.filter(|max| price > *max) {
            return Err(GatewayError::PriceAboveMax { price, max });
        }
        let escrow = Amount::from(tokens_max).saturating_mul(price);
        let balance = self.client.account(&account.address).await.map_err(chain)?.balance;
        if balance < escrow {
            return Err(GatewayError::InsufficientBalance(format!(
                "account {} holds {balance}, the escrow of {tokens_max} tokens at {price} is {escrow}",
                account.address
            )));
        }
        let (workers, shares_bps) = if placement.workers.is_empty() {
            (vec![self.worker.public_key()], vec![10_000u16])
        } else {
            let head = &placement.workers[0];
            if *head != self.worker.public_key() && !self.worker_keys.contains_key(head) {
                return Err(GatewayError::Billing(format!(
                    "no key to report results for head worker {head}"
                )));
            }
            (placement.workers.clone(), placement.shares_bps.clone())
        };
        let on_chain = BoundedVec::new(workers.clone()).map_err(|e| GatewayError::Billing(e.to_string()))?;
        let kind = TxKind::SubmitTask(SubmitTask {
            model: model_id,
            max_tokens: tokens_max,
            prompt_hash,
            // The client's cap, so a price that rises before the task executes is refused by
            // the chain rather than charged.
            max_price: max_price.unwrap_or(price),
            workers: on_chain,
            seed,
        });
        let task = self.send(&account.key, kind).await?;
        Ok(Ticket { task, price_per_token: price, escrow, workers, shares_bps })
    }

    async fn close_task(&self, ticket: &Ticket, usage: UsageReport) -> Result<Charge> {
        // The result is admitted only once the task itself is executed on chain.
        let deadline = tokio::time::Instant::now() + self.settle_timeout;
        let record = loop {
            match self.client.task(&ticket.task).await {
                Ok(task) => break task,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(GatewayError::Billing(format!(
                        "task {} never appeared on chain: {e}",
                        ticket.task
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let price = record.price;
        // Shares by the work actually done; by the placement when the backend did not say (or
        // more stand-ins served than a result can name).
        let (shares, stand_ins) = match usage.work.as_deref().map(|w| shares_of_work(&ticket.workers, w)) {
            Some((shares, stand_ins)) if stand_ins.len() <= STAGES_MAX => (shares, stand_ins),
            _ => (ticket.shares_bps.clone(), Vec::new()),
        };
        let bounded = |e: polylink_types::Error| GatewayError::Billing(e.to_string());
        let shares = BoundedVec::new(shares).map_err(bounded)?;
        let stand_ins = BoundedVec::new(stand_ins).map_err(bounded)?;
        let head = ticket.workers.first().copied().unwrap_or_else(|| self.worker.public_key());
        let signer = if head == self.worker.public_key() {
            &self.worker
        } else {
            self.worker_keys.get(&head).ok_or_else(|| {
                GatewayError::Billing(format!("no key to report results for head worker {head}"))
            })?
        };
        let result = SubmitResult {
            task: ticket.task,
            output_hash: usage.output_hash,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            stage_shares_bps: shares,
            stand_ins,
        };
        self.send(signer, TxKind::SubmitResult(result)).await?;
        let tokens = Amount::from(usage.prompt_tokens) + Amount::from(usage.completion_tokens);
        Ok(Charge { amount: tokens.saturating_mul(price) })
    }
}

/// Basis points of the work for the task's listed `workers` (aligned with them) and for the
/// stand-ins outside the list, from each worker's part of the `work`; they sum to 10,000, the
/// rounding remainder going to the head (the first listed worker).
fn shares_of_work(workers: &[PublicKey], work: &[(PublicKey, u64)]) -> (Vec<u16>, Vec<StandIn>) {
    let total: u128 = work.iter().map(|(_, w)| u128::from(*w)).sum::<u128>().max(1);
    let bps = |w: u64| (u128::from(w) * 10_000 / total) as u16;
    let of = |who: &PublicKey| work.iter().filter(|(w, _)| w == who).map(|(_, w)| *w).sum::<u64>();
    let mut shares: Vec<u16> = workers.iter().map(|w| bps(of(w))).collect();
    let mut stand_ins: Vec<StandIn> = Vec::new();
    for (who, _) in work.iter().filter(|(w, _)| !workers.contains(w)) {
        if !stand_ins.iter().any(|s| &s.worker == who) {
            stand_ins.push(StandIn { worker: *who, share_bps: bps(of(who)) });
        }
    }
    let given: u32 = shares.iter().chain(stand_ins.iter().map(|s| &s.share_bps)).map(|&b| u32::from(b)).sum();
    if let Some(head) = shares.first_mut() {
        *head += (10_000 - given.min(10_000)) as u16;
    }
    (shares, stand_ins)
}

impl Billing for ChainBilling {
    fn open<'a>(&'a self, account: &'a Account, opening: Opening<'a>) -> BoxFuture<'a, Result<Ticket>> {
        Box::pin(self.open_task(account, opening))
    }

    fn close<'a>(&'a self, ticket: &'a Ticket, usage: UsageReport) -> BoxFuture<'a, Result<Charge>> {
        Box::pin(self.close_task(ticket, usage))
    }
}
