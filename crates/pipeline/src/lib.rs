//! Cross-device inference: which devices serve which layers, and how hidden states flow.
//!
//! [`plan`] is the partition planner (pure: profiles in, a [`plan::Plan`] out). Given the model's
//! per-layer memory and the devices' measured per-layer time, memory and links, it chooses devices
//! and contiguous layer ranges by dynamic programming over (layer, devices used, last device), in
//! the manner of EdgeShard, minimizing per-token latency or maximizing pipelined throughput under
//! memory limits. A single device is always a candidate, so a split is chosen only when it wins.
//! [`profile::model_profile`] reads a model's memory figures from its GGUF tensor directory.
//!
//! At run time a worker serves a [`polylink_infer::Shard`] with [`server::serve`]: an
//! [`engine::EngineHandle`] thread (the one multi-session engine, batching sessions' decode
//! steps) owns the shard and each session's KV cache and sampler, and answers
//! [`wire::Request`]s that arrive over authenticated, encrypted links ([`transport`]). The
//! [`head::PipelineHead`] drives sessions through the stages, keeps every input it sent, and
//! fails over to a standby stage when one dies or stalls, replaying the session there.
//!
//! The inference backends a gateway serves through ([`polylink_protocol::InferenceBackend`]) live
//! here beside the engines they drive: [`PipelineBackend`] spreads requests over
//! [`Deployment`]s, each a head over its stages, and reports who did the work; [`LocalBackend`]
//! runs a whole model on this machine with the same engine. Both drive each generation with the
//! one decode loop (`decode`).
#![warn(missing_docs, unreachable_pub)]

mod backend;
mod decode;
mod deployment;
pub mod engine;
mod error;
pub mod head;
mod local;
pub mod plan;
pub mod profile;
pub mod server;
pub mod transport;
pub mod wire;

pub use backend::{Load, PipelineBackend, choose};
pub use deployment::Deployment;
pub use error::PipelineError;
pub use local::{LocalBackend, LocalOptions};
