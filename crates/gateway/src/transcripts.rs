//! Transcripts for the validators that score a task: what the gateway kept of each billed
//! request, and who may read it.
//!
//! After a task's result is reported on chain, the gateway keeps its `Transcript` in a bounded
//! [`TranscriptStore`]. A fetch (see `transcript_route`) is answered only when its
//! [`TranscriptRequest`] is signed by a validator's ed25519 key: a bad signature, a timestamp
//! more than [`SKEW_MS_MAX`] away or a replayed signature is 401; a key that is not on the task's
//! committee (asked of the chain RPC) is 403; a task the chain or the store does not know is 404.

use crate::error::GatewayError;
use crate::transcript_store::{StoreConfig, TranscriptStore};
use axum::http::StatusCode;
use polylink_chain::rpc::{Client, ErrorCode};
use polylink_protocol::{SKEW_MS_MAX, Transcript, TranscriptRequest, now_ms};
use polylink_types::{PublicKey, TaskId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tracing::{info, warn};

/// Most remembered signatures (replay window); past it new requests are refused until old ones expire.
const SEEN_MAX: usize = 100_000;

/// The store plus what serving it needs: the chain (committees) and the replay window.
pub struct Transcripts {
    store: Mutex<TranscriptStore>,
    chain: Client,
    chain_id: String,
    seen: Mutex<HashMap<[u8; 64], u64>>,
}

impl Transcripts {
    /// Opens the store and connects to the chain node at `rpc_url` (for its id and committees).
    pub async fn connect(rpc_url: &str, cfg: StoreConfig) -> crate::Result<Self> {
        let setup = |what: &str, e: &dyn std::fmt::Display| GatewayError::Setup(format!("{what}: {e}"));
        let chain = Client::new(rpc_url).map_err(|e| setup("chain client", &e))?;
        let status = chain.status().await.map_err(|e| setup(&format!("chain at {rpc_url}"), &e))?;
        let store = TranscriptStore::open(cfg).map_err(|e| setup("transcript directory", &e))?;
        Ok(Self {
            store: Mutex::new(store),
            chain,
            chain_id: status.chain_id,
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// Keeps a transcript (called once the task's result is reported).
    pub fn record(&self, t: Transcript) {
        let task = t.task;
        let Ok(mut store) = self.store.lock() else { return };
        match store.insert(t) {
            Ok(()) => info!(%task, "transcript kept"),
            Err(e) => warn!(%task, error = %e, "transcript kept in memory only"),
        }
    }

    /// The transcript of `task`, if kept.
    pub fn get(&self, task: &TaskId) -> Option<Arc<Transcript>> {
        self.store.lock().ok()?.get(task)
    }

    /// Checks the request's signature, freshness and novelty; returns the signer.
    pub(crate) fn authenticate(
        &self,
        request: &TranscriptRequest,
        task: &TaskId,
    ) -> Result<PublicKey, Refusal> {
        let (key, timestamp_ms) = (request.key, request.timestamp_ms);
        let now = now_ms();
        if now.abs_diff(timestamp_ms) > SKEW_MS_MAX {
            return Err(Refusal::unauthorized(format!(
                "timestamp {timestamp_ms} is more than {SKEW_MS_MAX} ms from the gateway's clock {now}"
            )));
        }
        if !request.verifies(&self.chain_id, task) {
            return Err(Refusal::unauthorized(format!("bad signature by {key} for chain {}", self.chain_id)));
        }
        let mut seen = self.seen.lock().map_err(|_| Refusal::unavailable("replay window poisoned".into()))?;
        seen.retain(|_, expires| *expires > now);
        if seen.len() >= SEEN_MAX {
            return Err(Refusal::unavailable(format!("{SEEN_MAX} fetches in the last minute; retry later")));
        }
        if seen.insert(request.signature.0, timestamp_ms.saturating_add(SKEW_MS_MAX)).is_some() {
            return Err(Refusal::unauthorized("replayed request (signature already used)".into()));
        }
        Ok(key)
    }

    /// Whether `key` sits on `task`'s committee, as the chain says.
    pub(crate) async fn authorize(&self, key: &PublicKey, task: &TaskId) -> Result<(), Refusal> {
        let record = self.chain.task(task).await.map_err(|e| match e.code() {
            Some(ErrorCode::NotFound) => Refusal::not_found(format!("unknown task {task}")),
            _ => Refusal::unavailable(format!("chain unavailable: {e}")),
        })?;
        let member = record.committee.iter().any(|m| &m.validator == key);
        if member {
            Ok(())
        } else {
            Err(Refusal::forbidden(format!("{key} is not on the committee of task {task}")))
        }
    }
}

/// Why a fetch was refused.
#[derive(Debug)]
pub struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl Refusal {
    pub(crate) fn unauthorized(message: String) -> Self {
        Self { status: StatusCode::UNAUTHORIZED, code: "bad_signature", message }
    }
    fn forbidden(message: String) -> Self {
        Self { status: StatusCode::FORBIDDEN, code: "not_on_committee", message }
    }
    pub(crate) fn not_found(message: String) -> Self {
        Self { status: StatusCode::NOT_FOUND, code: "unknown_task", message }
    }
    fn unavailable(message: String) -> Self {
        Self { status: StatusCode::SERVICE_UNAVAILABLE, code: "unavailable", message }
    }
}
