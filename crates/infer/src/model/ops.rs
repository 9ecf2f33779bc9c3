//! Element-wise and per-row operations of the transformer block, written to follow ggml's
//! arithmetic (f64 sums in norms, f16-table GELU, iterated RoPE angles) so greedy
//! tokens track llama.cpp's.

use std::sync::OnceLock;

use crate::quant::half::{f16_to_f32, f32_to_f16};

/// `out = x / rms(x) * w` for one row.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let sum: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, &v), &wi) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * wi;
    }
}

/// In-place RMSNorm of one row.
pub fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let sum: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for (v, &wi) in x.iter_mut().zip(w) {
        *v = *v * scale * wi;
    }
}

/// Fills `cs` with (cos, sin) pairs for `dims/2` frequencies at position `pos`.
pub fn rope_angles(pos: usize, base: f32, dims: usize, cs: &mut [(f32, f32)]) {
    let theta_scale = base.powf(-2.0 / dims as f32);
    let mut theta = pos as f32;
    for c in cs.iter_mut().take(dims / 2) {
        *c = (theta.cos(), theta.sin());
        theta *= theta_scale;
    }
}

/// Rotates one head in place: interleaved pairs, or NEOX halves.
pub fn rope_head(x: &mut [f32], cs: &[(f32, f32)], dims: usize, neox: bool) {
    let half = dims / 2;
    for (i, &(c, s)) in cs.iter().enumerate().take(half) {
        let (a, b) = if neox { (i, i + half) } else { (2 * i, 2 * i + 1) };
        let (x0, x1) = (x[a], x[b]);
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
}

/// `gate = silu(gate) * up`.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

fn gelu_f32(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x)).tanh())
}

fn gelu_table() -> &'static [f32] {
    static TABLE: OnceLock<Vec<f32>> = OnceLock::new();
    TABLE.get_or_init(|| (0..=u16::MAX).map(|h| f16_to_f32(f32_to_f16(gelu_f32(f16_to_f32(h))))).collect())
}

/// `gate = gelu_tanh(gate) * up`, GELU looked up at f16 precision as ggml does.
pub fn geglu(gate: &mut [f32], up: &[f32]) {
    let table = gelu_table();
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g;
        *g = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x * u
        } else {
            table[f32_to_f16(x) as usize] * u
        };
    }
}
