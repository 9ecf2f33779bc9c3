//! Hyper-parameters from GGUF metadata, per architecture, with sanity limits on every value.

use crate::error::{InferError, Result, bad_meta};
use crate::gguf::{Gguf, MetaExt};

/// Architectures this engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama family (SmolLM2, Llama 2/3): interleaved RoPE, SiLU FFN.
    Llama,
    /// Qwen2: the llama block with q/k/v biases and NEOX RoPE.
    Qwen2,
    /// Gemma 3: GELU-tanh FFN, QK-norm, pre/post norms, sliding-window layers.
    Gemma3,
}

impl Arch {
    /// The `general.architecture` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Gemma3 => "gemma3",
        }
    }
}

/// FFN activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// x·sigmoid(x).
    Silu,
    /// tanh-approximated GELU.
    GeluTanh,
}

/// Everything the forward pass needs to know about the model's shape.
#[derive(Debug, Clone)]
pub struct HParams {
    /// Architecture.
    pub arch: Arch,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Hidden size.
    pub dim: usize,
    /// FFN inner size.
    pub ffn_dim: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Per-head size.
    pub head_dim: usize,
    /// Vocabulary size (rows of the embedding).
    pub vocab: usize,
    /// Trained context length.
    pub context_len: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// RoPE base of global-attention layers.
    pub rope_base: f32,
    /// RoPE base of sliding-window layers.
    pub rope_base_local: f32,
    /// Dimensions rotated per head.
    pub rope_dims: usize,
    /// NEOX (split halves) rather than interleaved pairs.
    pub rope_neox: bool,
    /// Sliding window (in positions) of local layers, if any.
    pub sliding_window: Option<usize>,
    /// Every `swa_period`-th layer (the last of each period) is global; 0 means none is local.
    pub swa_period: usize,
    /// Embedding scale (Gemma: sqrt(dim)).
    pub embed_scale: Option<f32>,
    /// FFN activation.
    pub activation: Activation,
}

const LAYERS_MAX: usize = 1024;
const DIM_MAX: usize = 1 << 16;
const HEADS_MAX: usize = 1024;
const CONTEXT_MAX: usize = 1 << 20;
/// Longest attention head a model may have (the attention kernel's stack buffers hold one).
pub(crate) const HEAD_DIM_MAX: usize = 1024;

impl HParams {
    /// Reads and checks the hyper-parameters of the file's architecture.
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let arch_name =
            g.opt_str("general.architecture")?.ok_or_else(|| bad_meta("general.architecture", "missing"))?;
        let arch = match arch_name {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "gemma3" => Arch::Gemma3,
            other => return Err(InferError::UnsupportedArch(other.to_string())),
        };
        let key = |k: &str| format!("{arch_name}.{k}");
        let bounded = |k: &str, v: usize, max: usize| {
            if v == 0 || v > max { Err(bad_meta(&key(k), format!("{v} outside 1..={max}"))) } else { Ok(v) }
        };
        let n_layers = bounded("block_count", g.req_usize(&key("block_count"))?, LAYERS_MAX)?;
        let dim = bounded("embedding_length", g.req_usize(&key("embedding_length"))?, DIM_MAX)?;
        let ffn_dim = bounded("feed_forward_length", g.req_usize(&key("feed_forward_length"))?, DIM_MAX * 8)?;
        let n_heads = bounded("attention.head_count", g.req_usize(&key("attention.head_count"))?, HEADS_MAX)?;
        let n_kv_heads = g.opt_usize(&key("attention.head_count_kv"))?.unwrap_or(n_heads);
        let n_kv_heads = bounded("attention.head_count_kv", n_kv_heads, n_heads)?;
        if n_heads % n_kv_heads != 0 {
            return Err(bad_meta(
                &key("attention.head_count_kv"),
                format!("{n_kv_heads} does not divide {n_heads} heads"),
            ));
        }
        let head_dim = g.opt_usize(&key("attention.key_length"))?.unwrap_or(dim / n_heads);
        let head_dim = bounded("attention.key_length", head_dim, HEAD_DIM_MAX)?;
        if let Some(vl) = g.opt_usize(&key("attention.value_length"))?
            && vl != head_dim
        {
            return Err(bad_meta(
                &key("attention.value_length"),
                format!("{vl} differs from key_length {head_dim}"),
            ));
        }
        if head_dim % 2 != 0 {
            return Err(bad_meta(&key("attention.key_length"), format!("{head_dim} is odd")));
        }
        let rope_dims = g.opt_usize(&key("rope.dimension_count"))?.unwrap_or(head_dim);
        if rope_dims > head_dim || rope_dims % 2 != 0 {
            return Err(bad_meta(
                &key("rope.dimension_count"),
                format!("{rope_dims} for head size {head_dim}"),
            ));
        }
        let context_len =
            bounded("context_length", g.opt_usize(&key("context_length"))?.unwrap_or(2048), CONTEXT_MAX)?;
        let rms_eps = g.opt_f32(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5);
        let rope_base = g.opt_f32(&key("rope.freq_base"))?.unwrap_or(10000.0);
        if !(rms_eps > 0.0 && rms_eps < 1.0) || rope_base <= 1.0 {
            return Err(bad_meta(
                &key("rope.freq_base"),
                format!("eps {rms_eps} or rope base {rope_base} out of range"),
            ));
        }
        let vocab = g
            .tensor("token_embd.weight")
            .map(|t| t.n_rows())
            .ok_or_else(|| InferError::MissingTensor("token_embd.weight".into()))?;
        let (gemma, sliding_window) = match arch {
            Arch::Gemma3 => (true, g.opt_usize(&key("attention.sliding_window"))?.filter(|&w| w > 0)),
            _ => (false, None),
        };
        Ok(Self {
            arch,
            n_layers,
            dim,
            ffn_dim,
            n_heads,
            n_kv_heads,
            head_dim,
            vocab,
            context_len,
            rms_eps,
            rope_base,
            // llama.cpp fixes Gemma 3's local RoPE base at 10000 (not stored in the GGUF).
            rope_base_local: if gemma { 10000.0 } else { rope_base },
            rope_dims,
            rope_neox: arch != Arch::Llama,
            sliding_window,
            swa_period: if gemma && sliding_window.is_some() { 6 } else { 0 },
            embed_scale: gemma.then(|| (dim as f32).sqrt()),
            activation: if gemma { Activation::GeluTanh } else { Activation::Silu },
        })
    }

    /// Whether layer `il` uses the sliding window (and the local RoPE base).
    pub fn is_local(&self, il: usize) -> bool {
        self.swa_period > 0 && il % self.swa_period < self.swa_period - 1
    }

    /// Query width (heads × head size).
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Key/value width.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}
