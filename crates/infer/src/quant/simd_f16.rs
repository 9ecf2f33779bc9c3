//! f16 vector helpers for attention over the f16 KV cache, following ggml's flash-attention
//! arithmetic (f16 query, f16 running output rounded at every step), in the canonical order of
//! `scalar::dot_f32_by` and with fused multiply-adds, so F16C and scalar code give the same bits.

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
    let n = a.len().min(b.len());
    super::scalar::dot_f32_by(n, |i| (f16_to_f32(a[i]), f16_to_f32(b[i])))
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
        *o = f32_to_f16(f16_to_f32(h).mul_add(v, f16_to_f32(*o)));
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
    pub(super) unsafe fn dot_f16(a: &[u16], b: &[u16]) -> f32 {
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
        let mut sum = crate::quant::x86::hsum(acc);
        for j in i..n {
            sum = f16_to_f32(a[j]).mul_add(f16_to_f32(b[j]), sum);
        }
        sum
    }

    /// One f32 to f16 bits with F16C (the rounding the vector kernels use).
    #[cfg(test)]
    #[target_feature(enable = "avx2,f16c,fma")]
    pub(super) unsafe fn to_f16(f: f32) -> u16 {
        _mm_extract_epi16::<0>(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(f))) as u16
    }

    #[target_feature(enable = "avx2,f16c,fma")]
    pub(super) unsafe fn mad_f16(y: &mut [u16], x: &[u16], v: f32) {
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
            y[j] = f32_to_f16(f16_to_f32(x[j]).mul_add(v, f16_to_f32(y[j])));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::tests::Rng;
    use crate::quant::{Kernels, with_kernels};

    /// f16 values from 2⁻²⁰ to 2¹⁰ in magnitude (subnormal halves included).
    fn random_halves(n: usize, rng: &mut Rng) -> Vec<u16> {
        (0..n).map(|_| f32_to_f16(rng.f32() * 2f32.powi((rng.next_u32() % 31) as i32 - 20))).collect()
    }

    /// Both kernel sets' (dot, mad) results for one input.
    fn both(a: &[u16], b: &[u16], v: f32) -> [(u32, Vec<u16>); 2] {
        [Kernels::Native, Kernels::Portable].map(|k| {
            with_kernels(k, || {
                let mut y = b.to_vec();
                mad_f16(&mut y, a, v);
                (dot_f16(a, b).to_bits(), y)
            })
        })
    }

    #[test]
    fn simd_and_portable_f16_kernels_agree_bit_for_bit() {
        let mut rng = Rng(3);
        for n in [1, 5, 7, 8, 9, 15, 16, 17, 63, 64, 65, 100, 128, 256, 259] {
            for _ in 0..8 {
                let (a, b) = (random_halves(n, &mut rng), random_halves(n, &mut rng));
                let v = rng.f32() * 4.0;
                let [native, portable] = both(&a, &b, v);
                assert_eq!(native.0, portable.0, "dot n={n}");
                assert_eq!(native.1, portable.1, "mad n={n}");
            }
        }
    }

    #[test]
    fn f32_to_f16_rounds_as_f16c_does() {
        #[cfg(target_arch = "x86_64")]
        if super::has_f16c() {
            // Every 4099th f32 bit pattern: normals, subnormal halves, overflow, both signs.
            let mut x = 0u32;
            while let Some(next) = x.checked_add(4099) {
                let f = f32::from_bits(x);
                if !f.is_nan() {
                    // SAFETY: F16C was detected.
                    let hw = unsafe { x86::to_f16(f) };
                    assert_eq!(f32_to_f16(f), hw, "{f:e} ({x:#x})");
                }
                x = next;
            }
        }
    }
}
