//! An encoder checkpoint's tensors by name, taken out one at a time with their shapes checked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{InferError, Result};
use crate::quant::LinearF32;
use crate::safetensors::{self, Tensor};

/// The f32 tensors of one safetensors file, names with or without the `bert.` prefix.
pub(super) struct Weights {
    t: HashMap<String, Tensor>,
    path: PathBuf,
}

impl Weights {
    /// Reads every f32 tensor of `path`.
    pub(super) fn read(path: &Path) -> Result<Self> {
        Ok(Self { t: safetensors::read_f32(path)?, path: path.to_path_buf() })
    }

    /// An error about this file.
    pub(super) fn bad(&self, reason: String) -> InferError {
        InferError::BadFile { path: self.path.clone(), reason }
    }

    fn key(&self, name: &str) -> Option<String> {
        [format!("bert.{name}"), name.to_string()].into_iter().find(|k| self.t.contains_key(k))
    }

    /// Whether the file holds `name`.
    pub(super) fn has(&self, name: &str) -> bool {
        self.key(name).is_some()
    }

    /// The shape of `name`.
    pub(super) fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let k = self.key(name).ok_or_else(|| self.bad(format!("missing tensor {name}")))?;
        Ok(self.t.get(&k).map(|t| t.shape.clone()).unwrap_or_default())
    }

    /// Removes `name`, which must have exactly `shape`.
    pub(super) fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        match self.key(name).and_then(|k| self.t.remove(&k)) {
            Some(Tensor { shape: s, data }) if s == shape => Ok(data),
            Some(Tensor { shape: s, .. }) => {
                Err(self.bad(format!("{name} has shape {s:?}, expected {shape:?}")))
            }
            None => Err(self.bad(format!("missing tensor {name}"))),
        }
    }

    /// The dense layer `name.weight` (`out × inp`) with `name.bias`.
    pub(super) fn linear(&mut self, name: &str, out: usize, inp: usize) -> Result<LinearF32> {
        Ok(LinearF32::new(
            self.take(&format!("{name}.weight"), &[out, inp])?,
            self.take(&format!("{name}.bias"), &[out])?,
            inp,
        ))
    }

    /// The LayerNorm `name` (gain and bias, `dim` each).
    pub(super) fn norm(&mut self, name: &str, dim: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((self.take(&format!("{name}.weight"), &[dim])?, self.take(&format!("{name}.bias"), &[dim])?))
    }
}
