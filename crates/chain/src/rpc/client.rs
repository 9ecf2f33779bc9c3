//! The typed client of the node's RPC: one method per endpoint, each returning the wire type the
//! server renders; a refusal comes back as [`Error::Refused`] with its code.
use super::{
    AccountView, BlockView, FinalizedBlock, GatewayEntry, ModelEntry, ParamsView, Refusal, Status,
    SubmitRequest, SubmitResponse, ValidatorEntry, WorkerEntry,
};
use crate::Error;
use futures::{StreamExt, stream::BoxStream};
use polylink_ledger::{Model, Task};
use polylink_types::{ModelId, PublicKey, SignedTx, TaskId, TxId};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest server-sent event the client buffers, bytes (a block of maximum-size transactions
/// fits many times over; a peer that never ends a frame is cut off).
const EVENT_BYTES_MAX: usize = 16 << 20;

/// Talks to one node's RPC.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// How long a request keeps trying to connect to a node that is not there (restarting).
    patience: Duration,
}

/// The patience of the roles that run beside a node (see [`Client::with_patience`]): a node
/// restarts in a second or two.
pub const RESTART_PATIENCE: Duration = Duration::from_secs(15);

/// Pause between two tries to connect.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);

impl Client {
    /// A client of the node at `url` (e.g. `http://127.0.0.1:8645`).
    pub fn new(url: &str) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // Idle links are dropped well before the servers' own idle limit (10 s), so a
            // request never goes out on a link the server is closing.
            .pool_idle_timeout(crate::http::CLIENT_IDLE_MAX)
            .build()
            .map_err(|e| Error::Rpc(e.to_string()))?;
        Ok(Self { base: url.trim_end_matches('/').to_string(), http, patience: Duration::ZERO })
    }

    /// This client, trying for up to `patience` to connect to a node that refuses connections
    /// (one that is restarting) before a request fails. Only a connection never made is tried
    /// again, so a request is never sent twice. The roles that run beside a node (gateway,
    /// validator) wait out its restart this way; the CLI fails at once.
    pub fn with_patience(self, patience: Duration) -> Self {
        Self { patience, ..self }
    }

    /// Sends the request `build` makes, again while the node cannot be connected to and the
    /// patience lasts.
    async fn send(
        &self,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let deadline = tokio::time::Instant::now() + self.patience;
        loop {
            match build().timeout(REQUEST_TIMEOUT).send().await {
                Ok(response) => return Ok(response),
                Err(e) if e.is_connect() && tokio::time::Instant::now() + RECONNECT_PAUSE < deadline => {
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
                Err(e) => return Err(Error::Rpc(format!("{what}: {e}"))),
            }
        }
    }

    /// The node's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    async fn decode<T: DeserializeOwned>(what: &str, response: reqwest::Response) -> Result<T, Error> {
        let status = response.status();
        if status.is_success() {
            return response.json().await.map_err(|e| Error::Rpc(format!("{what}: bad answer: {e}")));
        }
        match response.json::<Refusal>().await {
            Ok(refusal) => Err(Error::Refused(refusal)),
            Err(_) => Err(Error::Rpc(format!("{what}: {status}"))),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let what = format!("GET {path}");
        let url = format!("{}{path}", self.base);
        let response = self.send(&what, || self.http.get(&url)).await?;
        Self::decode(&what, response).await
    }

    /// Asks a dev chain's faucet for funds for `account` (once per account); returns the id of
    /// its transfer. A chain without a faucet refuses with `ErrorCode::NotFound`.
    pub async fn faucet(&self, account: &PublicKey) -> Result<TxId, Error> {
        let url = format!("{}/faucet", self.base);
        let request = super::FaucetRequest { account: *account };
        let response = self.send("POST /faucet", || self.http.post(&url).json(&request)).await?;
        let answer: SubmitResponse = Self::decode("POST /faucet", response).await?;
        Ok(answer.id)
    }

    /// Submits a signed transaction; a refusal carries the node's code and reason.
    pub async fn submit(&self, tx: &SignedTx) -> Result<TxId, Error> {
        let url = format!("{}/tx", self.base);
        let request = SubmitRequest { tx: hex::encode(tx.to_bytes()) };
        let response = self.send("POST /tx", || self.http.post(&url).json(&request)).await?;
        let answer: SubmitResponse = Self::decode("POST /tx", response).await?;
        Ok(answer.id)
    }

    /// Chain id, height, state root and mempool size.
    pub async fn status(&self) -> Result<Status, Error> {
        self.get("/status").await
    }

    /// An account's balance, nonce, pending transactions, stake and roles.
    pub async fn account(&self, key: &PublicKey) -> Result<AccountView, Error> {
        self.get(&format!("/account/{key}")).await
    }

    /// Every registered model.
    pub async fn models(&self) -> Result<Vec<ModelEntry>, Error> {
        self.get("/models").await
    }

    /// One model (refused with [`ErrorCode::NotFound`](super::ErrorCode::NotFound) if unknown).
    pub async fn model(&self, id: ModelId) -> Result<Model, Error> {
        self.get(&format!("/model/{id}")).await
    }

    /// Every registered worker.
    pub async fn workers(&self) -> Result<Vec<WorkerEntry>, Error> {
        self.get("/workers").await
    }

    /// Every registered gateway with its stake.
    pub async fn gateways(&self) -> Result<Vec<GatewayEntry>, Error> {
        self.get("/gateways").await
    }

    /// Every registered score validator.
    pub async fn validators(&self) -> Result<Vec<ValidatorEntry>, Error> {
        self.get("/validators").await
    }

    /// One task (refused with [`ErrorCode::NotFound`](super::ErrorCode::NotFound) until it is
    /// executed on chain).
    pub async fn task(&self, id: &TaskId) -> Result<Task, Error> {
        self.get(&format!("/task/{id}")).await
    }

    /// The ledger's parameters and totals.
    pub async fn params(&self) -> Result<ParamsView, Error> {
        self.get("/params").await
    }

    /// A finalized block by height.
    pub async fn block(&self, height: u64) -> Result<BlockView, Error> {
        self.get(&format!("/block/{height}")).await
    }

    /// Polls until the node has executed `height`, or fails after `timeout`.
    pub async fn wait_for_height(&self, height: u64, timeout: Duration) -> Result<Status, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(status) = self.status().await
                && status.height >= height
            {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Rpc(format!("height {height} not reached in {timeout:?}")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server-sent stream of executed finalized blocks, from the next one on. It ends when
    /// the connection does, or at a frame that does not decode or exceeds the size limit.
    pub async fn events(&self) -> Result<BoxStream<'static, FinalizedBlock>, Error> {
        self.events_from(None).await
    }

    /// The same stream starting at height `from` when given: the blocks the node still keeps
    /// from there on (its last [`crate::RECENT_BLOCKS`] since it started) come first,
    /// so a subscriber that reconnects reads what it missed.
    pub async fn events_from(&self, from: Option<u64>) -> Result<BoxStream<'static, FinalizedBlock>, Error> {
        let query = from.map(|h| format!("?from={h}")).unwrap_or_default();
        let response = self
            .http
            .get(format!("{}/events{query}", self.base))
            .send()
            .await
            .map_err(|e| Error::Rpc(format!("GET /events: {e}")))?;
        if !response.status().is_success() {
            return Err(Error::Rpc(format!("GET /events: {}", response.status())));
        }
        let bytes = response.bytes_stream();
        Ok(futures::stream::unfold((bytes, String::new()), |(mut bytes, mut pending)| async move {
            loop {
                if let Some(end) = pending.find("\n\n") {
                    let frame: String = pending.drain(..end + 2).collect();
                    let data: String = frame
                        .lines()
                        .filter_map(|line| line.strip_prefix("data:"))
                        .map(str::trim_start)
                        .collect();
                    // Keep-alive comments carry no data.
                    if data.is_empty() {
                        continue;
                    }
                    let block = serde_json::from_str(&data).ok()?;
                    return Some((block, (bytes, pending)));
                }
                if pending.len() > EVENT_BYTES_MAX {
                    return None;
                }
                let chunk = bytes.next().await?.ok()?;
                pending.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .boxed())
    }
}
