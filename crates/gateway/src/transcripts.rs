//! Transcripts for the validators that score a task: what the gateway kept of each billed
//! request, served only to members of that task's committee.
//!
//! After a task's result is reported on chain, the gateway keeps a [`Transcript`] (task, model,
//! prompt token ids, the prompt as sent, generation settings, finish reason and output text) in a
//! bounded [`TranscriptStore`] (memory, plus an optional directory). `GET
//! /polylink/v1/transcripts/{task_id}` answers only a request signed by a validator's ed25519 key
//! over [`request_message`] (chain id, task id, timestamp): a missing or bad signature, a timestamp
//! more than [`SKEW_MS_MAX`] away or a replayed signature is 401; a key that is not on the task's
//! committee (asked of the chain RPC) is 403; a task the chain or the store does not know is 404.

use crate::backend::{ChatMessage, GenerationParams, Prompt, Role};
use crate::server::Gateway;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use polylink_chain::rpc::{Client, ErrorCode};
use polylink_types::{PublicKey, Signature, TaskId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::{info, warn};

/// Header carrying the validator's public key (hex).
pub const HEADER_KEY: &str = "x-polylink-validator";
/// Header carrying the request time, ms since the Unix epoch.
pub const HEADER_TIMESTAMP: &str = "x-polylink-timestamp";
/// Header carrying the ed25519 signature (hex) over [`request_message`].
pub const HEADER_SIGNATURE: &str = "x-polylink-signature";
/// Largest clock difference accepted between validator and gateway, ms.
pub const SKEW_MS_MAX: u64 = 60_000;
/// Most remembered signatures (replay window); past it new requests are refused until old ones expire.
const SEEN_MAX: usize = 100_000;
/// Largest transcript file read back from the data directory, bytes.
const FILE_BYTES_MAX: u64 = 4 << 20;
const DOMAIN: &[u8] = b"polylink-transcript-v1";

/// The exact bytes a validator signs to fetch `task`'s transcript at `timestamp_ms`.
pub fn request_message(chain_id: &str, task: &TaskId, timestamp_ms: u64) -> Vec<u8> {
    let id = chain_id.as_bytes();
    let mut msg = Vec::with_capacity(DOMAIN.len() + 1 + id.len() + 32 + 8);
    msg.extend_from_slice(DOMAIN);
    msg.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    msg.extend_from_slice(id);
    msg.extend_from_slice(&task.0);
    msg.extend_from_slice(&timestamp_ms.to_be_bytes());
    msg
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

/// The prompt as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PromptRecord {
    /// `/v1/completions`: raw text.
    Text {
        /// The text.
        text: String,
    },
    /// `/v1/chat/completions`: the messages, rendered with the model's chat template.
    Chat {
        /// `(role, content)` in order; role is `system`, `user` or `assistant`.
        messages: Vec<(String, String)>,
    },
}

impl PromptRecord {
    /// The record of `prompt`.
    pub fn of(prompt: &Prompt) -> Self {
        match prompt {
            Prompt::Text(text) => Self::Text { text: text.clone() },
            Prompt::Chat(messages) => Self::Chat { messages: messages.iter().map(message).collect() },
        }
    }
}

impl PromptRecord {
    /// The prompt this record was made from; `None` if a role is unknown (a record the gateway
    /// never wrote).
    pub fn to_prompt(&self) -> Option<Prompt> {
        match self {
            Self::Text { text } => Some(Prompt::Text(text.clone())),
            Self::Chat { messages } => {
                let message = |(role, content): &(String, String)| {
                    let role = match role.as_str() {
                        "system" => Role::System,
                        "user" => Role::User,
                        "assistant" => Role::Assistant,
                        _ => return None,
                    };
                    Some(ChatMessage { role, content: content.clone() })
                };
                messages.iter().map(message).collect::<Option<Vec<_>>>().map(Prompt::Chat)
            }
        }
    }

    /// The question the text evaluators read: the last user message of a chat (the one being
    /// answered), or a completion's text.
    pub fn question(&self) -> String {
        match self {
            Self::Text { text } => text.clone(),
            Self::Chat { messages } => {
                let last_user = messages.iter().rev().find(|(role, _)| role == "user");
                last_user.or(messages.last()).map(|(_, content)| content.clone()).unwrap_or_default()
            }
        }
    }
}

fn message(m: &ChatMessage) -> (String, String) {
    let role = match m.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    (role.to_string(), m.content.clone())
}

/// What the gateway keeps of one billed request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    /// The task on chain.
    pub task: TaskId,
    /// The gateway's model id.
    pub model: String,
    /// Prompt token ids (their hash is the task's `prompt_hash`).
    pub prompt_ids: Vec<u32>,
    /// The prompt as sent.
    pub prompt: PromptRecord,
    /// Completion tokens asked for.
    pub max_tokens: u32,
    /// Sampling temperature (0 = greedy).
    pub temperature: f32,
    /// Nucleus mass.
    pub top_p: f32,
    /// `stop` or `length`, as the answer ended.
    pub finish: String,
    /// The output text delivered (its sha256 is the result's `output_hash`).
    pub output: String,
}

