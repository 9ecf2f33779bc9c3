//! Run-time kernel selection: AVX2 kernels where the CPU has them, scalar otherwise.

use super::{ActType, GgmlType, scalar};

/// Quantizes one activation row.
#[inline]
pub fn quantize_act(act: ActType, x: &[f32], out: &mut [u8]) {
    scalar::quantize_act(act, x, out);
}

/// Dot product of one weight row and one activation row.
#[inline]
pub fn vec_dot(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> f32 {
    scalar::vec_dot(ty, w, a, n)
}
