//! Causal grouped-query attention over the f16 KV cache, optionally limited to a sliding window,
//! parallel over (position, head).

use super::config::HParams;
use super::ops;
use crate::kv::LayerKv;
use crate::pool::Pool;
use crate::quant::SyncPtr;
use crate::quant::half::f32_to_f16;
use crate::quant::simd_f16;

/// Appends rows of keys and values (f32) to the layer cache as f16.
pub fn append_kv(lkv: &mut LayerKv, k: &[f32], v: &[f32]) {
    lkv.k.extend(k.iter().map(|&x| f32_to_f16(x)));
    lkv.v.extend(v.iter().map(|&x| f32_to_f16(x)));
}

/// Attention for `n` queries at positions `pos0..pos0+n` (their keys already cached).
/// `scores` is scratch; `out` receives `n × q_dim`.
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
        for (j, s) in sc.iter_mut().enumerate() {
            let krow = &keys[(lo + j) * kvd + kvh * hd..][..hd];
            *s = simd_f16::dot_f16(qh, krow) * scale;
        }
        ops::softmax(sc);
        o.fill(0.0);
        for (j, &w) in sc.iter().enumerate() {
            let vrow = &values[(lo + j) * kvd + kvh * hd..][..hd];
            simd_f16::axpy_f16(w, vrow, o);
        }
    });
}
