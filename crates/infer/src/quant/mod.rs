//! Quantized weights and the matrix-vector/matrix-matrix products over them.
//!
//! Activations are quantized per row to the block format ggml pairs with each weight type
//! (Q8_0, Q8_1 or Q8_K), then integer dot products run block by block. Kernels are picked once
//! at run time: AVX2 where the CPU has it, else the portable scalar code.

pub mod half;
pub mod scalar;
mod simd;
pub mod simd_f16;
mod types;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_multi;

pub use types::GgmlType;

use crate::pool::Pool;

/// Activation block formats, one per weight type family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActType {
    /// Raw f32 (for f32/f16 weights).
    F32,
    /// 32 int8 with an f16 scale.
    Q8_0,
    /// 32 int8 with an f16 scale and an f16 scaled sum.
    Q8_1,
    /// 256 int8 with an f32 scale and 16 partial sums.
    Q8K,
}

impl ActType {
    /// The activation format used with weights of type `ty`.
    pub fn for_weights(ty: GgmlType) -> Self {
        match ty {
            GgmlType::F32 | GgmlType::F16 => Self::F32,
            GgmlType::Q4_1 => Self::Q8_1,
            GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => Self::Q8_0,
            GgmlType::Q4K | GgmlType::Q6K => Self::Q8K,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::Q8_0 => 34,
            Self::Q8_1 => 36,
            Self::Q8K => 292,
        }
    }

    /// Elements per block.
    pub fn block_elems(self) -> usize {
        match self {
            Self::F32 => 1,
            Self::Q8_0 | Self::Q8_1 => 32,
            Self::Q8K => 256,
        }
    }

    /// Bytes for a row of `n` elements.
    pub fn row_bytes(self, n: usize) -> usize {
        n / self.block_elems() * self.block_bytes()
    }
}

/// A 2-D weight matrix kept in its file encoding: `n_rows` rows of `row_len` elements.
#[derive(Debug)]
pub struct QMatrix {
    /// Element type.
    pub ty: GgmlType,
    /// Elements per row (input features).
    pub row_len: usize,
    /// Rows (output features).
    pub n_rows: usize,
    /// Raw blocks, `n_rows * row_bytes`.
    pub data: Vec<u8>,
}

impl QMatrix {
    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.ty.row_bytes(self.row_len).unwrap_or(0)
    }

    /// The encoded bytes of row `r`.
    pub fn row(&self, r: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }

    /// Dequantizes row `r` into `out` (`row_len` floats).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        scalar::dequantize_row(self.ty, self.row(r), out);
    }
}

/// Quantizes activation rows `x` (`n` rows of `k`) into `buf` for multiplying with `ty` weights.
pub fn quantize_rows(ty: GgmlType, x: &[f32], k: usize, buf: &mut Vec<u8>) {
    let act = ActType::for_weights(ty);
    let rb = act.row_bytes(k);
    let n = x.len() / k;
    buf.resize(rb * n, 0);
    for (xr, br) in x.chunks_exact(k).zip(buf.chunks_exact_mut(rb)) {
        simd::quantize_act(act, xr, br);
    }
}

/// Dot product of a weight row with a quantized activation row of `n` elements.
#[inline]
pub fn vec_dot(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> f32 {
    simd::vec_dot(ty, w, a, n)
}

/// Raw pointer wrapper so disjoint output slices can be written from pool tasks.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr(pub *mut f32);
// SAFETY: tasks write disjoint index ranges, and the pool joins before the buffer is used again.
unsafe impl Sync for SyncPtr {}
unsafe impl Send for SyncPtr {}

/// `out[t][r] = dot(w.row(r), x[t])` for `n_tok` rows of `x` (`w.row_len` each).
/// `act_buf` is scratch reused between calls.
pub fn matmul(pool: &Pool, w: &QMatrix, x: &[f32], act_buf: &mut Vec<u8>, out: &mut [f32]) {
    let k = w.row_len;
    let n_tok = x.len() / k;
    debug_assert_eq!(out.len(), n_tok * w.n_rows);
    quantize_rows(w.ty, x, k, act_buf);
    let act = &act_buf[..];
    let arb = ActType::for_weights(w.ty).row_bytes(k);
    let n_rows = w.n_rows;
    // Rows per task: small enough to balance, large enough to amortize the hand-off.
    let chunk = if n_tok == 1 { n_rows.div_ceil(pool.n_threads() * 4).max(16) } else { 16 };
    let n_tasks = n_rows.div_ceil(chunk);
    let out_ptr = SyncPtr(out.as_mut_ptr());
    let multi = simd::has_x4(w.ty);
    pool.run(n_tasks, &|task| {
        let r0 = task * chunk;
        let r1 = (r0 + chunk).min(n_rows);
        let out_ptr = out_ptr;
        let row_act = |t: usize| &act[t * arb..(t + 1) * arb];
        let mut t = 0;
        while multi && t + 4 <= n_tok {
            let a4 = [row_act(t), row_act(t + 1), row_act(t + 2), row_act(t + 3)];
            for r in r0..r1 {
                let Some(v) = simd::vec_dot_x4(w.ty, w.row(r), a4, k) else { break };
                for (j, &vj) in v.iter().enumerate() {
                    // SAFETY: (t, r) pairs are disjoint across tasks and inside `out`.
                    unsafe { *out_ptr.0.add((t + j) * n_rows + r) = vj };
                }
            }
            t += 4;
        }
        for t in t..n_tok {
            let a = row_act(t);
            for r in r0..r1 {
                let v = simd::vec_dot(w.ty, w.row(r), a, k);
                // SAFETY: (t, r) pairs are disjoint across tasks and inside `out`.
                unsafe { *out_ptr.0.add(t * n_rows + r) = v };
            }
        }
    });
}

#[cfg(test)]
mod tests;
