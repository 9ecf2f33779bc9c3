//! OpenAI's response shapes: completions, chat completions, their streamed chunks, model lists.

use polylink_protocol::{FinishReason, ModelCard};
use serde::Serialize;
use serde_json::{Value, json};

/// Which OpenAI endpoint a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completion,
}

impl Endpoint {
    /// The route path (also the metrics label).
    pub(crate) fn path(self) -> &'static str {
        match self {
            Self::Chat => "/v1/chat/completions",
            Self::Completion => "/v1/completions",
        }
    }
}

/// Token counts, in every response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Completion tokens delivered.
    pub completion_tokens: u32,
    /// Their sum.
    pub total_tokens: u32,
}

impl Usage {
    /// Usage of `prompt_tokens` in and `completion_tokens` out.
    pub(crate) fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        }
    }
}

/// What every object of one response shares.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// `chatcmpl-…` / `cmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model id.
    pub model: String,
}

impl Head {
    /// A head for a new response; the id is unique per request.
    pub(crate) fn new(endpoint: Endpoint, model: &str, request_seq: u64) -> Self {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let prefix = match endpoint {
            Endpoint::Chat => "chatcmpl",
            Endpoint::Completion => "cmpl",
        };
        let id = format!("{prefix}-{:x}{:06x}", now.as_micros(), request_seq & 0xff_ffff);
        Self { endpoint, id, created: now.as_secs(), model: model.to_string() }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completion, _) => "text_completion",
        }
    }

    /// The whole (non-streamed) answer.
    pub(crate) fn full(&self, text: &str, finish: FinishReason, usage: Usage) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": finish.as_str(),
            }),
            Endpoint::Completion => json!({
                "index": 0, "text": text, "logprobs": null, "finish_reason": finish.as_str(),
            }),
        };
        json!({
            "id": self.id, "object": self.object(false), "created": self.created, "model": self.model,
            "choices": [choice], "usage": usage,
        })
    }

    /// One streamed chunk: the first carries the role, the last the finish reason.
    pub(crate) fn chunk(&self, text: Option<&str>, first: bool, finish: Option<FinishReason>) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => {
                let mut delta = serde_json::Map::new();
                if first {
                    delta.insert("role".into(), json!("assistant"));
                }
                if let Some(t) = text {
                    delta.insert("content".into(), json!(t));
                }
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish.map(FinishReason::as_str)})
            }
            Endpoint::Completion => json!({
                "index": 0, "text": text.unwrap_or(""), "logprobs": null,
                "finish_reason": finish.map(FinishReason::as_str),
            }),
        };
        json!({
            "id": self.id, "object": self.object(true), "created": self.created, "model": self.model,
            "choices": [choice],
        })
    }

    /// The usage chunk sent last when `stream_options.include_usage` is set (no choices).
    pub(crate) fn usage_chunk(&self, usage: Usage) -> Value {
        json!({
            "id": self.id, "object": self.object(true), "created": self.created, "model": self.model,
            "choices": [], "usage": usage,
        })
    }
}

/// `GET /v1/models`.
pub(crate) fn model_list(models: &[ModelCard], created: u64) -> Value {
    let data: Vec<Value> = models
        .iter()
        .map(|m| json!({"id": m.id, "object": "model", "created": created, "owned_by": m.owned_by}))
        .collect();
    json!({"object": "list", "data": data})
}
