//! Quantized weights and the matrix-vector/matrix-matrix products over them.
//!
//! Activations are quantized per row to the block format ggml pairs with each weight type
//! (Q8_0, Q8_1 or Q8_K), then integer dot products run block by block. Kernels are picked at run
//! time: AVX2 where the CPU has it, else the portable scalar code; both follow the canonical
//! arithmetic written down in [`scalar`], so they give the same bits ([`with_kernels`] runs one
//! set on purpose). f32 checkpoints (the encoder's) multiply through [`LinearF32`] instead, which
//! keeps its activations in f32.

pub mod half;
mod linear_f32;
pub mod scalar;
mod simd;
pub mod simd_f16;
mod types;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_multi;

pub use linear_f32::LinearF32;
pub use simd::{Kernels, PORTABLE_KERNELS_ENV, with_kernels};
pub use types::GgmlType;

use crate::pool::Pool;

/// Activation block formats, one per weight type family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActType {
    /// Raw f32 (for f32/f16 weights).
    F32,
    /// 32 int8 with a scale (ggml's f16 value, kept as f32 so kernels skip the conversion).
    Q8_0,
    /// 32 int8 with a scale and the scaled sum (f16 values kept as f32).
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
            Self::Q8_0 => 36,
            Self::Q8_1 => 40,
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

    /// The same matrix re-quantized to Q4_0 (coarser than every other quantized type here), or
    /// `None` when its rows are not whole 32-element blocks. A cheating worker's saving, kept so
    /// the tests and benchmark can show that validators catch it.
    pub fn to_q4_0(&self) -> Option<QMatrix> {
        if !self.row_len.is_multiple_of(32) {
            return None;
        }
        let mut row = vec![0f32; self.row_len];
        let mut data = Vec::with_capacity(self.n_rows * self.row_len / 32 * 18);
        for r in 0..self.n_rows {
            self.dequantize_row(r, &mut row);
            scalar::quantize_q4_0(&row, &mut data);
        }
        Some(QMatrix { ty: GgmlType::Q4_0, row_len: self.row_len, n_rows: self.n_rows, data })
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

impl SyncPtr {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    #[inline]
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Quantized activations, one buffer per activation format, reused between calls.
#[derive(Debug, Default)]
pub struct ActBufs {
    bufs: Vec<(ActType, Vec<u8>)>,
}

impl ActBufs {
    fn prepare(&mut self, acts: &[ActType], x: &[f32], k: usize) {
        for (i, &act) in acts.iter().enumerate() {
            if acts[..i].contains(&act) {
                continue;
            }
            let slot = match self.bufs.iter().position(|(a, _)| *a == act) {
                Some(i) => i,
                None => {
                    self.bufs.push((act, Vec::new()));
                    self.bufs.len() - 1
                }
            };
            let buf = &mut self.bufs[slot].1;
            let rb = act.row_bytes(k);
            buf.resize(rb * (x.len() / k), 0);
            for (xr, br) in x.chunks_exact(k).zip(buf.chunks_exact_mut(rb)) {
                simd::quantize_act(act, xr, br);
            }
        }
    }

    fn get(&self, act: ActType) -> &[u8] {
        self.bufs.iter().find(|(a, _)| *a == act).map_or(&[], |(_, b)| b.as_slice())
    }
}

/// `out[t][r] = dot(w.row(r), x[t])` for `n_tok` rows of `x` (`w.row_len` each).
pub fn matmul(pool: &Pool, w: &QMatrix, x: &[f32], act: &mut ActBufs, out: &mut [f32]) {
    matmul_many(pool, &[w], x, act, &mut [out]);
}

/// Several products sharing one input (q/k/v, gate/up): the input is quantized once per format
/// and all rows run in one pool job.
pub fn matmul_many(pool: &Pool, ws: &[&QMatrix], x: &[f32], act: &mut ActBufs, outs: &mut [&mut [f32]]) {
    let Some(first) = ws.first() else { return };
    let k = first.row_len;
    let n_tok = x.len() / k;
    debug_assert!(ws.iter().zip(outs.iter()).all(|(w, o)| w.row_len == k && o.len() == n_tok * w.n_rows));
    assert!(ws.len() <= 8 && outs.len() == ws.len(), "at most 8 products per job");
    let mut kinds = [ActType::F32; 8];
    for (kd, w) in kinds.iter_mut().zip(ws) {
        *kd = ActType::for_weights(w.ty);
    }
    act.prepare(&kinds[..ws.len()], x, k);
    // Tasks: chunks of rows of each matrix in turn.
    let mut plan: [(usize, usize, usize); 8] = [(0, 0, 0); 8];
    let mut n_tasks = 0;
    for (i, w) in ws.iter().enumerate().take(8) {
        let chunk = if n_tok == 1 { w.n_rows.div_ceil(pool.n_threads() * 4).max(16) } else { 16 };
        plan[i] = (n_tasks, chunk, w.n_rows.div_ceil(chunk));
        n_tasks += plan[i].2;
    }
    let mut ptrs = [SyncPtr(std::ptr::null_mut()); 8];
    for (p, o) in ptrs.iter_mut().zip(outs.iter_mut()) {
        p.0 = o.as_mut_ptr();
    }
    let mut acts: [&[u8]; 8] = [&[]; 8];
    for (a, &kd) in acts.iter_mut().zip(&kinds[..ws.len()]) {
        *a = act.get(kd);
    }
    pool.run(n_tasks, &|task| {
        let Some(m) = (0..ws.len()).rev().find(|&m| plan[m].0 <= task) else { return };
        let (w, chunk) = (ws[m], plan[m].1);
        let r0 = (task - plan[m].0) * chunk;
        let r1 = (r0 + chunk).min(w.n_rows);
        rows_times_acts(w, acts[m], k, n_tok, r0..r1, ptrs[m]);
    });
}

/// Rows `rows` of `w` times every activation row, into `out` (`n_tok × w.n_rows`).
fn rows_times_acts(
    w: &QMatrix,
    act: &[u8],
    k: usize,
    n_tok: usize,
    rows: std::ops::Range<usize>,
    out: SyncPtr,
) {
    let arb = ActType::for_weights(w.ty).row_bytes(k);
    let n_rows = w.n_rows;
    let row_act = |t: usize| &act[t * arb..(t + 1) * arb];
    let mut t = 0;
    if simd::has_x4(w.ty) {
        while t + 4 <= n_tok {
            let a4 = [row_act(t), row_act(t + 1), row_act(t + 2), row_act(t + 3)];
            for r in rows.clone() {
                let Some(v) = simd::vec_dot_x4(w.ty, w.row(r), a4, k) else { break };
                for (j, &vj) in v.iter().enumerate() {
                    // SAFETY: (t, r) pairs are disjoint across tasks and inside `out`.
                    unsafe { *out.0.add((t + j) * n_rows + r) = vj };
                }
            }
            t += 4;
        }
    }
    for t in t..n_tok {
        let a = row_act(t);
        let mut r = rows.start;
        if simd::has_r4(w.ty) {
            while r + 4 <= rows.end {
                let Some(v) =
                    simd::vec_dot_r4(w.ty, [w.row(r), w.row(r + 1), w.row(r + 2), w.row(r + 3)], a, k)
                else {
                    break;
                };
                for (j, &vj) in v.iter().enumerate() {
                    // SAFETY: (t, r) pairs are disjoint across tasks and inside `out`.
                    unsafe { *out.0.add(t * n_rows + r + j) = vj };
                }
                r += 4;
            }
        }
        for r in r..rows.end {
            let v = simd::vec_dot(w.ty, w.row(r), a, k);
            // SAFETY: (t, r) pairs are disjoint across tasks and inside `out`.
            unsafe { *out.0.add(t * n_rows + r) = v };
        }
    }
}

#[cfg(test)]
mod tests;
