//! Per-session state of one shard: the key/value cache of its layers (f16, as llama.cpp keeps
//! it) and scratch buffers reused across steps, so decoding allocates nothing per token once the
//! buffers have grown.

/// Keys and values of one layer: `len × kv_dim` f16 values each.
#[derive(Debug, Default)]
pub(crate) struct LayerKv {
    pub k: Vec<u16>,
    pub v: Vec<u16>,
}

/// Reusable activations of a forward pass.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    pub x: Vec<f32>,
    pub xb: Vec<f32>,
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub att: Vec<f32>,
    pub gate: Vec<f32>,
    pub up: Vec<f32>,
    pub act: crate::quant::ActBufs,
    pub rope_global: Vec<(f32, f32)>,
    pub rope_local: Vec<(f32, f32)>,
}

/// One session's cache for one shard. Create it with [`crate::Shard::new_session`].
#[derive(Debug)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    pub(crate) len: usize,
    pub(crate) context_len: usize,
    /// The model layers this cache is for: `layer_start..layer_end` (a shard's whole range, or a
    /// span of it).
    pub(crate) layer_start: usize,
    pub(crate) layer_end: usize,
    pub(crate) scratch: Scratch,
}

impl KvCache {
    pub(crate) fn new(n_layers: usize, span: std::ops::Range<usize>, context_len: usize) -> Self {
        Self {
            layers: (0..n_layers).map(|_| LayerKv::default()).collect(),
            len: 0,
            context_len,
            layer_start: span.start,
            layer_end: span.end,
            scratch: Scratch::default(),
        }
    }

    /// The model layers this cache is for.
    pub fn span(&self) -> std::ops::Range<usize> {
        self.layer_start..self.layer_end
    }

    /// Positions already cached (the next token's position).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most positions this cache accepts.
    pub fn context_len(&self) -> usize {
        self.context_len
    }

    /// Forgets every position from `n` on (keeps the prefix), e.g. to re-run a suffix.
    pub fn truncate(&mut self, n: usize) {
        if n >= self.len {
            return;
        }
        for l in &mut self.layers {
            let kv_dim = l.k.len() / self.len.max(1);
            l.k.truncate(n * kv_dim);
            l.v.truncate(n * kv_dim);
        }
        self.len = n;
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Bytes held by cached keys and values.
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(|l| 2 * (l.k.len() + l.v.len())).sum()
    }
}