/// A transcript waiting for its output; made when the generation starts.
#[derive(Debug, Clone)]
pub struct Draft {
    model: String,
    prompt_ids: Vec<u32>,
    prompt: PromptRecord,
    params: GenerationParams,
}

impl Draft {
    /// The request's side of the transcript.
    pub fn new(model: &str, prompt: &Prompt, prompt_ids: &[u32], params: GenerationParams) -> Self {
        Self {
            model: model.to_string(),
            prompt_ids: prompt_ids.to_vec(),
            prompt: PromptRecord::of(prompt),
            params,
        }
    }

    /// The whole transcript once the output is known.
    pub fn finish(self, task: TaskId, output: String, finish: &str) -> Transcript {
        Transcript {
            task,
            model: self.model,
            prompt_ids: self.prompt_ids,
            prompt: self.prompt,
            max_tokens: u32::try_from(self.params.max_tokens).unwrap_or(u32::MAX),
            temperature: self.params.temperature,
            top_p: self.params.top_p,
            finish: finish.to_string(),
            output,
        }
    }
}

/// Where transcripts live and how many are kept.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Transcripts kept in memory (and on disk), newest first out of the bound last.
    pub entries_max: usize,
    /// Directory that also keeps them as `<task>.json` (survives restarts), if any.
    pub dir: Option<PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { entries_max: 10_000, dir: None }
    }
}

/// A bounded store of transcripts by task: the oldest go first.
pub struct TranscriptStore {
    cfg: StoreConfig,
    order: VecDeque<TaskId>,
    map: HashMap<TaskId, Arc<Transcript>>,
}

