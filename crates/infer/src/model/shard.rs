//! A loaded layer range and its forward pass.
//!
//! Input is token ids (first shard) or f32 hidden states `[n_tokens, dim]` (later shards);
//! output is hidden states, or logits on the last shard (last position or every position).

use std::ops::Range;
use std::sync::Arc;

use super::attention;
use super::config::{Activation, HParams};
use super::ops;
use super::weights::{self, Layer};
use crate::error::{InferError, Result};
use crate::gguf::Gguf;
use crate::kv::{KvCache, Scratch};
use crate::pool::Pool;
use crate::quant::{QMatrix, matmul, matmul_many};

/// What a forward pass consumes.
#[derive(Debug, Clone, Copy)]
pub enum ShardInput<'a> {
    /// Token ids (first shard only).
    Tokens(&'a [u32]),
    /// Hidden states, `n_tokens × dim` f32, row-major (non-first shards).
    Hidden(&'a [f32]),
}

/// Which logits the last shard returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsMode {
    /// Only the last position's.
    Last,
    /// Every position's (teacher-forced re-scoring).
    All,
}

/// What a forward pass wrote into the output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// `rows × dim` hidden states for the next shard.
    Hidden {
        /// Rows written.
        rows: usize,
    },
    /// `rows × vocab` logits.
    Logits {
        /// Rows written.
        rows: usize,
    },
}

/// Layers `range` of a model, loaded from its GGUF, with what the ends need.
#[derive(Debug)]
pub struct Shard {
    hp: HParams,
    range: Range<usize>,
    layers: Vec<Layer>,
    embed: Option<Arc<QMatrix>>,
    head: Option<(Vec<f32>, Arc<QMatrix>)>,
    pool: Arc<Pool>,
}

impl Shard {
    /// Loads layers `range` (reading only their tensors) and runs on `pool`.
    pub fn load(g: &Gguf, range: Range<usize>, pool: Arc<Pool>) -> Result<Self> {
        let hp = HParams::from_gguf(g)?;
        if range.start >= range.end || range.end > hp.n_layers {
            return Err(InferError::BadLayerRange {
                start: range.start,
                end: range.end,
                n_layers: hp.n_layers,
            });
        }
        let first = range.start == 0;
        let last = range.end == hp.n_layers;
        let tied = g.tensor("output.weight").is_none();
        let embed = if first || (last && tied) {
            Some(Arc::new(weights::matrix(g, "token_embd.weight", hp.dim, hp.vocab)?))
        } else {
            None
        };
        let head = if last {
            let norm = weights::vector(g, "output_norm.weight", hp.dim)?;
            let out = match (&embed, tied) {
                (Some(e), true) => e.clone(),
                _ => Arc::new(weights::matrix(g, "output.weight", hp.dim, hp.vocab)?),
            };
            Some((norm, out))
        } else {
            None
        };
        let layers = range.clone().map(|il| weights::layer(g, &hp, il)).collect::<Result<Vec<_>>>()?;
        Ok(Self { hp, range, layers, embed: if first { embed } else { None }, head, pool })
    }

    /// The model's hyper-parameters.
    pub fn hparams(&self) -> &HParams {
        &self.hp
    }

    /// The layers this shard runs.
    pub fn range(&self) -> Range<usize> {
        self.range.clone()
    }

    /// Whether this shard embeds tokens.
    pub fn is_first(&self) -> bool {
        self.range.start == 0
    }

    /// Whether this shard produces logits.
    pub fn is_last(&self) -> bool {
        self.range.end == self.hp.n_layers
    }

    /// A fresh, empty cache for one session, holding at most `context_len` positions.
    pub fn new_session(&self, context_len: usize) -> KvCache {
        KvCache::new(self.layers.len(), self.range.start, context_len.min(self.hp.context_len).max(1))
    }

    /// Runs the shard over `input` at the cache's next positions and appends to the cache.
    /// The result goes into `out`; the returned kind says what it is.
    pub fn forward(
        &self,
        kv: &mut KvCache,
        input: ShardInput<'_>,
        mode: LogitsMode,
        out: &mut Vec<f32>,
    ) -> Result<OutputKind> {
        let hp = &self.hp;
        if kv.layers.len() != self.layers.len() || kv.layer_start != self.range.start {
            return Err(InferError::BadInput("cache belongs to another shard".into()));
        }
        let s = &mut kv.scratch;
        let n = match (input, &self.embed) {
            (ShardInput::Tokens(ids), Some(embed)) => {
                s.x.resize(ids.len() * hp.dim, 0.0);
                for (row, &id) in s.x.chunks_exact_mut(hp.dim).zip(ids) {
                    if id as usize >= hp.vocab {
                        return Err(InferError::BadInput(format!(
                            "token id {id} outside vocabulary of {}",
                            hp.vocab
                        )));
                    }
                    embed.dequantize_row(id as usize, row);
                    if let Some(scale) = hp.embed_scale {
                        row.iter_mut().for_each(|v| *v *= scale);
                    }
                }
                ids.len()
            }
            (ShardInput::Hidden(h), None) if h.len() % hp.dim == 0 => {
                s.x.clear();
                s.x.extend_from_slice(h);
                h.len() / hp.dim
            }
            (ShardInput::Tokens(_), None) => {
                return Err(InferError::BadInput("tokens sent to a non-first shard".into()));
            }
            (ShardInput::Hidden(h), _) => {
                return Err(InferError::BadInput(format!(
                    "{} hidden values do not fit a first shard or rows of {}",
                    h.len(),
                    hp.dim
                )));
            }
        };
        if n == 0 {
            return Err(InferError::BadInput("empty input".into()));
        }
        if kv.len + n > kv.context_len {
            return Err(InferError::ContextFull { needed: kv.len + n, context: kv.context_len });
        }
        let pos0 = kv.len;
        for (li, layer) in self.layers.iter().enumerate() {
            let il = self.range.start + li;
            self.layer_forward(layer, il, &mut kv.layers[li], s, pos0, n);
        }
        kv.len += n;
        let Some((norm, head)) = &self.head else {
            out.clear();
            out.extend_from_slice(&s.x);
            return Ok(OutputKind::Hidden { rows: n });
        };
        let first_row = if mode == LogitsMode::Last { n - 1 } else { 0 };
        let rows = n - first_row;
        s.xb.resize(rows * hp.dim, 0.0);
        for (o, x) in s.xb.chunks_exact_mut(hp.dim).zip(s.x[first_row * hp.dim..].chunks_exact(hp.dim)) {
            ops::rms_norm(x, norm, hp.rms_eps, o);
        }
        out.resize(rows * hp.vocab, 0.0);
        matmul(&self.pool, head, &s.xb, &mut s.act, out);
        Ok(OutputKind::Logits { rows })
    }

