//! PolyLink roles, wired from the library crates: today the worker that serves a model, whole or
//! as a layer range, as a pipeline stage.
//!
//! [`worker::run`] loads a [`polylink_infer::Shard`], starts its engine thread, listens on an
//! address and serves authenticated heads with [`polylink_pipeline::server::serve`].
//! [`profile::measure`] times the loaded layers so the planner and the chain registry get the
//! device's real per-layer speed and memory, and [`peers::measure_all`] measures the links to the
//! other workers the chain lists ([`registry::peers`]) over authenticated echoes, so a worker
//! registers its real latency, bandwidth and endpoint; [`registry::plan_inputs`] turns the chain's
//! registry back into the planner's devices and links. [`launch::StageProcess`] starts `polylink stage`
//! processes and reads where they listen; [`netem::EmulatedLan`] puts them behind emulated links.

pub mod launch;
pub mod netem;
pub mod onchain;
pub mod peers;
pub mod platform;
pub mod profile;
pub mod registry;
pub mod split;
pub mod supervise;
pub mod up;
pub mod worker;

/// Everything a role can fail with.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("model: {0}")]
    Model(#[from] polylink_infer::InferError),
    #[error("pipeline: {0}")]
    Pipeline(#[from] polylink_pipeline::PipelineError),
    #[error("plan: {0}")]
    Plan(#[from] polylink_pipeline::plan::PlanError),
    #[error("bad layer range {range}: {reason}")]
    Layers { range: String, reason: String },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: std::net::SocketAddr, reason: String },
    #[error("chain: {0}")]
    Chain(String),
    #[error("{name}: {reason}")]
    Child { name: String, reason: String },
    #[error("measuring peer {peer}: {reason}")]
    Probe { peer: String, reason: String },
    #[error("chain registry: {0}")]
    Registry(String),
}
