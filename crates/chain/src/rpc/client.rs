//! A small typed client of the node's RPC, used by the CLI wallet and other roles.
use super::{BlockView, ErrorBody, Status, SubmitRequest, SubmitResponse};
use crate::Error;
use futures::{StreamExt, stream::BoxStream};
use polylink_types::{Hash32, PublicKey, SignedTx};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Talks to one node's RPC.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the node at `url` (e.g. `http://127.0.0.1:8645`).
    pub fn new(url: &str) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| Error::Rpc(e.to_string()))?;
        Ok(Self { base: url.trim_end_matches('/').to_string(), http })
    }

    async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, Error> {
        let status = response.status();
        if status.is_success() {
            return response.json().await.map_err(|e| Error::Rpc(e.to_string()));
        }
        let reason = match response.json::<ErrorBody>().await {
            Ok(body) => body.error,
            Err(_) => status.to_string(),
        };
        Err(Error::Rpc(format!("{status}: {reason}")))
    }

    /// GETs `path` and decodes the JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| Error::Rpc(format!("GET {path}: {e}")))?;
        Self::decode(response).await
    }

    /// Submits a signed transaction; the error carries the node's reason for a refusal.
    pub async fn submit(&self, tx: &SignedTx) -> Result<Hash32, Error> {
        let response = self
            .http
            .post(format!("{}/tx", self.base))
            .json(&SubmitRequest { tx: hex::encode(tx.to_bytes()) })
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| Error::Rpc(format!("POST /tx: {e}")))?;
        let answer: SubmitResponse = Self::decode(response).await?;
        answer.id.parse().map_err(|e| Error::Rpc(format!("bad tx id {}: {e}", answer.id)))
    }

    /// Chain id, height, state root and mempool size.
    pub async fn status(&self) -> Result<Status, Error> {
        self.get("/status").await
    }

    /// An account's balance, nonce and stakes (the ledger's JSON).
    pub async fn account(&self, key: &PublicKey) -> Result<serde_json::Value, Error> {
        self.get(&format!("/account/{key}")).await
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

    /// The server-sent stream of executed finalized blocks, one JSON value per block.
    pub async fn events(&self) -> Result<BoxStream<'static, serde_json::Value>, Error> {
        let response = self
            .http
            .get(format!("{}/events", self.base))
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
                    if let Ok(value) = serde_json::from_str(&data) {
                        return Some((value, (bytes, pending)));
                    }
                    continue;
                }
                let chunk = bytes.next().await?.ok()?;
                pending.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .boxed())
    }
}
