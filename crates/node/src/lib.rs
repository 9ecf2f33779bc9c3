//! PolyLink roles, wired from the library crates: today the worker that serves a model, whole or
//! as a layer range, as a pipeline stage.
//!
//! [`worker::run`] loads a [`polylink_infer::Shard`], starts its engine thread, listens on an
//! address and serves authenticated heads with [`polylink_pipeline::server::serve`].
//! [`profile::measure`] times the loaded layers so the planner and the chain registry get the
//! device's real per-layer speed and memory, and [`peers::measure_all`] measures the links to the
//! other workers the chain lists ([`registry::peers`]) over authenticated echoes, so a worker
//! registers its real latency, bandwidth and endpoint; [`registry::plan_inputs`] turns the chain's
//! registry back into the planner's devices and links, and [`discovery::follow`] keeps a gateway's
//! deployments in step with the registered workers that answer. [`launch::StageProcess`] starts `polylink stage`
//! processes and reads where they listen; [`netem::EmulatedLan`] puts them behind emulated links.
#![warn(missing_docs, unreachable_pub)]

pub mod discovery;
pub mod gateway;
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
    /// Loading or running the model failed.
    #[error("model: {0}")]
    Model(#[from] polylink_infer::InferError),
    /// A pipeline link, stage or head failed.
    #[error("pipeline: {0}")]
    Pipeline(#[from] polylink_pipeline::PipelineError),
    /// No layer split could be planned.
    #[error("plan: {0}")]
    Plan(#[from] polylink_pipeline::plan::PlanError),
    /// A layer range did not parse or fit.
    #[error("bad layer range {range}: {reason}")]
    Layers {
        /// The range as given.
        range: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
    /// The chain refused or could not be reached.
    #[error("chain: {0}")]
    Chain(String),
    /// A child process failed to start or announce itself.
    #[error("{name}: {reason}")]
    Child {
        /// The child's name.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// A peer's link could not be measured.
    #[error("measuring peer {peer}: {reason}")]
    Probe {
        /// The peer and its endpoint.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The chain's worker registry could not be read.
    #[error("chain registry: {0}")]
    Registry(String),
}
