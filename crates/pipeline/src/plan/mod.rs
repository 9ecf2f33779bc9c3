//! The partition planner's inputs and outputs; the search itself is in [`search`].

mod error;
mod search;

pub use error::PlanError;
pub use search::plan;

use serde::{Deserialize, Serialize};
use std::ops::Range;

/// What the planner needs to know about a model, all in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelProfile {
    /// Weight bytes of each transformer layer, in order.
    pub layer_bytes: Vec<u64>,
    /// Weight bytes held only by the first stage (token embedding).
    pub embed_bytes: u64,
    /// Weight bytes held only by the last stage (final norm and LM head).
    pub head_bytes: u64,
    /// The LM head is the embedding matrix: a stage that is both first and last holds it once.
    pub head_shares_embedding: bool,
    /// KV-cache bytes per token of context, per layer.
    pub kv_bytes_per_token_layer: u64,
    /// Bytes of one token's hidden state on the wire between stages.
    pub hidden_bytes_per_token: u64,
}

/// A device as its worker measured it for this model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceProfile {
    /// Stable name (the worker's id or key).
    pub id: String,
    /// Memory the worker offers for weights and KV cache.
    pub memory_bytes: u64,
    /// Measured decode time of one transformer layer for one token.
    pub layer_time_us: u64,
    /// Measured time of the embedding lookup plus final norm and LM head for one token.
    pub head_time_us: u64,
}

/// A directed link between two devices, as measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkProfile {
    /// Sending device id.
    pub from: String,
    /// Receiving device id.
    pub to: String,
    /// One-way latency.
    pub latency_us: u64,
    /// Sustained bandwidth.
    pub bandwidth_bytes_per_s: u64,
}

/// What the plan optimizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Time per token of one session: compute of every stage plus every hop, including the
    /// sampled token's way back to the first stage.
    #[default]
    Latency,
    /// Tokens per second with many sessions in flight: set by the slowest stage or link.
    Throughput,
}

/// The planning request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRequest {
    /// The model.
    pub model: ModelProfile,
    /// Candidate devices.
    pub devices: Vec<DeviceProfile>,
    /// Measured links; a pair with no link cannot be adjacent in a pipeline.
    pub links: Vec<LinkProfile>,
    /// Context length every stage must hold KV cache for.
    pub context_tokens: u64,
    /// What to optimize.
    pub objective: Objective,
}

/// One stage: a device and the layers it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// Device id.
    pub device: String,
    /// Layers `start..end` of the model.
    pub layers: Range<usize>,
    /// Memory the stage needs (weights and KV cache).
    pub memory_bytes: u64,
    /// Compute time of the stage per token.
    pub compute_us: u64,
}

/// The chosen plan and what it predicts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Stages in pipeline order; the first embeds tokens, the last produces logits.
    pub stages: Vec<Stage>,
    /// Predicted time per token for one session.
    pub token_latency_us: u64,
    /// Predicted time between tokens with the pipeline full (the slowest stage or link).
    pub bottleneck_us: u64,
    /// Predicted per-token latency of the best single device that can hold the model, if any.
    pub best_single_latency_us: Option<u64>,
}

/// Layer ranges for `stages` devices all like `device` (several workers on one machine, as
/// `polylink up` runs them), chosen by the planner for throughput from the device's measured
/// layer and head times. The planner may use fewer stages than asked when more would not raise
/// throughput (a model whose LM head alone outweighs the rest); the ranges are contiguous and
/// cover the model.
pub fn balanced_ranges(
    model: &ModelProfile,
    device: &DeviceProfile,
    stages: usize,
) -> Result<Vec<Range<usize>>, PlanError> {
    let devices: Vec<DeviceProfile> = (0..stages.max(1))
        .map(|i| DeviceProfile { id: format!("{}-{i}", device.id), ..device.clone() })
        .collect();
    let mut links = Vec::new();
    for from in &devices {
        for to in devices.iter().filter(|d| d.id != from.id) {
            // Loopback: the hop costs next to nothing next to a stage.
            let (from, to) = (from.id.clone(), to.id.clone());
            links.push(LinkProfile { from, to, latency_us: 0, bandwidth_bytes_per_s: u64::MAX / 2 });
        }
    }
    let request = PlanRequest {
        model: model.clone(),
        devices,
        links,
        context_tokens: 1,
        objective: Objective::Throughput,
    };
    Ok(plan(&request)?.stages.into_iter().map(|s| s.layers).collect())
}
