//! [`Billing`] against a PolyLink chain node, through its typed RPC client.
//!
//! Authenticate: an on-chain API key is good while its account allows this gateway with the key's
//! hash (read from the chain, remembered for 5 s).
//! Open: the gateway signs a SubmitTask paid by the caller's account (escrow `tokens × price` at
//! the model's current price, that price as the most the user accepts, the placement's workers,
//! this gateway as the one that reports and keeps the transcript) and submits it; the mempool
//! admits it only if the account's deposit for this gateway covers the escrow (a deposit is the
//! account's funds locked for this gateway alone, so no other gateway can spend them meanwhile),
//! so inference starts without waiting for a block. The gateway holds no user's key: an API key
//! spends only the deposit, and a signed request carries the account's own voucher, which the
//! chain checks.
//! Close: once the task is executed on chain, the gateway's own key (a registered gateway's)
//! signs a SubmitResult with the output hash, the delivered token counts and the workers' signed
//! receipts; the ledger charges those tokens and refunds the rest. The gateway holds no worker's
//! key: the receipts are the workers' own signatures. Nonces are tracked per signer so one
//! account can have several tasks pending in the same block.

use crate::billing::{Billing, Charge, Opening, Ticket, UsageReport};
use crate::error::{GatewayError, Result};
use crate::keys::Account;
use futures::future::BoxFuture;
use polylink_chain::rpc::{Client, ErrorCode, RESTART_PATIENCE, Signer};
use polylink_types::ApiKey;
use polylink_types::{
    Amount, BoundedVec, Hash32, ModelId, PublicKey, RECEIPTS_MAX, SecretKey, SignedVoucher, SubmitResult,
    SubmitTask, TxKind, VOUCHER_TTL_MAX_MS, uncovered_layer,
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
    /// The registered gateway's key: it is named on every task and reports every result.
    gateway: SecretKey,
    /// The worker that serves a placement naming none (a backend on this machine).
    local_worker: Option<PublicKey>,
    /// The gateway's signer (every task and result), created on first use.
    signer: Mutex<Option<Arc<Signer>>>,
    /// What each task opened here and not yet reported holds of its payer's funds.
    reserved: Mutex<HashMap<polylink_types::TaskId, (PublicKey, Amount, tokio::time::Instant)>>,
    /// On-chain keys found good, by hash, and when.
    keys_seen: Mutex<HashMap<Hash32, tokio::time::Instant>>,
    /// Vouchers taken here, by id, with when they expire (chain ms): each opens one task.
    vouchers_seen: Mutex<HashMap<Hash32, u64>>,
    settle_timeout: Duration,
    /// The chain's fee per transaction (a genesis parameter).
    tx_fee: Amount,
}

/// Pause between two tries of a report the chain node did not answer.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// How long an on-chain key found good is taken without asking the chain again (a revoked
/// allowance stops new requests within this; the chain refuses their tasks at once anyway).
const KEY_CHECK_TTL: Duration = Duration::from_secs(5);

/// Longest a task's reservation is kept without its report.
const RESERVATION_MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// Most on-chain keys remembered; past it the memory starts over.
const KEYS_SEEN_MAX: usize = 4_096;

fn chain(e: polylink_chain::Error) -> GatewayError {
    GatewayError::Billing(e.to_string())
}

impl ChainBilling {
    /// Connects to the node at `rpc_url`; `models` maps gateway model ids to on-chain model ids,
    /// `gateway` is this registered gateway's key, which reports results.
    pub async fn connect(
        rpc_url: &str,
        models: HashMap<String, ModelId>,
        gateway: SecretKey,
    ) -> Result<Self> {
        let client = Client::new(rpc_url)
            .map_err(|e| GatewayError::Setup(format!("chain client: {e}")))?
            .with_patience(RESTART_PATIENCE);
        let status =
            client.status().await.map_err(|e| GatewayError::Setup(format!("chain at {rpc_url}: {e}")))?;
        let params = client
            .params()
            .await
            .map_err(|e| GatewayError::Setup(format!("chain at {rpc_url}: {e}")))?
            .params;
        Ok(Self {
            client,
            chain_id: status.chain_id,
            models,
            gateway,
            local_worker: None,
            signer: Mutex::new(None),
            keys_seen: Mutex::new(HashMap::new()),
            vouchers_seen: Mutex::new(HashMap::new()),
            reserved: Mutex::new(HashMap::new()),
            settle_timeout: Duration::from_secs(120),
            tx_fee: params.tx_fee,
        })
    }