    fn layer_forward(
        &self,
        l: &Layer,
        il: usize,
        lkv: &mut crate::kv::LayerKv,
        s: &mut Scratch,
        pos0: usize,
        n: usize,
    ) {
        let hp = &self.hp;
        let (dim, qd, kvd) = (hp.dim, hp.q_dim(), hp.kv_dim());
        let pool = &self.pool;
        s.xb.resize(n * dim, 0.0);
        for (o, x) in s.xb.chunks_exact_mut(dim).zip(s.x.chunks_exact(dim)) {
            ops::rms_norm(x, &l.attn_norm, hp.rms_eps, o);
        }
        s.q.resize(n * qd, 0.0);
        s.k.resize(n * kvd, 0.0);
        s.v.resize(n * kvd, 0.0);
        matmul_many(pool, &[&l.wq, &l.wk, &l.wv], &s.xb, &mut s.act, &mut [&mut s.q, &mut s.k, &mut s.v]);
        for (buf, bias) in [(&mut s.q, &l.bias_q), (&mut s.k, &l.bias_k), (&mut s.v, &l.bias_v)] {
            if let Some(b) = bias {
                for row in buf.chunks_exact_mut(b.len()) {
                    row.iter_mut().zip(b).for_each(|(v, bv)| *v += bv);
                }
            }
        }
        let local = hp.is_local(il);
        let base = if local { hp.rope_base_local } else { hp.rope_base };
        let cs = if local { &mut s.rope_local } else { &mut s.rope_global };
        cs.resize(hp.rope_dims / 2, (0.0, 0.0));
        for t in 0..n {
            ops::rope_angles(pos0 + t, base, hp.rope_dims, cs);
            let (qrow, krow) = (&mut s.q[t * qd..(t + 1) * qd], &mut s.k[t * kvd..(t + 1) * kvd]);
            for (buf, norm) in [(qrow, &l.q_norm), (krow, &l.k_norm)] {
                for head in buf.chunks_exact_mut(hp.head_dim) {
                    if let Some(w) = norm {
                        ops::rms_norm_inplace(head, w, hp.rms_eps);
                    }
                    ops::rope_head(head, cs, hp.rope_dims, hp.rope_neox);
                }
            }
        }
        attention::append_kv(lkv, &s.k, &s.v);
        let window = if local { hp.sliding_window } else { None };
        s.att.resize(n * qd, 0.0);
        attention::attend(pool, hp, lkv, &s.q, pos0, n, window, &mut s.scores, &mut s.att);
        s.xb.resize(n * dim, 0.0);
        matmul(pool, &l.wo, &s.att, &mut s.act, &mut s.xb);
        add_residual(&mut s.x, &mut s.xb, l.post_attn_norm.as_deref(), hp.rms_eps, dim);
        for (o, x) in s.xb.chunks_exact_mut(dim).zip(s.x.chunks_exact(dim)) {
            ops::rms_norm(x, &l.ffn_norm, hp.rms_eps, o);
        }
        s.gate.resize(n * hp.ffn_dim, 0.0);
        s.up.resize(n * hp.ffn_dim, 0.0);
        matmul_many(pool, &[&l.w_gate, &l.w_up], &s.xb, &mut s.act, &mut [&mut s.gate, &mut s.up]);
        match hp.activation {
            Activation::Silu => ops::swiglu(&mut s.gate, &s.up),
            Activation::GeluTanh => ops::geglu(&mut s.gate, &s.up),
        }
        matmul(pool, &l.w_down, &s.gate, &mut s.act, &mut s.xb);
        add_residual(&mut s.x, &mut s.xb, l.post_ffn_norm.as_deref(), hp.rms_eps, dim);
    }
}

/// `x += norm(y)` (or `x += y` without a post-norm), row by row.
fn add_residual(x: &mut [f32], y: &mut [f32], post_norm: Option<&[f32]>, eps: f32, dim: usize) {
    for (xr, yr) in x.chunks_exact_mut(dim).zip(y.chunks_exact_mut(dim)) {
        if let Some(w) = post_norm {
            ops::rms_norm_inplace(yr, w, eps);
        }
        xr.iter_mut().zip(yr.iter()).for_each(|(a, b)| *a += b);
    }
}
