//! Loading the tensors of one layer range by name, with shape checks against the hyper-parameters.

use super::config::{Arch, HParams};
use crate::error::{InferError, Result};
use crate::gguf::Gguf;
use crate::quant::{GgmlType, QMatrix, scalar};

/// One transformer block's weights.
#[derive(Debug)]
pub(super) struct Layer {
    pub attn_norm: Vec<f32>,
    pub wq: QMatrix,
    pub wk: QMatrix,
    pub wv: QMatrix,
    pub wo: QMatrix,
    pub bias_q: Option<Vec<f32>>,
    pub bias_k: Option<Vec<f32>>,
    pub bias_v: Option<Vec<f32>>,
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    pub post_attn_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub w_gate: QMatrix,
    pub w_up: QMatrix,
    pub w_down: QMatrix,
    pub post_ffn_norm: Option<Vec<f32>>,
}

fn shape_err(name: &str, actual: &[u64], expected: &[u64]) -> InferError {
    InferError::BadShape { name: name.to_string(), actual: actual.to_vec(), expected: expected.to_vec() }
}

/// Reads a 2-D matrix of `rows × cols` (GGUF dims `[cols, rows]`).
pub(super) fn matrix(g: &Gguf, name: &str, cols: usize, rows: usize) -> Result<QMatrix> {
    let info = g.tensor(name).ok_or_else(|| InferError::MissingTensor(name.to_string()))?;
    let expected = [cols as u64, rows as u64];
    if info.dims != expected {
        return Err(shape_err(name, &info.dims, &expected));
    }
    Ok(QMatrix { ty: info.ty, row_len: cols, n_rows: rows, data: g.read_tensor(info)? })
}

/// Reads a 1-D vector of `n` values as f32.
pub(super) fn vector(g: &Gguf, name: &str, n: usize) -> Result<Vec<f32>> {
    let info = g.tensor(name).ok_or_else(|| InferError::MissingTensor(name.to_string()))?;
    if info.dims != [n as u64] || !matches!(info.ty, GgmlType::F32 | GgmlType::F16) {
        return Err(shape_err(name, &info.dims, &[n as u64]));
    }
    let mut out = vec![0f32; n];
    scalar::dequantize_row(info.ty, &g.read_tensor(info)?, &mut out);
    Ok(out)
}

fn opt_vector(g: &Gguf, name: &str, n: usize) -> Result<Option<Vec<f32>>> {
    if g.tensor(name).is_some() { vector(g, name, n).map(Some) } else { Ok(None) }
}

/// Loads block `il`.
pub(super) fn layer(g: &Gguf, hp: &HParams, il: usize) -> Result<Layer> {
    let n = |s: &str| format!("blk.{il}.{s}.weight");
    let b = |s: &str| format!("blk.{il}.{s}.bias");
    let (dim, qd, kvd, ffn) = (hp.dim, hp.q_dim(), hp.kv_dim(), hp.ffn_dim);
    let gemma = hp.arch == Arch::Gemma3;
    let req = |name: String, len: usize| vector(g, &name, len);
    Ok(Layer {
        attn_norm: req(n("attn_norm"), dim)?,
        wq: matrix(g, &n("attn_q"), dim, qd)?,
        wk: matrix(g, &n("attn_k"), dim, kvd)?,
        wv: matrix(g, &n("attn_v"), dim, kvd)?,
        wo: matrix(g, &n("attn_output"), qd, dim)?,
        bias_q: opt_vector(g, &b("attn_q"), qd)?,
        bias_k: opt_vector(g, &b("attn_k"), kvd)?,
        bias_v: opt_vector(g, &b("attn_v"), kvd)?,
        q_norm: if gemma { Some(req(n("attn_q_norm"), hp.head_dim)?) } else { None },
        k_norm: if gemma { Some(req(n("attn_k_norm"), hp.head_dim)?) } else { None },
        post_attn_norm: if gemma { Some(req(n("post_attention_norm"), dim)?) } else { None },
        ffn_norm: req(n("ffn_norm"), dim)?,
        w_gate: matrix(g, &n("ffn_gate"), dim, ffn)?,
        w_up: matrix(g, &n("ffn_up"), dim, ffn)?,
        w_down: matrix(g, &n("ffn_down"), ffn, dim)?,
        post_ffn_norm: if gemma { Some(req(n("post_ffw_norm"), dim)?) } else { None },
    })
}
