//! `polylink-gateway`: PolyLink's OpenAI-compatible HTTP port.
//!
//! It serves `GET /v1/models`, `POST /v1/chat/completions` and `POST /v1/completions` (JSON or
//! server-sent events), `GET /metrics` (Prometheus text), `GET /health` and the validators'
//! transcript route, so clients such as the official `openai` SDKs work unchanged with their
//! `base_url` pointed at it. It runs no model: it serves through a
//! [`polylink_protocol::InferenceBackend`] it is given (the binary wires in the whole-model or
//! the pipeline-head backend from `polylink-pipeline`).
//!
//! Key types:
//! - [`Gateway`]: the state every route shares (backend, billing, keys, limits, metrics,
//!   transcripts); [`Gateway::router`] and [`Gateway::serve`] put it on a socket.
//! - [`Billing`]: the task lifecycle on chain — open a task with escrow before inference
//!   ([`Ticket`]), report the result with output hash and token counts after it ([`Charge`]).
//!   [`ChainBilling`] does it through the chain node's RPC client.
//! - [`ApiKeys`]: API keys: on-chain keys (`pl-…`, checked against the account's allowance for
//!   this gateway) and listed ones, each naming the paying account; the gateway holds no user key.
//! - [`Limits`]: body bytes, prompt tokens, `max_tokens`, concurrent requests per key, timeouts.
//! - [`Transcripts`]: what was kept of each billed request ([`TranscriptStore`]), served only to
//!   the task's committee.
//! - [`GatewayError`]: every failure, rendered in OpenAI's error shape with the right status.
//!
//! Data flow of one request: auth (key → account) → body read under a byte limit → JSON checked
//! field by field (`validate`) → prompt rendered with the model's chat template and tokenized by
//! the backend → [`Billing::open`] (escrow `prompt + max_tokens` tokens) → the backend generates
//! → token deltas pass through the stop-sequence filter to the client, as one JSON answer or as
//! SSE chunks → [`Billing::close`] with the tokens actually delivered (a client that disconnects
//! mid-stream stops the generation and pays only for what reached it) → the transcript is kept.
//!
//! Modules depend one way: `routes` → `handler` → `respond` → `state` → `billing`, `keys`,
//! `limits`, `metrics`, `transcripts` → `transcript_store`; nothing below imports what is above.
#![warn(missing_docs, unreachable_pub)]

mod billing;
mod chain;
mod error;
mod handler;
mod keys;
mod limits;
mod metrics;
mod respond;
mod routes;
mod state;
mod stop;
mod transcript_route;
mod transcript_store;
mod transcripts;
mod validate;
mod wire;

pub use billing::{Billing, Charge, MAX_PRICE_HEADER, Opening, Ticket, UsageReport};
pub use chain::ChainBilling;
pub use error::{GatewayError, Result};
pub use keys::{Account, ApiKeys};
pub use limits::Limits;
pub use metrics::{InFlight, Metrics};
pub use state::{EndpointProbe, Gateway, ProbeError};
pub use transcript_store::{StoreConfig, TranscriptStore};
pub use transcripts::{SEEN_PER_KEY_MAX, Transcripts};
