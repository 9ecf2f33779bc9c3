//! How a model is split across several workers on this one machine (`polylink up`, the pipeline
//! benchmark): this device's layer and LM-head times are measured, and the planner balances the
//! stages for throughput over that many devices like it.

use crate::NodeError;
use crate::profile;
use polylink_infer::{Gguf, HParams, Pool, Shard};
use polylink_pipeline::plan::{DeviceProfile, balanced_ranges};
use polylink_pipeline::profile::model_profile;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// This machine's profile for the model at `gguf`, with `threads` compute threads: one layer's
/// decode time and the LM head's, and the memory available. Both are timed over (nearly) the
/// whole model, so the weights stream from memory as they do when serving: a single layer would
/// sit in cache and look faster than it is next to the head. The layers without the last give
/// the layer time; the whole model, less those and one more layer, gives the head's.
pub fn this_device(gguf: &Path, threads: usize) -> Result<DeviceProfile, NodeError> {
    let g = Gguf::open(gguf)?;
    let n_layers = HParams::from_gguf(&g)?.n_layers;
    let pool = Arc::new(Pool::new(threads.max(1)));
    let time = |layers: Range<usize>| -> Result<u64, NodeError> {
        let count = layers.len() as u64;
        let shard = Shard::load(&g, layers, pool.clone())?;
        Ok(profile::measure(&shard, 16)?.layer_time_us * count)
    };
    let (body_us, whole_us) =
        if n_layers > 1 { (time(0..n_layers - 1)?, time(0..n_layers)?) } else { (0, time(0..1)?) };
    let layer_time_us = if n_layers > 1 { (body_us / (n_layers as u64 - 1)).max(1) } else { whole_us.max(1) };
    Ok(DeviceProfile {
        id: "this-machine".into(),
        memory_bytes: profile::available_memory_bytes(),
        layer_time_us,
        head_time_us: whole_us.saturating_sub(body_us + layer_time_us),
    })
}

/// A planned split of a model across workers on this machine.
#[derive(Debug, Clone)]
pub struct LocalSplit {
    /// Each stage's layers, in order.
    pub ranges: Vec<Range<usize>>,
}

/// Layer ranges for `stages` workers of the model at `gguf` on this machine, each with `threads`
/// threads, balanced by the planner (maybe fewer stages: see [`balanced_ranges`]).
pub fn local_stages(gguf: &Path, stages: usize, threads: usize) -> Result<LocalSplit, NodeError> {
    let model = model_profile(&Gguf::open(gguf)?)?;
    let device = this_device(gguf, threads)?;
    let ranges = balanced_ranges(&model, &device, stages)?;
    Ok(LocalSplit { ranges })
}
