//! AVX2 dot products of quantized weight blocks with Q8 activation blocks (same block layouts
//! as ggml). Callers check the CPU features and the slice lengths (`nb` whole blocks each).
#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::scalar::q4k_scale_min;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees two readable bytes at `p`; F16C is enabled by the callers.
    unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from((p as *const u16).read_unaligned())))) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f32_at(p: *const u8) -> f32 {
    // SAFETY: four readable bytes at `p` (caller).
    unsafe { (p as *const f32).read_unaligned() }
}

/// The canonical reduction of the eight lanes ([`super::scalar::reduce_lanes`]'s order).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
}

/// 16 packed bytes → 32 nibbles: low nibbles first, then high nibbles.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: 16 readable bytes at `p` (caller).
    let qs = unsafe { _mm_loadu_si128(p.cast()) };
    _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(qs, 4), qs), _mm256_set1_epi8(0x0f))
}

/// Signed × signed 32-byte dot, as 8 i32 partial sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_i8(x: __m256i, y: __m256i) -> __m256i {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1))
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q4_0(w: &[u8], a: &[u8], nb: usize) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let (w, a) = (w.as_ptr(), a.as_ptr());
    for i in 0..nb {
        // SAFETY: block i lies inside both slices (caller checked nb).
        unsafe {
            let (wb, ab) = (w.add(i * 18), a.add(i * 36));
            let q = _mm256_sub_epi8(nibbles(wb.add(2)), _mm256_set1_epi8(8));
            let y = _mm256_loadu_si256(ab.add(4).cast());
            let d = _mm256_set1_ps(f16_at(wb) * f32_at(ab));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(q, y)), acc);
        }
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q4_1(w: &[u8], a: &[u8], nb: usize) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0f32;
    let (w, a) = (w.as_ptr(), a.as_ptr());
    let ones = _mm256_set1_epi16(1);
    for i in 0..nb {
        // SAFETY: block i lies inside both slices (caller checked nb).
        unsafe {
            let (wb, ab) = (w.add(i * 20), a.add(i * 40));
            mins += f16_at(wb.add(2)) * f32_at(ab.add(4));
            let q = nibbles(wb.add(4));
            let y = _mm256_loadu_si256(ab.add(8).cast());
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(q, y), ones);
            let d = _mm256_set1_ps(f16_at(wb) * f32_at(ab));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
        }
    }
    hsum(acc) + mins
}

