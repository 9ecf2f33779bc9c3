//! f16 vector helpers for attention over the f16 KV cache, following ggml's flash-attention
//! arithmetic (f16 query, f16 running output rounded at every step).

use super::half::{f16_to_f32, f32_to_f16};

fn has_f16c() -> bool {
    super::simd::has_avx2()
}

/// Dot product of two f16 vectors, accumulated in f32.
#[inline]
pub fn dot_f16(a: &[u16], b: &[u16]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_f16c() {
        // SAFETY: the features were detected.
        return unsafe { x86::dot_f16(a, b) };
    }
    a.iter().zip(b).map(|(&x, &h)| f16_to_f32(x) * f16_to_f32(h)).sum()
}

/// `y = f16(y + x * v)` element-wise (ggml's `vec_mad_f16`).
#[inline]
pub fn mad_f16(y: &mut [u16], x: &[u16], v: f32) {
    #[cfg(target_arch = "x86_64")]
    if has_f16c() {
        // SAFETY: the features were detected.
        return unsafe { x86::mad_f16(y, x, v) };
    }
    for (o, &h) in y.iter_mut().zip(x) {
        *o = f32_to_f16(f16_to_f32(*o) + f16_to_f32(h) * v);
    }
}

/// `y = f16(y * v)` element-wise.
#[inline]
pub fn scale_f16(y: &mut [u16], v: f32) {
    for o in y.iter_mut() {
        *o = f32_to_f16(f16_to_f32(*o) * v);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{f16_to_f32, f32_to_f16};

    #[target_feature(enable = "avx2,f16c,fma")]
    pub unsafe fn dot_f16(a: &[u16], b: &[u16]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n bounds both loads.
            let (x, h) = unsafe {
                (_mm_loadu_si128(a.as_ptr().add(i).cast()), _mm_loadu_si128(b.as_ptr().add(i).cast()))
            };
            acc = _mm256_fmadd_ps(_mm256_cvtph_ps(x), _mm256_cvtph_ps(h), acc);
            i += 8;
        }
        let lo = _mm256_castps256_ps128(acc);
        let s = _mm_add_ps(lo, _mm256_extractf128_ps(acc, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let mut sum = _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
        for j in i..n {
            sum += f16_to_f32(a[j]) * f16_to_f32(b[j]);
        }
        sum
    }

    #[target_feature(enable = "avx2,f16c,fma")]
    pub unsafe fn mad_f16(y: &mut [u16], x: &[u16], v: f32) {
        let n = y.len().min(x.len());
        let vv = _mm256_set1_ps(v);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n bounds the loads and the store.
            unsafe {
                let p = y.as_mut_ptr().add(i);
                let yy = _mm256_cvtph_ps(_mm_loadu_si128(p.cast()));
                let xx = _mm256_cvtph_ps(_mm_loadu_si128(x.as_ptr().add(i).cast()));
                let r = _mm256_fmadd_ps(xx, vv, yy);
                _mm_storeu_si128(p.cast(), _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(r));
            }
            i += 8;
        }
        for j in i..n {
            y[j] = f32_to_f16(f16_to_f32(y[j]) + f16_to_f32(x[j]) * v);
        }
    }
}
