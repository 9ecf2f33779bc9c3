//! Dense f32 layers for the encoder: `y = x·Wᵀ + b` with the weight repacked in panels, run on
//! the worker [`Pool`]. The quantized products ([`super::matmul`]) quantize their activations;
//! this one keeps f32 throughout, as an f32 checkpoint expects.

use std::ops::Range;

use super::SyncPtr;
use crate::pool::Pool;

/// `y = x·Wᵀ + b` for a checkpoint weight `W` (`out × in`, row-major), kept repacked in panels
/// of [`PANEL`] outputs: panel `p` holds, for every input `k`, the weights of outputs
/// `p*PANEL..p*PANEL+PANEL` side by side, so the kernel multiplies one input value into
/// [`PANEL`] accumulators with one vector load, for [`ROW_BLOCK`] rows at once.
#[derive(Debug)]
pub struct LinearF32 {
    panels: Vec<f32>,
    b: Vec<f32>,
    inp: usize,
}

/// Outputs per panel (two AVX2 vectors).
const PANEL: usize = 16;
/// Input rows multiplied together against one panel (4 × 2 vector accumulators).
const ROW_BLOCK: usize = 4;
/// Pool tasks per thread of one product.
const TASKS_PER_THREAD: usize = 4;

impl LinearF32 {
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

    /// Output features.
    pub fn out_len(&self) -> usize {
        self.b.len()
    }

    /// Applies the layer to `x` (`n × inp`), writing `y` (`n × out`), groups of panels split
    /// over `pool` (each weight is read once, the input stays in cache). Many small tasks let the
    /// calling thread take over the work of a worker the OS has not scheduled yet. Every output
    /// is summed in the same order whatever the split, so results do not depend on the threads.
    pub fn forward(&self, pool: &Pool, x: &[f32], y: &mut Vec<f32>) {
        let (inp, out) = (self.inp, self.b.len());
        let n = x.len() / inp;
        y.clear();
        y.resize(n * out, 0.0);
        let n_panels = out.div_ceil(PANEL);
        let per = n_panels.div_ceil(pool.n_threads() * TASKS_PER_THREAD).max(1);
        let dst = SyncPtr(y.as_mut_ptr());
        pool.run(n_panels.div_ceil(per), &|task| {
            self.panels_times_rows(task * per..((task + 1) * per).min(n_panels), x, dst);
        });
    }

    /// Panels `panels` against every block of rows of `x`, into their columns of `y`.
    fn panels_times_rows(&self, panels: Range<usize>, x: &[f32], y: SyncPtr) {
        let (inp, out) = (self.inp, self.b.len());
        let mut pad = Vec::new();
        for p in panels {
            let panel = &self.panels[p * inp * PANEL..][..inp * PANEL];
            let o0 = p * PANEL;
            let width = PANEL.min(out - o0);
            for (b, xb) in x.chunks(ROW_BLOCK * inp).enumerate() {
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
                    // SAFETY: this task alone writes outputs `o0..o0+width` of every row; the row
                    // `b*ROW_BLOCK + r` is below `n` and `o0 + width <= out`, inside `y` (`n × out`),
                    // which outlives the pool job.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(y.get().add((b * ROW_BLOCK + r) * out + o0), width)
                    };
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

/// `a·b + c`, fused on every CPU (one instruction with FMA, exact in software without), so the
/// encoder's outputs do not depend on the machine.
#[inline(always)]
fn fma(a: f32, b: f32, c: f32) -> f32 {
    a.mul_add(b, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_naive_product_on_any_thread_count() {
        let (inp, out, n) = (19, 7, 11);
        let w: Vec<f32> = (0..inp * out).map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0).collect();
        let b: Vec<f32> = (0..out).map(|i| i as f32 / 3.0).collect();
        let x: Vec<f32> = (0..inp * n).map(|i| ((i * 13 % 17) as f32 - 8.0) / 5.0).collect();
        let lin = LinearF32::new(w.clone(), b.clone(), inp);
        let mut first = Vec::new();
        for threads in [1, 2, 3] {
            let mut y = Vec::new();
            lin.forward(&Pool::new(threads), &x, &mut y);
            for r in 0..n {
                for o in 0..out {
                    let want: f32 = b[o] + (0..inp).map(|i| x[r * inp + i] * w[o * inp + i]).sum::<f32>();
                    assert!((y[r * out + o] - want).abs() < 1e-4, "row {r} out {o} threads {threads}");
                }
            }
            if threads == 1 {
                first = y;
            } else {
                assert_eq!(y, first, "{threads} threads changed the bits");
            }
        }
    }
}
