//! Causal grouped-query attention over the f16 KV cache, optionally limited to a sliding window,
//! parallel over (position, head). The arithmetic follows ggml's CPU flash attention for one
//! query row (llama.cpp's default for decoding): an f16 query and an f16 running output with
//! online softmax.
//!
//! Every query row takes this one path, however many rows come together: a row's result depends
//! only on its own query and the cache, never on the batch (the numerics rule in
//! ARCHITECTURE.md). ggml switches to an f32 tiled kernel at 64 queries; doing so here moved a
//! teacher-forced validator's logits by up to 1.3 from the worker's one-row decoding steps.

use super::config::{HEAD_DIM_MAX, HParams};
use crate::kv::LayerKv;
use crate::pool::Pool;
use crate::quant::SyncPtr;
use crate::quant::half::{f16_to_f32, f32_to_f16};
use crate::quant::simd_f16;

/// Appends rows of keys and values (f32) to the layer cache as f16.
pub(super) fn append_kv(lkv: &mut LayerKv, k: &[f32], v: &[f32]) {
    lkv.k.extend(k.iter().map(|&x| f32_to_f16(x)));
    lkv.v.extend(v.iter().map(|&x| f32_to_f16(x)));
}

/// Attention for `n` queries at positions `pos0..pos0+n` (their keys already cached);
/// `out` receives `n × q_dim`. Online softmax with an f16 query and f16 running output.
#[allow(clippy::too_many_arguments)]
pub(super) fn attend(
    pool: &Pool,
    hp: &HParams,
    lkv: &LayerKv,
    q: &[f32],
    pos0: usize,
    n: usize,
    window: Option<usize>,
    out: &mut [f32],
) {
    let (hd, nh, kvd) = (hp.head_dim, hp.n_heads, hp.kv_dim());
    let group = nh / hp.n_kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let out_ptr = SyncPtr(out.as_mut_ptr());
    let (keys, values) = (&lkv.k[..], &lkv.v[..]);
    pool.run(n * nh, &|task| {
        let (t, h) = (task / nh, task % nh);
        let p = pos0 + t;
        let lo = window.map_or(0, |w| (p + 1).saturating_sub(w));
        let kvh = h / group;
        let mut qh = [0u16; HEAD_DIM_MAX];
        let mut acc = [0u16; HEAD_DIM_MAX];
        let (qh, acc) = (&mut qh[..hd], &mut acc[..hd]);
        for (d, &x) in qh.iter_mut().zip(&q[t * nh * hd + h * hd..][..hd]) {
            *d = f32_to_f16(x);
        }
        let (mut m, mut sum) = (f32::NEG_INFINITY, 0f32);
        for j in lo..=p {
            let s = simd_f16::dot_f16(qh, &keys[j * kvd + kvh * hd..][..hd]) * scale;
            let (mut ms, mut vs) = (1f32, 1f32);
            if s > m {
                ms = (m - s).exp();
                m = s;
                simd_f16::scale_f16(acc, ms);
            } else {
                vs = (s - m).exp();
            }
            simd_f16::mad_f16(acc, &values[j * kvd + kvh * hd..][..hd], vs);
            sum = sum * ms + vs;
        }
        let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
        // SAFETY: each task owns its own `hd`-long slice of `out`.
        let o = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(t * nh * hd + h * hd), hd) };
        for (o, &a) in o.iter_mut().zip(acc.iter()) {
            *o = f16_to_f32(a) * inv;
        }
    });
}
