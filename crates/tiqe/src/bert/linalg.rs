//! The f32 kernels of the encoder: a linear layer split over threads, LayerNorm, GELU and
//! softmax attention over a whole (unpadded) sequence.

/// `y = x·Wᵀ + b` for a checkpoint weight `W` (`out × in`, row-major), kept repacked in panels
/// of [`PANEL`] outputs: panel `p` holds, for every input `k`, the weights of outputs
/// `p*PANEL..p*PANEL+PANEL` side by side, so the kernel multiplies one input value into
/// [`PANEL`] accumulators with one vector load, for [`ROW_BLOCK`] rows at once.
pub struct Linear {
    panels: Vec<f32>,
    b: Vec<f32>,
    inp: usize,
}

/// Outputs per panel (two AVX2 vectors).
const PANEL: usize = 16;
/// Input rows multiplied together against one panel (4 × 2 vector accumulators).
const ROW_BLOCK: usize = 4;

impl Linear {
    /// A layer from its weight (`out × inp`) and bias (`out`).
    pub fn new(w: Vec<f32>, b: Vec<f32>, inp: usize) -> Self {
        assert_eq!(w.len(), b.len() * inp, "weight and bias shapes disagree");
        let n_panels = b.len().div_ceil(PANEL);
        let mut panels = vec![0f32; n_panels * inp * PANEL];
        for (o, row) in w.chunks_exact(inp).enumerate() {
            let panel = &mut panels[o / PANEL * inp * PANEL..][..inp * PANEL];
            for (k, &v) in row.iter().enumerate() {
                panel[k * PANEL + o % PANEL] = v;
            }
        }
        Self { panels, b, inp }
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
            for (xc, yc) in x.chunks(per * inp).zip(y.chunks_mut(per * out)) {
                s.spawn(move || self.rows(xc, yc));
            }
        });
    }

    /// Every panel against every block of rows; the panel stays in cache across the blocks.
    fn rows(&self, x: &[f32], y: &mut [f32]) {
        let (inp, out) = (self.inp, self.b.len());
        let mut pad = Vec::new();
        for (p, panel) in self.panels.chunks_exact(inp * PANEL).enumerate() {
            let o0 = p * PANEL;
            let width = PANEL.min(out - o0);
            for (xb, yb) in x.chunks(ROW_BLOCK * inp).zip(y.chunks_mut(ROW_BLOCK * out)) {
                let rows = xb.len() / inp;
                let xb = if rows == ROW_BLOCK {
                    xb
                } else {
                    pad.clear();
                    pad.extend_from_slice(xb);
                    pad.resize(ROW_BLOCK * inp, 0.0);
                    &pad
                };
                let acc = block(xb, panel, inp);
                for (r, a) in acc.iter().enumerate().take(rows) {
                    let dst = &mut yb[r * out + o0..][..width];
                    for ((d, v), bias) in dst.iter_mut().zip(a).zip(&self.b[o0..]) {
                        *d = v + bias;
                    }
                }
            }
        }
    }
}

/// [`ROW_BLOCK`] rows of `x` times one panel: the register-blocked inner kernel.
#[inline(always)]
fn block(x: &[f32], panel: &[f32], inp: usize) -> [[f32; PANEL]; ROW_BLOCK] {
    let mut acc = [[0f32; PANEL]; ROW_BLOCK];
    let (x0, x1, x2, x3) = (&x[..inp], &x[inp..2 * inp], &x[2 * inp..3 * inp], &x[3 * inp..4 * inp]);
    for (k, w) in panel.chunks_exact(PANEL).enumerate() {
        let xs = [x0[k], x1[k], x2[k], x3[k]];
        for (a, &xv) in acc.iter_mut().zip(&xs) {
            for (aj, wj) in a.iter_mut().zip(w) {
                *aj = fma(xv, *wj, *aj);
            }
        }
    }
    acc
}

/// `a·b + c`, fused where the CPU has FMA (a library call otherwise, so it is not used there).
#[inline(always)]
fn fma(a: f32, b: f32, c: f32) -> f32 {
    if cfg!(target_feature = "fma") { a.mul_add(b, c) } else { a * b + c }
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
