//! What a planner needs to know about a model without loading it: shape and bytes per layer.

use super::config::{Arch, HParams};
use crate::error::Result;
use crate::gguf::Gguf;

/// Shape and memory of a model file.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Architecture.
    pub arch: Arch,
    /// Hyper-parameters.
    pub hparams: HParams,
    /// Every tensor's name and size in bytes.
    pub tensor_bytes: Vec<(String, u64)>,
    /// Bytes of each block's tensors, by layer.
    pub layer_bytes: Vec<u64>,
    /// Bytes of tensors outside the blocks (embedding, output norm, head).
    pub other_bytes: u64,
}

impl ModelInfo {
    /// Reads the model's shape and tensor sizes from an open GGUF.
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let hparams = HParams::from_gguf(g)?;
        let mut layer_bytes = vec![0u64; hparams.n_layers];
        let mut other_bytes = 0;
        for t in &g.tensors {
            let layer = t
                .name
                .strip_prefix("blk.")
                .and_then(|r| r.split('.').next())
                .and_then(|n| n.parse::<usize>().ok());
            match layer.and_then(|l| layer_bytes.get_mut(l)) {
                Some(b) => *b += t.bytes,
                None => other_bytes += t.bytes,
            }
        }
        Ok(Self {
            arch: hparams.arch,
            tensor_bytes: g.tensors.iter().map(|t| (t.name.clone(), t.bytes)).collect(),
            hparams,
            layer_bytes,
            other_bytes,
        })
    }

    /// Total tensor bytes.
    pub fn total_bytes(&self) -> u64 {
        self.layer_bytes.iter().sum::<u64>() + self.other_bytes
    }

    /// KV-cache bytes per cached position for `layers` layers (f16 keys and values).
    pub fn kv_bytes_per_position(&self, layers: usize) -> u64 {
        (layers * 2 * self.hparams.kv_dim() * 2) as u64
    }
}
