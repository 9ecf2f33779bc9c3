//! Element-wise and per-row operations of the transformer block, written to follow ggml's
//! arithmetic (f64 sums in norms, f16-table GELU, iterated RoPE angles) so greedy
//! tokens track llama.cpp's; and the encoder's ([`layer_norm`], [`gelu_erf`]), which follow the
//! f32 arithmetic the cross-encoder head was trained on.

use std::sync::OnceLock;

use crate::quant::half::{f16_to_f32, f32_to_f16};

/// `out = x / rms(x) * w` for one row.
pub(super) fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let sum: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, &v), &wi) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * wi;
    }
}

/// In-place RMSNorm of one row.
pub(super) fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let sum: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for (v, &wi) in x.iter_mut().zip(w) {
        *v = *v * scale * wi;
    }
}

/// Fills `cs` with (cos, sin) pairs for `dims/2` frequencies at position `pos`.
pub(super) fn rope_angles(pos: usize, base: f32, dims: usize, cs: &mut [(f32, f32)]) {
    let theta_scale = base.powf(-2.0 / dims as f32);
    let mut theta = pos as f32;
    for c in cs.iter_mut().take(dims / 2) {
        *c = (theta.cos(), theta.sin());
        theta *= theta_scale;
    }
}

/// Rotates one head in place: interleaved pairs, or NEOX halves.
pub(super) fn rope_head(x: &mut [f32], cs: &[(f32, f32)], dims: usize, neox: bool) {
    let half = dims / 2;
    for (i, &(c, s)) in cs.iter().enumerate().take(half) {
        let (a, b) = if neox { (i, i + half) } else { (2 * i, 2 * i + 1) };
        let (x0, x1) = (x[a], x[b]);
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
}

/// `gate = silu(gate) * up`.
pub(super) fn swiglu(gate: &mut [f32], up: &[f32]) {
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
pub(super) fn geglu(gate: &mut [f32], up: &[f32]) {
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

/// In-place LayerNorm of every `gamma.len()`-wide row (f32 sums, as BERT checkpoints expect).
pub(super) fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
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

/// GELU with the exact error function (BERT's "gelu"), element-wise in place.
pub(super) fn gelu_erf(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2)));
}

/// erf to about 1e-7 (Abramowitz and Stegun 7.1.26).
fn erf(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly =
        t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let y = 1.0 - poly * (-x * x).exp();
    if x < 0.0 { -y } else { y }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_erf_known_values() {
        let mut x = [1.0, -1.0, 0.0];
        gelu_erf(&mut x);
        assert!((x[0] - 0.841_344_7).abs() < 1e-5);
        assert!((x[1] + 0.158_655_3).abs() < 1e-5);
        assert_eq!(x[2], 0.0);
    }

    #[test]
    fn layer_norm_centres_and_scales_each_row() {
        let mut x = [1.0, 2.0, 3.0, 10.0, 10.0, 10.0];
        layer_norm(&mut x, &[1.0, 1.0, 2.0], &[0.0, 0.5, 0.0], 1e-12);
        let r = 1.5f32.sqrt();
        let want = [-r, 0.5, 2.0 * r, 0.0, 0.5, 0.0];
        assert!(x.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5), "{x:?}");
    }
}
