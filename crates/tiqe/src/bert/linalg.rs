//! The f32 kernels of the encoder: a linear layer split over threads, LayerNorm, GELU and
//! softmax attention over a whole (unpadded) sequence.

/// `y = x·Wᵀ + b` with `W` stored `out × in`, row-major (the checkpoint's layout).
pub struct Linear {
    w: Vec<f32>,
    b: Vec<f32>,
    inp: usize,
}

/// Rows of `x` handled together, so each weight row is read once per block.
const ROW_BLOCK: usize = 4;

impl Linear {
    /// A layer from its weight (`out × inp`) and bias (`out`).
    pub fn new(w: Vec<f32>, b: Vec<f32>, inp: usize) -> Self {
        assert_eq!(w.len(), b.len() * inp, "weight and bias shapes disagree");
        Self { w, b, inp }
    }

    /// Applies the layer to `x` (`n × inp`), writing `y` (`n × out`), on up to `threads` threads.
    pub fn forward(&self, x: &[f32], y: &mut Vec<f32>, threads: usize) {
        let (inp, out) = (self.inp, self.b.len());
        let n = x.len() / inp;
        y.clear();
        y.resize(n * out, 0.0);
        let per = n.div_ceil(threads.max(1)).div_ceil(ROW_BLOCK) * ROW_BLOCK;
        if threads <= 1 || n <= ROW_BLOCK {
            self.rows(x, y);
            return;
        }
        std::thread::scope(|s| {
            for (xc, yc) in x.chunks(per.max(1) * inp).zip(y.chunks_mut(per.max(1) * out)) {
                s.spawn(move || self.rows(xc, yc));
            }
        });
    }

    fn rows(&self, x: &[f32], y: &mut [f32]) {
        let (inp, out) = (self.inp, self.b.len());
        for (xb, yb) in x.chunks(ROW_BLOCK * inp).zip(y.chunks_mut(ROW_BLOCK * out)) {
            let rows = xb.len() / inp;
            for (o, (w, &bias)) in self.w.chunks_exact(inp).zip(&self.b).enumerate() {
                let mut acc = [0f32; ROW_BLOCK];
                for (r, a) in acc.iter_mut().enumerate().take(rows) {
                    *a = dot(&xb[r * inp..(r + 1) * inp], w);
                }
                for (r, a) in acc.iter().enumerate().take(rows) {
                    yb[r * out + o] = a + bias;
                }
            }
        }
    }
}

/// Dot product with eight independent lanes (vectorizes well).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// In-place LayerNorm of every `gamma.len()`-wide row.
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let d = gamma.len();
    for row in x.chunks_exact_mut(d) {
        let mean = row.iter().sum::<f32>() / d as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

/// GELU with the exact error function (BERT's "gelu").
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf to about 1e-7 (Abramowitz and Stegun 7.1.26).
fn erf(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly =
        t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let y = 1.0 - poly * (-x * x).exp();
    if x < 0.0 { -y } else { y }
}

/// Full (unmasked) multi-head attention. `qkv` is `n × 3d` (queries, keys, values side by side);
/// the context goes to `ctx` (`n × d`).
pub fn attention(qkv: &[f32], n: usize, d: usize, heads: usize, ctx: &mut Vec<f32>) {
    let hd = d / heads;
    let scale = 1.0 / (hd as f32).sqrt();
    ctx.clear();
    ctx.resize(n * d, 0.0);
    let mut scores = vec![0f32; n];
    for h in 0..heads {
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
            let out = &mut ctx[i * d + h * hd..][..hd];
            for (j, s) in scores.iter().enumerate() {
                let v = &qkv[j * 3 * d + 2 * d + h * hd..][..hd];
                let p = s / sum;
                out.iter_mut().zip(v).for_each(|(o, x)| *o += p * x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_matches_a_naive_product_on_any_thread_count() {
        let (inp, out, n) = (19, 7, 11);
        let w: Vec<f32> = (0..inp * out).map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0).collect();
        let b: Vec<f32> = (0..out).map(|i| i as f32 / 3.0).collect();
        let x: Vec<f32> = (0..inp * n).map(|i| ((i * 13 % 17) as f32 - 8.0) / 5.0).collect();
        let lin = Linear::new(w.clone(), b.clone(), inp);
        for threads in [1, 2, 3] {
            let mut y = Vec::new();
            lin.forward(&x, &mut y, threads);
            for r in 0..n {
                for o in 0..out {
                    let want: f32 = b[o] + (0..inp).map(|i| x[r * inp + i] * w[o * inp + i]).sum::<f32>();
                    assert!((y[r * out + o] - want).abs() < 1e-4, "row {r} out {o} threads {threads}");
                }
            }
        }
    }

    #[test]
    fn gelu_known_values() {
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-5);
        assert!((gelu(-1.0) + 0.158_655_3).abs() < 1e-5);
        assert_eq!(gelu(0.0), 0.0);
    }
}
