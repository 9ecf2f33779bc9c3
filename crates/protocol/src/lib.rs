//! `polylink-protocol`: the typed seams between PolyLink's roles, kept light (no HTTP server, no
//! model code) so every side of a seam can depend on it.
//!
//! Key types:
//! - The inference port: [`InferenceBackend`] is what a front end (the gateway) needs from
//!   whatever runs a model — tokenize a [`Prompt`], pick a [`Placement`], start a generation and
//!   read its [`TokenStream`] of [`TokenEvent`]s; dropping the stream cancels the generation.
//!   Backends (a whole model on this machine, a pipeline head over remote stages) implement it
//!   where they run; chat rendering of a [`Prompt`] lives with the model code in `polylink-infer`.
//! - The hash rules that go on chain: [`prompt_hash`] over the prompt token ids and
//!   [`output_hash`] over the delivered text, which validators re-derive.
//! - The transcript record: the [`Transcript`] a gateway keeps of each billed request (its
//!   prompt as a [`PromptRecord`]) and the signed [`TranscriptRequest`] a committee member sends
//!   to fetch it.
//! - The ready lines: the [`WorkerReady`], [`ValidatorReady`] and [`GatewayReady`] JSON line a child process prints
//!   once it serves, which `polylink up` reads back.
//!
//! Data flow: a gateway validates a request into a [`Prompt`] and [`GenerationParams`], a backend
//! turns it into token ids and tokens, the gateway hashes prompt ids and output onto the chain
//! and keeps a [`Transcript`]; a validator fetches it with a [`TranscriptRequest`], re-hashes
//! and re-renders it, and scores it.
#![warn(missing_docs, unreachable_pub)]

mod backend;
mod error;
mod hash;
mod probe;
mod prompt;
mod ready;
mod transcript;
mod transcript_request;

pub use backend::{
    Closed, FinishReason, GenerationParams, InferenceBackend, ModelCard, Placement, ReceiptSender, Receipts,
    TokenEvent, TokenSender, TokenStream,
};
pub use error::{ProtocolError, Result};
pub use hash::{output_hash, prompt_hash};
pub use probe::{
    GatewayInfo, INFO_PATH, PROBE_PATH, PROBE_TTL_MAX_MS, PROBE_UNREACHABLE, ProbeAnswer, ProbeRequest,
};
pub use prompt::{ChatMessage, Prompt, Role};
pub use ready::{GatewayReady, LinkMeasure, LinkSummary, PeerReport, ValidatorReady, WorkerReady};
pub use transcript::{Ending, PromptRecord, Transcript};
pub use transcript_request::{
    HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, SKEW_MS_MAX, TRANSCRIPTS_PATH, TranscriptRequest, now_ms,
    request_message,
};