impl TranscriptStore {
    /// An empty store; with a directory, the transcripts already there are indexed (oldest first).
    pub fn open(cfg: StoreConfig) -> std::io::Result<Self> {
        let mut store = Self { cfg, order: VecDeque::new(), map: HashMap::new() };
        if let Some(dir) = store.cfg.dir.clone() {
            std::fs::create_dir_all(&dir)?;
            let mut found: Vec<(SystemTime, TaskId)> = Vec::new();
            for entry in std::fs::read_dir(&dir)?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(task) = name.strip_suffix(".json").and_then(|t| TaskId::from_str(t).ok()) else {
                    continue;
                };
                let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(UNIX_EPOCH);
                found.push((modified, task));
            }
            found.sort();
            store.order = found.into_iter().map(|(_, t)| t).collect();
            store.evict();
        }
        Ok(store)
    }

    fn file(&self, task: &TaskId) -> Option<PathBuf> {
        self.cfg.dir.as_ref().map(|d| d.join(format!("{task}.json")))
    }

    /// Keeps `t` (replacing an earlier one of the same task), evicting the oldest past the bound.
    pub fn insert(&mut self, t: Transcript) -> std::io::Result<()> {
        let task = t.task;
        if let Some(path) = self.file(&task) {
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec(&t).map_err(std::io::Error::other)?)?;
            std::fs::rename(&tmp, &path)?;
        }
        if self.map.insert(task, Arc::new(t)).is_none() && !self.order.contains(&task) {
            self.order.push_back(task);
        }
        self.evict();
        Ok(())
    }

    fn evict(&mut self) {
        while self.order.len() > self.cfg.entries_max.max(1) {
            let Some(old) = self.order.pop_front() else { break };
            self.map.remove(&old);
            if let Some(path) = self.file(&old) {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// The transcript of `task`, from memory or the directory.
    pub fn get(&self, task: &TaskId) -> Option<Arc<Transcript>> {
        if let Some(t) = self.map.get(task) {
            return Some(t.clone());
        }
        let path = self.file(task)?;
        if std::fs::metadata(&path).ok()?.len() > FILE_BYTES_MAX {
            return None;
        }
        let t: Transcript = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        (t.task == *task).then(|| Arc::new(t))
    }

    /// Transcripts held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

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
        let setup =
            |what: &str, e: &dyn std::fmt::Display| crate::GatewayError::Setup(format!("{what}: {e}"));
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
    fn authenticate(&self, headers: &HeaderMap, task: &TaskId) -> Result<PublicKey, Refusal> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| Refusal::unauthorized(format!("missing header {name}")))
        };
        let key = PublicKey::from_str(header(HEADER_KEY)?)
            .map_err(|e| Refusal::unauthorized(format!("{HEADER_KEY}: {e}")))?;
        let timestamp_ms: u64 = header(HEADER_TIMESTAMP)?
            .parse()
            .map_err(|e| Refusal::unauthorized(format!("{HEADER_TIMESTAMP}: {e}")))?;
        let signature = Signature::from_str(header(HEADER_SIGNATURE)?)
            .map_err(|e| Refusal::unauthorized(format!("{HEADER_SIGNATURE}: {e}")))?;
        let now = now_ms();
        if now.abs_diff(timestamp_ms) > SKEW_MS_MAX {
            return Err(Refusal::unauthorized(format!(
                "timestamp {timestamp_ms} is more than {SKEW_MS_MAX} ms from the gateway's clock {now}"
            )));
        }
        if !key.verify(&request_message(&self.chain_id, task, timestamp_ms), &signature) {
            return Err(Refusal::unauthorized(format!("bad signature by {key} for chain {}", self.chain_id)));
        }
        let mut seen = self.seen.lock().map_err(|_| Refusal::unavailable("replay window poisoned".into()))?;
        seen.retain(|_, expires| *expires > now);
        if seen.len() >= SEEN_MAX {
            return Err(Refusal::unavailable(format!("{SEEN_MAX} fetches in the last minute; retry later")));
        }
        if seen.insert(signature.0, timestamp_ms.saturating_add(SKEW_MS_MAX)).is_some() {
            return Err(Refusal::unauthorized("replayed request (signature already used)".into()));
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
pub struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn unauthorized(message: String) -> Self {
        Self { status: StatusCode::UNAUTHORIZED, code: "bad_signature", message }
    }
    fn forbidden(message: String) -> Self {
        Self { status: StatusCode::FORBIDDEN, code: "not_on_committee", message }
    }
    fn not_found(message: String) -> Self {
        Self { status: StatusCode::NOT_FOUND, code: "unknown_task", message }
    }
    fn unavailable(message: String) -> Self {
        Self { status: StatusCode::SERVICE_UNAVAILABLE, code: "unavailable", message }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({"error": {"message": self.message, "type": "transcript_error", "code": self.code}});
        (self.status, axum::Json(body)).into_response()
    }
}

/// `GET /polylink/v1/transcripts/{task_id}`.
pub async fn serve(State(gw): State<Arc<Gateway>>, Path(task): Path<String>, headers: HeaderMap) -> Response {
    const ROUTE: &str = "/polylink/v1/transcripts";
    let answer = async {
        let t = gw
            .transcripts
            .as_ref()
            .ok_or_else(|| Refusal::not_found("this gateway keeps no transcripts".into()))?;
        let task =
            TaskId::from_str(&task).map_err(|e| Refusal::not_found(format!("unknown task {task}: {e}")))?;
        let key = t.authenticate(&headers, &task)?;
        t.authorize(&key, &task).await?;
        let transcript =
            t.get(&task).ok_or_else(|| Refusal::not_found(format!("no transcript of task {task}")))?;
        info!(%task, validator = %key, "transcript served");
        Ok::<_, Refusal>(axum::Json(transcript.as_ref().clone()).into_response())
    };
    match answer.await {
        Ok(response) => {
            gw.metrics.request(ROUTE, 200);
            response
        }
        Err(refusal) => {
            warn!(status = refusal.status.as_u16(), reason = %refusal.message, "transcript refused");
            gw.metrics.request(ROUTE, refusal.status.as_u16());
            refusal.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript(i: u8) -> Transcript {
        let params = GenerationParams { max_tokens: 8, temperature: 0.0, top_p: 1.0, seed: 0 };
        Draft::new("m", &Prompt::Text(format!("p{i}")), &[1, 2, u32::from(i)], params).finish(
            TaskId::digest(&[&[i]]),
            format!("out {i}"),
            "stop",
        )
    }

    #[test]
    fn store_is_bounded_and_survives_a_restart_from_its_directory() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cfg = StoreConfig { entries_max: 2, dir: Some(dir.path().to_path_buf()) };
        let mut store = TranscriptStore::open(cfg.clone()).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..3 {
            store.insert(transcript(i)).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(store.len(), 2);
        assert!(store.get(&transcript(0).task).is_none(), "the oldest is evicted");
        let reopened = TranscriptStore::open(cfg).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reopened.len(), 2);
        assert_eq!(reopened.get(&transcript(2).task).as_deref(), Some(&transcript(2)));
    }

    #[test]
    fn message_binds_chain_task_and_time() {
        let task = TaskId::digest(&[b"t"]);
        let a = request_message("c", &task, 1);
        assert_ne!(a, request_message("d", &task, 1));
        assert_ne!(a, request_message("c", &TaskId::digest(&[b"u"]), 1));
        assert_ne!(a, request_message("c", &task, 2));
    }
}
