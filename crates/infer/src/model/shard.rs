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
use crate::kv::{KvCache, LayerKv, Scratch};
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
    /// The model layer index of each entry of `layers` (`range` in order, unless some were dropped).
    layer_ids: Vec<usize>,
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
        let layer_ids = range.clone().collect();
        Ok(Self { hp, range, layers, layer_ids, embed: if first { embed } else { None }, head, pool })
    }

    /// The same shard with the layers in `drop` skipped: a cheaper, different model that still
    /// reads and writes the same tokens. Only the attack tests and a deliberately cheating worker
    /// use it (to show that validators catch it); an honest worker never does.
    pub fn without_layers(mut self, drop: Range<usize>) -> Result<Self> {
        if drop.start <= self.range.start || drop.end >= self.range.end || drop.start >= drop.end {
            return Err(InferError::BadLayerRange {
                start: drop.start,
                end: drop.end,
                n_layers: self.hp.n_layers,
            });
        }
        let kept: Vec<(usize, Layer)> =
            self.layer_ids.iter().copied().zip(self.layers).filter(|(il, _)| !drop.contains(il)).collect();
        (self.layer_ids, self.layers) = kept.into_iter().unzip();
        Ok(self)
    }

    /// The same shard with every layer's matrices re-quantized to Q4_0: the same weights,
    /// stored coarser. Like [`Shard::without_layers`], only the attack tests and benchmark use it.
    pub fn requantized_q4_0(mut self) -> Self {
        for l in &mut self.layers {
            for m in [&mut l.wq, &mut l.wk, &mut l.wv, &mut l.wo, &mut l.w_gate, &mut l.w_up, &mut l.w_down] {
                if let Some(q) = m.to_q4_0() {
                    *m = q;
                }
            }
        }
        self
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
        KvCache::new(self.layers.len(), self.range.clone(), self.context(context_len))
    }

    /// A fresh cache for a session that runs only layers `span` of this shard: a worker holding
    /// more layers than a pipeline stage needs can stand in for that stage (a fail-over re-plan).
    /// The session takes token ids only if `span` starts at layer 0 and yields logits only if it
    /// ends at the last layer; otherwise hidden states go in and out.
    pub fn new_span_session(&self, span: Range<usize>, context_len: usize) -> Result<KvCache> {
        if span.start >= span.end || span.start < self.range.start || span.end > self.range.end {
            return Err(InferError::BadLayerRange {
                start: span.start,
                end: span.end,
                n_layers: self.hp.n_layers,
            });
        }
        let held = self.entries(&span);
        Ok(KvCache::new(held.len(), span, self.context(context_len)))
    }

    fn context(&self, asked: usize) -> usize {
        asked.min(self.hp.context_len).max(1)
    }

    /// The entries of `layers` whose model layer ids fall in `span`.
    fn entries(&self, span: &Range<usize>) -> Range<usize> {
        let lo = self.layer_ids.partition_point(|&id| id < span.start);
        let hi = self.layer_ids.partition_point(|&id| id < span.end);
        lo..hi
    }

    /// The entries `kv` runs, if it was made by this shard.
    fn entries_of(&self, kv: &KvCache) -> Result<Range<usize>> {
        let span = kv.span();
        let entries = self.entries(&span);
        if span.start < self.range.start || span.end > self.range.end || entries.len() != kv.layers.len() {
            return Err(InferError::BadInput("cache belongs to another shard".into()));
        }
        Ok(entries)
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
        let entries = self.entries_of(kv)?;
        let (first, last) = (kv.layer_start == 0, kv.layer_end == self.hp.n_layers);
        let s = &mut kv.scratch;
        let n = self.input_rows(input, first, &mut s.x)?;
        if n == 0 {
            return Err(InferError::BadInput("empty input".into()));
        }
        if kv.len + n > kv.context_len {
            return Err(InferError::ContextFull { needed: kv.len + n, context: kv.context_len });
        }
        let pos0 = kv.len;
        for (lkv, li) in kv.layers.iter_mut().zip(entries) {
            let mut seq = Seq { lkv, pos0, rows: 0..n };
            self.layer_forward(&self.layers[li], self.layer_ids[li], s, std::slice::from_mut(&mut seq));
        }
        kv.len += n;
        self.head_rows(s, n, last, mode, out)
    }

    /// Final norm and LM head over the last row (or all rows) of `s.x`.
    fn head_rows(
        &self,
        s: &mut Scratch,
        n: usize,
        last: bool,
        mode: LogitsMode,
        out: &mut Vec<f32>,
    ) -> Result<OutputKind> {
        let hp = &self.hp;
        let Some((norm, head)) = self.head.as_ref().filter(|_| last) else {
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

    /// Embeds tokens (a session starting at layer 0) or copies hidden states into `x`; returns
    /// the row count.
    fn input_rows(&self, input: ShardInput<'_>, first: bool, x: &mut Vec<f32>) -> Result<usize> {
        let hp = &self.hp;
        Ok(match (input, self.embed.as_ref().filter(|_| first)) {
            (ShardInput::Tokens(ids), Some(embed)) => {
                x.resize(ids.len() * hp.dim, 0.0);
                for (row, &id) in x.chunks_exact_mut(hp.dim).zip(ids) {
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
                x.clear();
                x.extend_from_slice(h);
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
        })
    }

    /// Decodes one position for each of several sessions in one pass: every matrix product runs
    /// over all sessions' rows at once (each weight row is read once for the whole batch), and
    /// attention runs per session on its own cache. `input` holds one token or one hidden row
    /// per session; the output holds one row (hidden state or logits) per session, in order.
    pub fn forward_batch(
        &self,
        kvs: &mut [&mut KvCache],
        input: ShardInput<'_>,
        out: &mut Vec<f32>,
    ) -> Result<OutputKind> {
        let Some(first) = kvs.first_mut() else {
            return Err(InferError::BadInput("empty batch".into()));
        };
        let mut s = std::mem::take(&mut first.scratch);
        let result = self.batch_inner(kvs, input, &mut s, out);
        if let Some(first) = kvs.first_mut() {
            first.scratch = s;
        }
        result
    }

    fn batch_inner(
        &self,
        kvs: &mut [&mut KvCache],
        input: ShardInput<'_>,
        s: &mut Scratch,
        out: &mut Vec<f32>,
    ) -> Result<OutputKind> {
        let span = kvs.first().map(|kv| kv.span()).unwrap_or_default();
        let (first, last) = (span.start == 0, span.end == self.hp.n_layers);
        let n = self.input_rows(input, first, &mut s.x)?;
        if n != kvs.len() {
            return Err(InferError::BadInput(format!("{n} input rows for {} sessions", kvs.len())));
        }
        let mut entries = 0..0;
        for kv in kvs.iter() {
            entries = self.entries_of(kv)?;
            if kv.span() != span {
                return Err(InferError::BadInput("a batch runs sessions over the same layers only".into()));
            }
            if kv.len + 1 > kv.context_len {
                return Err(InferError::ContextFull { needed: kv.len + 1, context: kv.context_len });
            }
        }
        for (k, li) in entries.enumerate() {
            let mut seqs: Vec<Seq<'_>> = kvs
                .iter_mut()
                .enumerate()
                .map(|(i, kv)| Seq { lkv: &mut kv.layers[k], pos0: kv.len, rows: i..i + 1 })
                .collect();
            self.layer_forward(&self.layers[li], self.layer_ids[li], s, &mut seqs);
        }
        for kv in kvs.iter_mut() {
            kv.len += 1;
        }
        self.head_rows(s, n, last, LogitsMode::All, out)
    }

    fn layer_forward(&self, l: &Layer, il: usize, s: &mut Scratch, seqs: &mut [Seq<'_>]) {
        let hp = &self.hp;
        let (dim, qd, kvd) = (hp.dim, hp.q_dim(), hp.kv_dim());
        let pool = &self.pool;
        let n = s.x.len() / dim;
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
        for (t, pos) in seqs.iter().flat_map(|q| q.rows.clone().map(move |t| (t, q.pos0 + t - q.rows.start)))
        {
            ops::rope_angles(pos, base, hp.rope_dims, cs);
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
        let window = if local { hp.sliding_window } else { None };
        s.att.resize(n * qd, 0.0);
        for q in seqs.iter_mut() {
            let r = q.rows.clone();
            attention::append_kv(q.lkv, &s.k[r.start * kvd..r.end * kvd], &s.v[r.start * kvd..r.end * kvd]);
            let (qs, att) = (&s.q[r.start * qd..r.end * qd], &mut s.att[r.start * qd..r.end * qd]);
            attention::attend(pool, hp, q.lkv, qs, q.pos0, r.len(), window, att);
        }
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

/// One session's rows in a layer pass: its cache, the position of its first row, and which rows
/// of the batch are its.
struct Seq<'a> {
    lkv: &'a mut LayerKv,
    pos0: usize,
    rows: Range<usize>,
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