    /// Names `worker` on the tasks of placements that name no worker (a backend computing on
    /// this machine, which signs its receipts with that worker's key).
    pub fn with_local_worker(mut self, worker: PublicKey) -> Self {
        self.local_worker = Some(worker);
        self
    }

    /// Signs `kind` with the gateway's key and next nonce and submits it; returns the transaction
    /// id.
    async fn send(&self, kind: TxKind) -> Result<Hash32> {
        self.send_raw(kind).await.map_err(|e| match e.code() {
            Some(ErrorCode::InsufficientBalance | ErrorCode::AllowanceShort) => {
                GatewayError::InsufficientBalance(e.to_string())
            }
            _ => chain(e),
        })
    }

    /// [`Self::send`], with the node's own error (a refusal carries its code; one without a code
    /// never reached the node or got no answer).
    async fn send_raw(&self, kind: TxKind) -> std::result::Result<Hash32, polylink_chain::Error> {
        let signer = self
            .signer
            .lock()
            .await
            .get_or_insert_with(|| {
                Arc::new(Signer::new(self.client.clone(), &self.chain_id, self.gateway.clone()))
            })
            .clone();
        signer.send(kind).await
    }

    async fn check_key(&self, key: &ApiKey) -> Result<()> {
        let hash = key.hash();
        let now = tokio::time::Instant::now();
        if self.keys_seen.lock().await.get(&hash).is_some_and(|at| now.duration_since(*at) < KEY_CHECK_TTL) {
            return Ok(());
        }
        let account = self.client.account(&key.account).await.map_err(chain)?;
        let gateway = self.gateway.public_key();
        match account.allowances.iter().find(|a| a.gateway == gateway) {
            Some(a) if a.key_hash == hash => {
                let mut seen = self.keys_seen.lock().await;
                if seen.len() >= KEYS_SEEN_MAX {
                    seen.clear();
                }
                seen.insert(hash, now);
                Ok(())
            }
            // Whether the account allows this gateway at all is the owner's business: the
            // caller learns only that the key is not good here.
            _ => Err(GatewayError::WrongKey { masked: String::new() }),
        }
    }

