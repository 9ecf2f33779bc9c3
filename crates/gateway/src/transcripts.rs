//! Transcripts for the validators that score a task: what the gateway kept of each billed
//! request, and who may read it.
//!
//! After a task's result is reported on chain, the gateway keeps its `Transcript` in a bounded
//! [`TranscriptStore`]. A fetch (see `transcript_route`) is answered only when its
//! [`TranscriptRequest`] is signed by a validator's ed25519 key: a bad signature, a timestamp
//! more than [`SKEW_MS_MAX`] away or a replayed signature is 401; a key that is not on the task's
//! committee (asked of the chain RPC) is 403; a task the chain or the store does not know is 404.
//!
//! The replay window remembers a signature only once its key has proved to sit on the task's
//! committee, and holds at most [`SEEN_PER_KEY_MAX`] per key: no one can fill it for others.
//!
//! A transcript is kept only while a committee may still need it: [`Transcripts::sweep`] deletes
//! those of tasks the chain has closed (settled or reclaimed) or does not know.

use crate::error::GatewayError;
use crate::transcript_store::{StoreConfig, TranscriptStore};
use axum::http::StatusCode;
use polylink_chain::rpc::{Client, ErrorCode, RESTART_PATIENCE};
use polylink_protocol::{SKEW_MS_MAX, Transcript, TranscriptRequest, now_ms};
use polylink_types::{PublicKey, TaskId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tracing::{info, warn};

/// Most remembered signatures of one committee member (the replay window holds a signature until
/// its timestamp is out of the skew): past it, that key's fetches wait for old ones to expire.
/// An honest validator retries a missing transcript four times a second, so a minute of retries
/// on a dozen seats at once fits.
pub const SEEN_PER_KEY_MAX: usize = 4096;

/// Signatures seen, by signer: each with the time it leaves the window.
struct Seen {
    per_key_max: usize,
    by_key: HashMap<PublicKey, HashMap<[u8; 64], u64>>,
}

impl Seen {
    /// Remembers `signature` of `key` until `expires`; `Err` if replayed or the key is at its cap.
    fn remember(
        &mut self,
        key: PublicKey,
        signature: [u8; 64],
        expires: u64,
        now: u64,
    ) -> Result<(), Refusal> {
        self.by_key.retain(|_, sigs| {
            sigs.retain(|_, until| *until > now);
            !sigs.is_empty()
        });
        let sigs = self.by_key.entry(key).or_default();
        if sigs.contains_key(&signature) {
            return Err(Refusal::unauthorized("replayed request (signature already used)".into()));
        }
        if sigs.len() >= self.per_key_max {
            return Err(Refusal::unavailable(format!(
                "{key} made {} fetches within {SKEW_MS_MAX} ms; retry later",
                self.per_key_max
            )));
        }
        sigs.insert(signature, expires);
        Ok(())
    }
}

/// Most tasks one sweep asks the chain about.
const SWEEP_BATCH: usize = 256;

/// The store plus what serving it needs: the chain (committees) and the replay window.
pub struct Transcripts {
    store: Mutex<TranscriptStore>,
    chain: Client,
    chain_id: String,
    seen: Mutex<Seen>,
    sweep_every: std::time::Duration,
    keep_closed_for: std::time::Duration,
    /// When a sweep first found each held task closed.
    closed_since: Mutex<HashMap<TaskId, std::time::Instant>>,
}

impl Transcripts {
    /// Opens the store and connects to the chain node at `rpc_url` (for its id and committees).
    pub async fn connect(rpc_url: &str, cfg: StoreConfig) -> crate::Result<Self> {
        let setup = |what: &str, e: &dyn std::fmt::Display| GatewayError::Setup(format!("{what}: {e}"));
        let chain =
            Client::new(rpc_url).map_err(|e| setup("chain client", &e))?.with_patience(RESTART_PATIENCE);
        let status = chain.status().await.map_err(|e| setup(&format!("chain at {rpc_url}"), &e))?;
        let seen = Seen { per_key_max: cfg.fetches_per_key_max, by_key: HashMap::new() };
        let (sweep_every, keep_closed_for) = (cfg.sweep_every, cfg.keep_closed_for);
        let store = TranscriptStore::open(cfg).map_err(|e| setup("transcript directory", &e))?;
        Ok(Self {
            store: Mutex::new(store),
            chain,
            chain_id: status.chain_id,
            seen: Mutex::new(seen),
            sweep_every,
            keep_closed_for,
            closed_since: Mutex::new(HashMap::new()),
        })
    }

    /// Deletes the transcripts (of the [`SWEEP_BATCH`] oldest) of tasks the chain has closed
    /// (settled or reclaimed) or does not know, once they have been found so for
    /// `StoreConfig::keep_closed_for`; returns how many. A task the chain cannot be asked about
    /// keeps its transcript.
    pub async fn sweep(&self) -> usize {
        let Some(held) = self.store.lock().ok().map(|s| s.oldest(SWEEP_BATCH)) else { return 0 };
        let now = std::time::Instant::now();
        // A task once among the oldest stays so until it leaves the store: forget the others.
        if let Ok(mut since) = self.closed_since.lock() {
            since.retain(|t, _| held.contains(t));
        }
        let mut deleted = 0;
        for task in held {
            let closed = match self.chain.task(&task).await {
                Ok(record) => matches!(
                    record.status,
                    polylink_ledger::TaskStatus::Settled(_) | polylink_ledger::TaskStatus::Reclaimed
                ),
                Err(e) => e.code() == Some(ErrorCode::NotFound),
            };
            let Ok(mut since) = self.closed_since.lock() else { return deleted };
            if !closed {
                since.remove(&task);
                continue;
            }
            let first_seen = *since.entry(task).or_insert(now);
            if now.duration_since(first_seen) >= self.keep_closed_for
                && self.store.lock().is_ok_and(|mut s| s.remove(&task))
            {
                since.remove(&task);
                deleted += 1;
            }
        }
        if deleted > 0 {
            info!(deleted, "transcripts of closed tasks deleted");
        }
        deleted
    }

    /// Sweeps every `StoreConfig::sweep_every` for as long as the transcripts are in use.
    pub(crate) fn keep_swept(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let every = self.sweep_every;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(transcripts) = weak.upgrade() else { return };
                transcripts.sweep().await;
            }
        });
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

    /// Serves `task`'s transcript to the signer of `request`: a fresh, valid signature by a member
    /// of the task's committee, not seen before. Returns the signer and the transcript.
    pub(crate) async fn fetch(
        &self,
        request: &TranscriptRequest,
        task: &TaskId,
    ) -> Result<(PublicKey, Arc<Transcript>), Refusal> {
        let key = self.authenticate(request, task)?;
        self.authorize(&key, task).await?;
        // Only now, from a committee member, does the signature take a place in the window.
        let expires = request.timestamp_ms.saturating_add(SKEW_MS_MAX);
        self.seen.lock().map_err(|_| Refusal::unavailable("replay window poisoned".into()))?.remember(
            key,
            request.signature.0,
            expires,
            now_ms(),
        )?;
        let transcript =
            self.get(task).ok_or_else(|| Refusal::not_found(format!("no transcript of task {task}")))?;
        Ok((key, transcript))
    }

    /// Checks the request's signature and freshness; returns the signer.
    fn authenticate(&self, request: &TranscriptRequest, task: &TaskId) -> Result<PublicKey, Refusal> {
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
        Ok(key)
    }

    /// Whether `key` sits on `task`'s committee, as the chain says.
    async fn authorize(&self, key: &PublicKey, task: &TaskId) -> Result<(), Refusal> {
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
pub(crate) struct Refusal {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_window_and_replays_are_refused() {
        let mut seen = Seen { per_key_max: 2, by_key: HashMap::new() };
        let key = |label: &str| polylink_types::SecretKey::from_label(label).public_key();
        let (a, b) = (key("a"), key("b"));
        assert!(seen.remember(a, [1; 64], 100, 0).is_ok());
        assert_eq!(seen.remember(a, [1; 64], 100, 0).unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert!(seen.remember(a, [2; 64], 100, 0).is_ok());
        let full = seen.remember(a, [3; 64], 100, 0).unwrap_err();
        assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE, "a is at its cap");
        assert!(seen.remember(b, [3; 64], 100, 0).is_ok(), "b is not held back by a");
        assert!(seen.remember(a, [3; 64], 200, 100).is_ok(), "a's old signatures expired");
    }
}
