//! Causal grouped-query attention over the f16 KV cache, optionally limited to a sliding window,
//! parallel over (position, head). The arithmetic follows ggml's CPU flash attention, which
//! llama.cpp uses by default, so results track it: batches of fewer than 64 queries (decoding,
//! short prompts) use an f16 query and an f16 running output with online softmax; longer
//! prompts use f32 throughout, like ggml's tiled kernel.

use super::config::{HEAD_DIM_MAX, HParams};
use crate::kv::LayerKv;
use crate::pool::Pool;
use crate::quant::SyncPtr;
use crate::quant::half::{f16_to_f32, f32_to_f16};
use crate::quant::simd_f16;

/// Query batches at least this long take the f32 path (ggml's flash-attention tile height).
const TILED_QUERIES_MIN: usize = 64;

/// Appends rows of keys and values (f32) to the layer cache as f16.
pub fn append_kv(lkv: &mut LayerKv, k: &[f32], v: &[f32]) {
    lkv.k.extend(k.iter().map(|&x| f32_to_f16(x)));
    lkv.v.extend(v.iter().map(|&x| f32_to_f16(x)));
}

/// Attention for `n` queries at positions `pos0..pos0+n` (their keys already cached);
/// `out` receives `n × q_dim`; `scores` is scratch for long batches.
#[allow(clippy::too_many_arguments)]
pub fn attend(
    pool: &Pool,
    hp: &HParams,
    lkv: &LayerKv,
    q: &[f32],
    pos0: usize,
    n: usize,
    window: Option<usize>,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    if n >= TILED_QUERIES_MIN {
        attend_f32(pool, hp, lkv, q, pos0, n, window, scores, out);
    } else {
        attend_f16(pool, hp, lkv, q, pos0, n, window, out);
    }
}

/// Online-softmax attention with an f16 query and f16 running output.
#[allow(clippy::too_many_arguments)]
fn attend_f16(
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

/// Attention in f32: scores, softmax, weighted sum of values.
#[allow(clippy::too_many_arguments)]
fn attend_f32(
    pool: &Pool,
    hp: &HParams,
    lkv: &LayerKv,
    q: &[f32],
    pos0: usize,
    n: usize,
    window: Option<usize>,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let (hd, nh, kvd) = (hp.head_dim, hp.n_heads, hp.kv_dim());
    let group = nh / hp.n_kv_heads;
    let total = pos0 + n;
    scores.resize(n * nh * total, 0.0);
    let scale = 1.0 / (hd as f32).sqrt();
    let scores_ptr = SyncPtr(scores.as_mut_ptr());
    let out_ptr = SyncPtr(out.as_mut_ptr());
    let (keys, values) = (&lkv.k[..], &lkv.v[..]);
    pool.run(n * nh, &|task| {
        let (t, h) = (task / nh, task % nh);
        let (scores_ptr, out_ptr) = (scores_ptr, out_ptr);
        let p = pos0 + t;
        let lo = window.map_or(0, |w| (p + 1).saturating_sub(w));
        let kvh = h / group;
        // SAFETY: each task owns its own `total`-long slice of `scores` and `hd`-long slice of `out`.
        let sc = unsafe { std::slice::from_raw_parts_mut(scores_ptr.0.add(task * total), p + 1 - lo) };
        let o = unsafe { std::slice::from_raw_parts_mut(out_ptr.0.add(t * nh * hd + h * hd), hd) };
        let qh = &q[t * nh * hd + h * hd..][..hd];
        let mut max = f32::NEG_INFINITY;
        for (j, s) in sc.iter_mut().enumerate() {
            *s = simd_f16::dot_f32_f16(qh, &keys[(lo + j) * kvd + kvh * hd..][..hd]) * scale;
            max = max.max(*s);
        }
        let mut sum = 0f32;
        for s in sc.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        o.fill(0.0);
        for (j, &w) in sc.iter().enumerate() {
            simd_f16::axpy_f16(w, &values[(lo + j) * kvd + kvh * hd..][..hd], o);
        }
        let inv = 1.0 / sum;
        o.iter_mut().for_each(|v| *v *= inv);
    });
}