    async fn take_voucher(&self, sv: &SignedVoucher) -> Result<()> {
        let v = &sv.voucher;
        let bad = |m: String| Err(GatewayError::BadVoucher(m));
        let me = self.gateway.public_key();
        if v.gateway != me {
            return bad(format!("it is for gateway {}, this is {me}", v.gateway));
        }
        if !sv.verify(&self.chain_id) {
            return bad(format!("it is not signed by its payer {} for chain {}", v.payer, self.chain_id));
        }
        let now_ms = self.client.status().await.map_err(chain)?.time_ms;
        if v.expires_ms <= now_ms {
            return bad(format!("it expired at {} ms; the chain is at {now_ms} ms", v.expires_ms));
        }
        if v.expires_ms > now_ms.saturating_add(VOUCHER_TTL_MAX_MS) {
            return bad(format!(
                "it expires at {} ms, more than {VOUCHER_TTL_MAX_MS} ms after the chain's {now_ms} ms",
                v.expires_ms
            ));
        }
        let mut seen = self.vouchers_seen.lock().await;
        seen.retain(|_, expires| *expires > now_ms);
        if seen.insert(v.id(), v.expires_ms).is_some() {
            return bad("it was used here already; sign each request anew".into());
        }
        Ok(())
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
        // The payer also repays the gateway the fee of the transaction that opens its task.
        let fee = self.tx_fee;
        let needed = escrow.saturating_add(fee);
        let me = self.gateway.public_key();
        let payer = (account.address != me).then_some(account.address);
        if let Some(sv) = &account.voucher {
            if sv.voucher.model != model_id {
                return Err(GatewayError::BadVoucher(format!(
                    "it is for model {}, {model} is model {model_id} on chain",
                    sv.voucher.model
                )));
            }
            if needed > sv.voucher.max_spend {
                return Err(GatewayError::BadVoucher(format!(
                    "it allows {}, this request needs {needed}: the escrow of {tokens_max} tokens (prompt and \
                     max_tokens) at {price} plus the fee of {fee}",
                    sv.voucher.max_spend
                )));
            }
        }
        let workers = match (placement.workers.is_empty(), self.local_worker) {
            (false, _) => placement.workers.clone(),
            (true, Some(local)) => vec![local],
            (true, None) => return Err(GatewayError::Billing("the placement names no worker".into())),
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
            gateway: me,
            seed,
            payer,
            voucher: account.voucher,
        });
        // Tasks this gateway opened that the chain may not count yet are reserved against the
        // payer's balance and allowance, so one payer's concurrent requests never open more than
        // it can pay: a task refused in its block after inference began would leave its workers
        // unpaid. (Conservative: a reservation is kept until the task's result is reported.)
        let mut reserved = self.reserved.lock().await;
        // One whose report never came (it cannot outlive the chain's task deadline) is let go.
        reserved.retain(|_, (_, _, at)| at.elapsed() < RESERVATION_MAX_AGE);
        let held: Amount =
            reserved.values().filter(|(who, _, _)| *who == account.address).map(|(_, a, _)| *a).sum();
        let state = self.client.account(&account.address).await.map_err(chain)?;
        if payer.is_none() {
            let balance = state.balance.saturating_sub(held);
            if balance < needed {
                return Err(GatewayError::InsufficientBalance(format!(
                    "account {} holds {balance} beyond its open tasks here, the escrow of {tokens_max} tokens \
                     at {price} and the fee are {needed}",
                    account.address
                )));
            }
        } else {
            // A cut the account announced counts as done: its notice is for tasks already open.
            let deposit = state.allowances.iter().find(|a| a.gateway == me);
            let spendable = deposit.map_or(0, |a| a.spendable()).saturating_sub(held);
            if spendable < needed {
                return Err(GatewayError::InsufficientBalance(format!(
                    "account {}'s deposit for this gateway has {spendable} beyond its open tasks here, the \
                     escrow of {tokens_max} tokens at {price} and the fee are {needed}; raise it with \
                     `polylink wallet allow`",
                    account.address
                )));
            }
        }
        let task = match self.send(kind).await {
            Ok(task) => task,
            Err(e @ GatewayError::Billing(_)) => {
                drop(reserved);
                return Err(self.blame_worker(&workers).await.unwrap_or(e));
            }
            Err(e) => return Err(e),
        };
        reserved.insert(task, (account.address, needed, tokio::time::Instant::now()));
        drop(reserved);
        Ok(Ticket { task, price_per_token: price, escrow, workers })
    }

    /// After the chain refused a task: a named worker that can no longer be named on one (not
    /// registered, or under the worker minimum), if any.
    async fn blame_worker(&self, workers: &[PublicKey]) -> Option<GatewayError> {
        let min = self.client.params().await.ok()?.params.worker_stake_min;
        for w in workers {
            let account = self.client.account(w).await.ok()?;
            if account.worker.is_none() || account.stake.bonded < min {
                return Some(GatewayError::WorkerUnavailable(format!(
                    "worker {w} has {} bonded of the {min} minimum{}",
                    account.stake.bonded,
                    if account.worker.is_none() { " and is not registered" } else { "" }
                )));
            }
        }
        None
    }

    async fn close_task(&self, ticket: &Ticket, usage: UsageReport) -> Result<Charge> {
        let result = self.report(ticket, usage).await;
        // Reported (or never to be): the chain's own state counts the task from now on.
        self.reserved.lock().await.remove(&ticket.task);
        result
    }

    async fn report(&self, ticket: &Ticket, usage: UsageReport) -> Result<Charge> {
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
        // The workers' receipts are the proof of the work: without any, nothing can be billed
        // (the ledger pays only workers that signed), so the user is charged nothing.
        // A stage that never answered its close leaves its layers without a receipt; the ledger
        // refuses such a bill, so it is reported as nothing billed (the user pays nothing, and no
        // worker answers for the task).
        let layers = loop {
            match self.client.model(record.model).await {
                Ok(model) => break model.layer_count,
                Err(e) if e.code().is_none() && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await
                }
                Err(e) => return Err(chain(e)),
            }
        };
        let mut receipts = usage.receipts;
        receipts.retain(|r| r.receipt.task == ticket.task);
        receipts.truncate(RECEIPTS_MAX);
        let covered = uncovered_layer(receipts.iter().map(|r| &r.receipt), layers).is_none();
        let (prompt_tokens, completion_tokens) = if covered && !receipts.is_empty() {
            (usage.prompt_tokens, usage.completion_tokens)
        } else {
            if usage.prompt_tokens + usage.completion_tokens > 0 {
                let spans: Vec<String> = receipts
                    .iter()
                    .map(|r| {
                        format!("{}:{}..{}", r.receipt.worker, r.receipt.layer_start, r.receipt.layer_end)
                    })
                    .collect();
                tracing::warn!(
                    task = %ticket.task, receipts = ?spans,
                    "the workers' receipts do not cover the model's {layers} layers; reporting nothing billed"
                );
            }
            receipts.clear();
            (0, 0)
        };
        let receipts = BoundedVec::new(receipts).map_err(|e| GatewayError::Billing(e.to_string()))?;
        let result = SubmitResult {
            task: ticket.task,
            output_hash: usage.output_hash,
            prompt_tokens,
            completion_tokens,
            receipts,
        };
        // A node that restarts (or a connection that drops) costs a retry, not the workers' pay:
        // sent again until the chain holds the result or refuses it.
        loop {
            match self.send_raw(TxKind::SubmitResult(result.clone())).await {
                Ok(_) => break,
                Err(e) if e.code().is_none() && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(task = %ticket.task, "reporting the result: {e}; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    if self.client.task(&ticket.task).await.is_ok_and(|t| t.result.is_some()) {
                        break;
                    }
                }
                Err(e) => return Err(chain(e)),
            }
        }
        let tokens = Amount::from(prompt_tokens) + Amount::from(completion_tokens);
        Ok(Charge { amount: tokens.saturating_mul(price) })
    }
}

impl Billing for ChainBilling {
    fn authenticate<'a>(&'a self, key: &'a ApiKey) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.check_key(key))
    }

    fn check_voucher<'a>(&'a self, voucher: &'a SignedVoucher) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.take_voucher(voucher))
    }

    fn info(&self) -> polylink_protocol::GatewayInfo {
        polylink_protocol::GatewayInfo {
            chain_id: Some(self.chain_id.clone()),
            account: Some(self.gateway.public_key()),
            models: self.models.iter().map(|(name, id)| (name.clone(), *id)).collect(),
        }
    }

    fn open<'a>(&'a self, account: &'a Account, opening: Opening<'a>) -> BoxFuture<'a, Result<Ticket>> {
        Box::pin(self.open_task(account, opening))
    }

    fn close<'a>(&'a self, ticket: &'a Ticket, usage: UsageReport) -> BoxFuture<'a, Result<Charge>> {
        Box::pin(self.close_task(ticket, usage))
    }
}
