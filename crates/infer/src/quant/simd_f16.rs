//! f32 × f16 vector helpers for attention over the f16 KV cache.

use super::half::f16_to_f32;

/// Dot product of f32 `a` with f16 `b`.
#[inline]
pub fn dot_f16(a: &[f32], b: &[u16]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("f16c")
        && std::arch::is_x86_feature_detected!("fma")
    {
        // SAFETY: the features were just detected.
        return unsafe { x86::dot_f16(a, b) };
    }
    a.iter().zip(b).map(|(&x, &h)| x * f16_to_f32(h)).sum()
}

/// `y += w * b` with f16 `b`.
#[inline]
pub fn axpy_f16(w: f32, b: &[u16], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("f16c")
        && std::arch::is_x86_feature_detected!("fma")
    {
        // SAFETY: the features were just detected.
        return unsafe { x86::axpy_f16(w, b, y) };
    }
    for (o, &h) in y.iter_mut().zip(b) {
        *o += w * f16_to_f32(h);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::f16_to_f32;

    #[target_feature(enable = "avx2,f16c,fma")]
    pub unsafe fn dot_f16(a: &[f32], b: &[u16]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n bounds both loads.
            let (x, h) =
                unsafe { (_mm256_loadu_ps(a.as_ptr().add(i)), _mm_loadu_si128(b.as_ptr().add(i).cast())) };
            acc = _mm256_fmadd_ps(x, _mm256_cvtph_ps(h), acc);
            i += 8;
        }
        let mut s = hsum(acc);
        for j in i..n {
            s += a[j] * f16_to_f32(b[j]);
        }
        s
    }

    #[target_feature(enable = "avx2,f16c,fma")]
    pub unsafe fn axpy_f16(w: f32, b: &[u16], y: &mut [f32]) {
        let n = y.len().min(b.len());
        let wv = _mm256_set1_ps(w);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n bounds the loads and the store.
            unsafe {
                let h = _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().add(i).cast()));
                let p = y.as_mut_ptr().add(i);
                _mm256_storeu_ps(p, _mm256_fmadd_ps(wv, h, _mm256_loadu_ps(p)));
            }
            i += 8;
        }
        for j in i..n {
            y[j] += w * f16_to_f32(b[j]);
        }
    }

    #[target_feature(enable = "avx2")]
    pub fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
}
