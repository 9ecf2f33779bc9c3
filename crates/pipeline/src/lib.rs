//! Cross-device inference: which devices serve which layers, and how hidden states flow.
//!
//! [`plan`] is the partition planner (pure: profiles in, a [`plan::Plan`] out). Given the model's
//! per-layer memory and the devices' measured per-layer time, memory and links, it chooses devices
//! and contiguous layer ranges by dynamic programming over (layer, devices used, last device), in
//! the manner of EdgeShard, minimizing per-token latency or maximizing pipelined throughput under
//! memory limits. A single device is always a candidate, so a split is chosen only when it wins.
//! [`profile::model_profile`] reads a model's memory figures from its GGUF tensor directory.

pub mod plan;
pub mod profile;
