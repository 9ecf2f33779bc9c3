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

/// This machine's profile for the model at `gguf`: one layer's decode time (timed on the first
/// layer) and the LM head's (the last layer with the head, less one layer), with `threads`
/// compute threads, and the memory available.
pub fn this_device(gguf: &Path, threads: usize) -> Result<DeviceProfile, NodeError> {
    let g = Gguf::open(gguf)?;
    let n_layers = HParams::from_gguf(&g)?.n_layers;
    let pool = Arc::new(Pool::new(threads.max(1)));
    let time = |layers: Range<usize>| -> Result<u64, NodeError> {
        let shard = Shard::load(&g, layers, pool.clone())?;
        Ok(profile::measure(&shard, 16)?.layer_time_us)
    };
    let layer_time_us = time(0..1)?.max(1);
    let with_head_us = time(n_layers - 1..n_layers)?;
    Ok(DeviceProfile {
        id: "this-machine".into(),
        memory_bytes: profile::available_memory_bytes(),
        layer_time_us,
        head_time_us: with_head_us.saturating_sub(layer_time_us),
    })
}

/// A planned split of a model across workers on this machine.
#[derive(Debug, Clone)]
pub struct LocalSplit {
    /// Each stage's layers, in order.
    pub ranges: Vec<Range<usize>>,
    /// Each stage's predicted decode time per token (its layers, and the LM head on the last):
    /// what its share of the fee follows.
    pub work_us: Vec<u64>,
}

/// Layer ranges for `stages` workers of the model at `gguf` on this machine, each with `threads`
/// threads, balanced by the planner (maybe fewer stages: see [`balanced_ranges`]).
pub fn local_stages(gguf: &Path, stages: usize, threads: usize) -> Result<LocalSplit, NodeError> {
    let model = model_profile(&Gguf::open(gguf)?)?;
    let n_layers = model.layer_bytes.len();
    let device = this_device(gguf, threads)?;
    let ranges = balanced_ranges(&model, &device, stages)?;
    let work_us = ranges
        .iter()
        .map(|r| {
            device.layer_time_us * r.len() as u64 + if r.end == n_layers { device.head_time_us } else { 0 }
        })
        .collect();
    Ok(LocalSplit { ranges, work_us })
}
