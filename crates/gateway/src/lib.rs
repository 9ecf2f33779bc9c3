//! `polylink-gateway`: PolyLink's OpenAI-compatible HTTP API.
//!
//! It serves `GET /v1/models`, `POST /v1/chat/completions` and `POST /v1/completions` (JSON or
//! server-sent events), `GET /metrics` (Prometheus text) and `GET /health`, so clients such as
//! the official `openai` SDKs work unchanged with their `base_url` pointed at it.
//!
//! Key types:
//! - [`InferenceBackend`]: the one thing the gateway needs from inference — tokenize a prompt,
//!   start a generation, get a [`TokenStream`] back; dropping the stream cancels the generation.
//!   [`LocalBackend`] runs a whole GGUF model on a dedicated engine thread with one KV cache per
//!   session; the cross-device pipeline head implements the same trait.
//! - [`Billing`]: the task lifecycle on chain — open a task with escrow before inference
//!   ([`Ticket`]), report the result with output hash and token counts after it ([`Charge`]).
//!   [`ChainBilling`] does it through the chain node's RPC client.
//! - [`ApiKeys`]: API keys, each bound to an on-chain account key the gateway signs for.
//! - [`Limits`]: body bytes, prompt tokens, `max_tokens`, concurrent requests per key, timeouts.
//! - [`GatewayError`]: every failure, rendered in OpenAI's error shape with the right status.
//!
//! Data flow of one request: auth (key → account) → body read under a byte limit → JSON checked
//! field by field ([`validate`]) → prompt rendered with the model's chat template and tokenized →
//! [`Billing::open`] (escrow `prompt + max_tokens` tokens) → [`InferenceBackend::generate`] →
//! token deltas pass through the stop-sequence filter ([`stop`]) to the client, as one JSON
//! answer or as SSE chunks → [`Billing::close`] with the tokens actually delivered (a client that
//! disconnects mid-stream stops the generation and pays only for what reached it).

pub mod backend;
pub mod billing;
pub mod chain;
pub mod error;
pub mod handler;
pub mod keys;
pub mod local;
pub mod metrics;
pub mod pipeline;
pub mod respond;
pub mod server;
pub mod stop;
pub mod transcripts;
pub mod validate;
pub mod wire;

pub use backend::{
    FinishReason, GenerationParams, InferenceBackend, ModelCard, Placement, Prompt, TokenEvent, TokenStream,
};
pub use billing::{Billing, Charge, Ticket, UsageReport};
pub use chain::ChainBilling;
pub use error::{GatewayError, Result};
pub use keys::{Account, ApiKeys};
pub use local::{LocalBackend, LocalOptions};
pub use pipeline::{Deployment, PipelineBackend};
pub use server::{Gateway, Limits};
pub use transcripts::{StoreConfig, Transcript, TranscriptStore, Transcripts};