/// 32 bits → 32 bytes of 0xff (bit set) or 0x00.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bits_to_bytes(bits: u32) -> __m256i {
    let shuf = _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0);
    let v = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), shuf);
    let mask = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(v, mask), mask)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q5_0(w: &[u8], a: &[u8], nb: usize) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let (w, a) = (w.as_ptr(), a.as_ptr());
    for i in 0..nb {
        // SAFETY: block i lies inside both slices (caller checked nb).
        unsafe {
            let (wb, ab) = (w.add(i * 22), a.add(i * 36));
            let qh = (wb.add(2) as *const u32).read_unaligned();
            // (nibble | bit4) - 16: OR 0xf0 where the fifth bit is clear.
            let hi = _mm256_andnot_si256(bits_to_bytes(qh), _mm256_set1_epi8(0xf0u8 as i8));
            let q = _mm256_or_si256(nibbles(wb.add(6)), hi);
            let y = _mm256_loadu_si256(ab.add(4).cast());
            let d = _mm256_set1_ps(f16_at(wb) * f32_at(ab));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(q, y)), acc);
        }
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q8_0(w: &[u8], a: &[u8], nb: usize) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let (w, a) = (w.as_ptr(), a.as_ptr());
    for i in 0..nb {
        // SAFETY: block i lies inside both slices (caller checked nb).
        unsafe {
            let (wb, ab) = (w.add(i * 34), a.add(i * 36));
            let q = _mm256_loadu_si256(wb.add(2).cast());
            let y = _mm256_loadu_si256(ab.add(4).cast());
            let d = _mm256_set1_ps(f16_at(wb) * f32_at(ab));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(q, y)), acc);
        }
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q4k(w: &[u8], a: &[u8], nb: usize) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = 0f32;
    let m4 = _mm256_set1_epi8(0x0f);
    for i in 0..nb {
        let (wb, ab) = (&w[i * 144..(i + 1) * 144], &a[i * 292..(i + 1) * 292]);
        let dy = f32::from_le_bytes([ab[0], ab[1], ab[2], ab[3]]);
        // SAFETY: two bytes at offsets 0 and 2 of a 144-byte block.
        let (d, dmin) = unsafe { (f16_at(wb.as_ptr()) * dy, f16_at(wb.as_ptr().add(2)) * dy) };
        let mut sc = [0i16; 8];
        let mut mn = [0i16; 16];
        for (j, s) in sc.iter_mut().enumerate() {
            let (scale, m) = q4k_scale_min(j, &wb[4..16]);
            *s = i16::from(scale);
            mn[2 * j] = i16::from(m);
            mn[2 * j + 1] = i16::from(m);
        }
        // SAFETY: 16 i16 minimums; the 16 partial sums lie at bytes 260..292 of the block.
        let summ = unsafe {
            let bsums = _mm256_loadu_si256(ab.as_ptr().add(260).cast());
            super::x86_multi::hsum_i32(_mm256_madd_epi16(bsums, _mm256_loadu_si256(mn.as_ptr().cast())))
        };
        acc_m += dmin * summ as f32;
        let mut sumi = _mm256_setzero_si256();
        for j in 0..4 {
            // SAFETY: 32 bytes at 16+32j of the weight block, 64 at 4+64j of the activation.
            unsafe {
                let q4 = _mm256_loadu_si256(wb.as_ptr().add(16 + 32 * j).cast());
                let lo = _mm256_and_si256(q4, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
                let y0 = _mm256_loadu_si256(ab.as_ptr().add(4 + 64 * j).cast());
                let y1 = _mm256_loadu_si256(ab.as_ptr().add(36 + 64 * j).cast());
                let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), _mm256_set1_epi16(sc[2 * j]));
                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), _mm256_set1_epi16(sc[2 * j + 1]));
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum(acc) - acc_m
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q6k(w: &[u8], a: &[u8], nb: usize) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let m4 = _mm256_set1_epi8(0x0f);
    let m2 = _mm256_set1_epi8(3);
    let m32 = _mm256_set1_epi8(32);
    for i in 0..nb {
        let (wb, ab) = (&w[i * 210..(i + 1) * 210], &a[i * 292..(i + 1) * 292]);
        let dy = f32::from_le_bytes([ab[0], ab[1], ab[2], ab[3]]);
        // SAFETY: two bytes at offset 208 of a 210-byte block.
        let d = unsafe { f16_at(wb.as_ptr().add(208)) } * dy;
        let mut sumi = _mm256_setzero_si256();
        for n in 0..2 {
            // SAFETY: offsets stay inside the 210-byte block and the 292-byte activation block.
            unsafe {
                let ql0 = _mm256_loadu_si256(wb.as_ptr().add(64 * n).cast());
                let ql1 = _mm256_loadu_si256(wb.as_ptr().add(64 * n + 32).cast());
                let qh = _mm256_loadu_si256(wb.as_ptr().add(128 + 32 * n).cast());
                let q = [
                    _mm256_or_si256(
                        _mm256_and_si256(ql0, m4),
                        _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(ql1, m4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4),
                    ),
                ];
                for (k, qk) in q.iter().enumerate() {
                    let y = _mm256_loadu_si256(ab.as_ptr().add(4 + 128 * n + 32 * k).cast());
                    let p = _mm256_sub_epi16(_mm256_maddubs_epi16(*qk, y), _mm256_maddubs_epi16(m32, y));
                    let s0 = i16::from(wb[192 + 8 * n + 2 * k] as i8);
                    let s1 = i16::from(wb[192 + 8 * n + 2 * k + 1] as i8);
                    let scales = _mm256_set_m128i(_mm_set1_epi16(s1), _mm_set1_epi16(s0));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scales));
                }
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum(acc)
}
