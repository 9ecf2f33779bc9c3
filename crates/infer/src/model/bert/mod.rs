//! BERT-class encoders (MiniLM-L6) in f32, on weights read from safetensors: embeddings (word +
//! position + token type, LayerNorm), then per layer multi-head self-attention and a GELU
//! feed-forward block, each with a residual and post-LayerNorm. Input comes from the
//! [`crate::WordPiece`] tokenizer; the dense layers ([`LinearF32`]) and the attention heads run
//! on the engine's worker [`Pool`].

mod attention;
mod weights;

use std::path::Path;
use std::sync::Arc;

use super::ops::{gelu_erf, layer_norm};
use crate::error::{InferError, Result};
use crate::pool::Pool;
use crate::quant::LinearF32;
use crate::tokenizer::BertInput;
use weights::Weights;

/// LayerNorm epsilon of BERT checkpoints.
const LN_EPS: f32 = 1e-12;

struct Layer {
    qkv: LinearF32,
    attn_out: LinearF32,
    ln1: (Vec<f32>, Vec<f32>),
    up: LinearF32,
    down: LinearF32,
    ln2: (Vec<f32>, Vec<f32>),
}

/// A BERT-class encoder (MiniLM-L6-H384 shapes are read from the weights).
pub struct Bert {
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    ln_emb: (Vec<f32>, Vec<f32>),
    layers: Vec<Layer>,
    dim: usize,
    heads: usize,
    positions_max: usize,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for Bert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bert({} layers, width {}, {} heads)", self.layers.len(), self.dim, self.heads)
    }
}

impl Bert {
    /// Loads `model.safetensors` for an encoder with `heads` attention heads, running on `pool`.
    pub fn open(path: &Path, heads: usize, pool: Arc<Pool>) -> Result<Self> {
        let mut w = Weights::read(path)?;
        let [vocab, dim] = w.shape("embeddings.word_embeddings.weight")?[..] else {
            return Err(w.bad("word embeddings are not 2-D".into()));
        };
        if heads == 0 || dim % heads != 0 {
            return Err(w.bad(format!("width {dim} does not split into {heads} heads")));
        }
        let positions_max = w.shape("embeddings.position_embeddings.weight")?.first().copied().unwrap_or(0);
        let word = w.take("embeddings.word_embeddings.weight", &[vocab, dim])?;
        let position = w.take("embeddings.position_embeddings.weight", &[positions_max, dim])?;
        let token_type = w.take("embeddings.token_type_embeddings.weight", &[2, dim])?;
        let ln_emb = w.norm("embeddings.LayerNorm", dim)?;
        let mut layers = Vec::new();
        while w.has(&format!("encoder.layer.{}.attention.self.query.weight", layers.len())) {
            let p = format!("encoder.layer.{}.", layers.len());
            let ffn = w.shape(&format!("{p}intermediate.dense.bias"))?.first().copied().unwrap_or(0);
            let (mut qkv_w, mut qkv_b) = (Vec::with_capacity(3 * dim * dim), Vec::with_capacity(3 * dim));
            for part in ["query", "key", "value"] {
                qkv_w.extend(w.take(&format!("{p}attention.self.{part}.weight"), &[dim, dim])?);
                qkv_b.extend(w.take(&format!("{p}attention.self.{part}.bias"), &[dim])?);
            }
            layers.push(Layer {
                qkv: LinearF32::new(qkv_w, qkv_b, dim),
                attn_out: w.linear(&format!("{p}attention.output.dense"), dim, dim)?,
                ln1: w.norm(&format!("{p}attention.output.LayerNorm"), dim)?,
                up: w.linear(&format!("{p}intermediate.dense"), ffn, dim)?,
                down: w.linear(&format!("{p}output.dense"), dim, ffn)?,
                ln2: w.norm(&format!("{p}output.LayerNorm"), dim)?,
            });
        }
        if layers.is_empty() {
            return Err(w.bad("no encoder layers".into()));
        }
        Ok(Self { word, position, token_type, ln_emb, layers, dim, heads, positions_max, pool })
    }

    /// Hidden width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Longest input in tokens.
    pub fn positions_max(&self) -> usize {
        self.positions_max
    }

    /// Last-layer hidden states, `ids.len() × dim`, for one sequence (no padding).
    pub fn forward(&self, enc: &BertInput) -> Result<Vec<f32>> {
        let (n, d) = (enc.ids.len(), self.dim);
        if n == 0 || n > self.positions_max || enc.type_ids.len() != n {
            return Err(InferError::BadInput(format!(
                "encoder input of {n} tokens (1..={})",
                self.positions_max
            )));
        }
        let vocab = self.word.len() / d;
        let mut x = vec![0f32; n * d];
        for (i, row) in x.chunks_exact_mut(d).enumerate() {
            let (id, ty) = (enc.ids[i] as usize, enc.type_ids[i] as usize);
            if id >= vocab || ty > 1 {
                return Err(InferError::BadInput(format!(
                    "token {id} / type {ty} outside the encoder's tables"
                )));
            }
            for (j, v) in row.iter_mut().enumerate() {
                *v = self.word[id * d + j] + self.position[i * d + j] + self.token_type[ty * d + j];
            }
        }
        layer_norm(&mut x, &self.ln_emb.0, &self.ln_emb.1, LN_EPS);
        let (mut qkv, mut ctx, mut tmp, mut ffn) = (Vec::new(), vec![0f32; n * d], Vec::new(), Vec::new());
        let pool = &*self.pool;
        for l in &self.layers {
            l.qkv.forward(pool, &x, &mut qkv);
            attention::attention(pool, &qkv, n, d, self.heads, &mut ctx);
            l.attn_out.forward(pool, &ctx, &mut tmp);
            x.iter_mut().zip(&tmp).for_each(|(a, b)| *a += b);
            layer_norm(&mut x, &l.ln1.0, &l.ln1.1, LN_EPS);
            l.up.forward(pool, &x, &mut ffn);
            gelu_erf(&mut ffn);
            l.down.forward(pool, &ffn, &mut tmp);
            x.iter_mut().zip(&tmp).for_each(|(a, b)| *a += b);
            layer_norm(&mut x, &l.ln2.0, &l.ln2.1, LN_EPS);
        }
        Ok(x)
    }
}

/// Mean of rows `range` of a `rows × dim` matrix.
pub fn mean_rows(h: &[f32], dim: usize, range: std::ops::Range<usize>) -> Vec<f32> {
    let mut m = vec![0f32; dim];
    let count = range.len().max(1) as f32;
    for row in h.chunks_exact(dim).skip(range.start).take(range.len()) {
        m.iter_mut().zip(row).for_each(|(a, b)| *a += b);
    }
    m.iter_mut().for_each(|v| *v /= count);
    m
}

/// Cosine similarity (0 when either vector is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na * nb) }
}
