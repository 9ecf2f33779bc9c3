//! Full (unmasked) multi-head self-attention over one whole sequence, the heads split over the
//! worker pool. Unlike the decoder's attention there is no cache and no causal mask: every token
//! sees every other.

use crate::pool::Pool;
use crate::quant::SyncPtr;

/// `qkv` is `n × 3d` (queries, keys, values side by side); the context goes to `ctx` (`n × d`).
pub(super) fn attention(pool: &Pool, qkv: &[f32], n: usize, d: usize, heads: usize, ctx: &mut Vec<f32>) {
    assert!(heads > 0 && d.is_multiple_of(heads) && qkv.len() == n * 3 * d, "attention shapes disagree");
    ctx.clear();
    ctx.resize(n * d, 0.0);
    let out = SyncPtr(ctx.as_mut_ptr());
    pool.run(heads, &|h| head(qkv, n, d, heads, h, out));
}

/// One head: scaled dot products, softmax, weighted sum of values, into its columns of `ctx`.
fn head(qkv: &[f32], n: usize, d: usize, heads: usize, h: usize, ctx: SyncPtr) {
    let hd = d / heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut scores = vec![0f32; n];
    for i in 0..n {
        let q = &qkv[i * 3 * d + h * hd..][..hd];
        let mut max = f32::NEG_INFINITY;
        for (j, s) in scores.iter_mut().enumerate() {
            let k = &qkv[j * 3 * d + d + h * hd..][..hd];
            *s = q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale;
            max = max.max(*s);
        }
        let mut sum = 0.0;
        scores.iter_mut().for_each(|s| {
            *s = (*s - max).exp();
            sum += *s;
        });
        // SAFETY: head `h` alone writes columns `h*hd..(h+1)*hd` of the `n × d` context, which
        // outlives the pool job; `i < n` and `(h+1)*hd <= d` keep the slice inside it.
        let out = unsafe { std::slice::from_raw_parts_mut(ctx.get().add(i * d + h * hd), hd) };
        for (j, s) in scores.iter().enumerate() {
            let v = &qkv[j * 3 * d + 2 * d + h * hd..][..hd];
            let p = s / sum;
            out.iter_mut().zip(v).for_each(|(o, x)| *o += p * x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_token_attends_to_itself_and_threads_change_no_bit() {
        // One token: the context is its own value vector, whatever the scores.
        let (d, heads) = (4, 2);
        let qkv: Vec<f32> = (0..3 * d).map(|i| i as f32 / 3.0).collect();
        let mut ctx = Vec::new();
        attention(&Pool::new(1), &qkv, 1, d, heads, &mut ctx);
        assert_eq!(ctx, qkv[2 * d..]);
        // Several tokens: two threads give the bits one thread gives.
        let n = 5;
        let qkv: Vec<f32> = (0..n * 3 * d).map(|i| ((i * 7 % 13) as f32 - 6.0) / 4.0).collect();
        let (mut one, mut two) = (Vec::new(), Vec::new());
        attention(&Pool::new(1), &qkv, n, d, heads, &mut one);
        attention(&Pool::new(2), &qkv, n, d, heads, &mut two);
        assert_eq!(one, two);
    }
}
