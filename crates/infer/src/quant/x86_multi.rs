//! AVX2 dot products of one weight row with four activation rows at once (prompt processing):
//! each weight block is unpacked once and used four times.
#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::scalar::q4k_scale_min;
use super::x86::hsum;

/// Type selectors for [`dot_small_x4`].
pub(super) const Q4_0: u8 = 0;
/// Q4_1 selector.
pub(super) const Q4_1: u8 = 1;
/// Q5_0 selector.
pub(super) const Q5_0: u8 = 2;
/// Q8_0 selector.
pub(super) const Q8_0: u8 = 3;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: two readable bytes at `p` (caller).
    unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from((p as *const u16).read_unaligned())))) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f32_at(p: *const u8) -> f32 {
    // SAFETY: four readable bytes at `p` (caller).
    unsafe { (p as *const f32).read_unaligned() }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: 16 readable bytes at `p` (caller).
    let qs = unsafe { _mm_loadu_si128(p.cast()) };
    _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(qs, 4), qs), _mm256_set1_epi8(0x0f))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bits_to_bytes(bits: u32) -> __m256i {
    let shuf = _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0);
    let v = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), shuf);
    let mask = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(v, mask), mask)
}

/// Four dot products of a 32-element-block row (type `TY`) with Q8_0/Q8_1 rows `a`.
/// `a[k]` must each hold `nb` activation blocks and `w` `nb` weight blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_small_x4<const TY: u8>(w: &[u8], a: [&[u8]; 4], nb: usize) -> [f32; 4] {
    let (wbb, abb, aq) = match TY {
        Q4_0 => (18, 36, 4),
        Q4_1 => (20, 40, 8),
        Q5_0 => (22, 36, 4),
        _ => (34, 36, 4),
    };
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut mins = [0f32; 4];
    let ones = _mm256_set1_epi16(1);
    let w = w.as_ptr();
    let ap = a.map(<[u8]>::as_ptr);
    for i in 0..nb {
        // SAFETY: block i lies inside `w` and every `a[k]` (caller).
        unsafe {
            let wb = w.add(i * wbb);
            let dw = f16_at(wb);
            let (q, unsigned) = match TY {
                Q4_0 => (_mm256_sub_epi8(nibbles(wb.add(2)), _mm256_set1_epi8(8)), false),
                Q4_1 => (nibbles(wb.add(4)), true),
                Q5_0 => {
                    let qh = (wb.add(2) as *const u32).read_unaligned();
                    let hi = _mm256_andnot_si256(bits_to_bytes(qh), _mm256_set1_epi8(0xf0u8 as i8));
                    (_mm256_or_si256(nibbles(wb.add(6)), hi), false)
                }
                _ => (_mm256_loadu_si256(wb.add(2).cast()), false),
            };
            let aq_abs = _mm256_sign_epi8(q, q);
            for k in 0..4 {
                let ab = ap[k].add(i * abb);
                let y = _mm256_loadu_si256(ab.add(aq).cast());
                let p16 = if unsigned {
                    _mm256_maddubs_epi16(q, y)
                } else {
                    _mm256_maddubs_epi16(aq_abs, _mm256_sign_epi8(y, q))
                };
                let p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
                acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * f32_at(ab)), p, acc[k]);
                if TY == Q4_1 {
                    mins[k] += f16_at(wb.add(2)) * f32_at(ab.add(4));
                }
            }
        }
    }
    [0, 1, 2, 3].map(|k| hsum(acc[k]) + mins[k])
}

/// Four Q4_K × Q8_K dot products.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q4k_x4(w: &[u8], a: [&[u8]; 4], nb: usize) -> [f32; 4] {
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut acc_m = [0f32; 4];
    let m4 = _mm256_set1_epi8(0x0f);
    for i in 0..nb {
        let wb = &w[i * 144..(i + 1) * 144];
        // SAFETY: bytes 0..4 of a 144-byte block.
        let (d, dmin) = unsafe { (f16_at(wb.as_ptr()), f16_at(wb.as_ptr().add(2))) };
        let mut sc = [0i16; 8];
        let mut mn = [0i16; 16];
        for j in 0..8 {
            let (s, m) = q4k_scale_min(j, &wb[4..16]);
            sc[j] = i16::from(s);
            mn[2 * j] = i16::from(m);
            mn[2 * j + 1] = i16::from(m);
        }
        // SAFETY: 16 i16 values.
        let mins = unsafe { _mm256_loadu_si256(mn.as_ptr().cast()) };
        let mut sumi = [_mm256_setzero_si256(); 4];
        for j in 0..4 {
            // SAFETY: 32 bytes at 16+32j of the weight block, 64 at 4+64j of each activation block.
            unsafe {
                let q4 = _mm256_loadu_si256(wb.as_ptr().add(16 + 32 * j).cast());
                let lo = _mm256_and_si256(q4, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
                let (s0, s1) = (_mm256_set1_epi16(sc[2 * j]), _mm256_set1_epi16(sc[2 * j + 1]));
                for k in 0..4 {
                    let ab = a[k].as_ptr().add(i * 292);
                    let y0 = _mm256_loadu_si256(ab.add(4 + 64 * j).cast());
                    let y1 = _mm256_loadu_si256(ab.add(36 + 64 * j).cast());
                    let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), s0);
                    let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), s1);
                    sumi[k] = _mm256_add_epi32(sumi[k], _mm256_add_epi32(p0, p1));
                }
            }
        }
        for k in 0..4 {
            let ab = &a[k][i * 292..(i + 1) * 292];
            let dy = f32::from_le_bytes([ab[0], ab[1], ab[2], ab[3]]);
            // SAFETY: the 16 partial sums lie at bytes 260..292 of the activation block.
            let bsums = unsafe { _mm256_loadu_si256(ab.as_ptr().add(260).cast()) };
            let summ = hsum_i32(_mm256_madd_epi16(bsums, mins));
            acc_m[k] += dmin * dy * summ as f32;
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(d * dy), _mm256_cvtepi32_ps(sumi[k]), acc[k]);
        }
    }
    [0, 1, 2, 3].map(|k| hsum(acc[k]) - acc_m[k])
}

/// Four Q6_K × Q8_K dot products.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q6k_x4(w: &[u8], a: [&[u8]; 4], nb: usize) -> [f32; 4] {
    let mut acc = [_mm256_setzero_ps(); 4];
    let (m4, m2, m32) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(3), _mm256_set1_epi8(32));
    for i in 0..nb {
        let wb = &w[i * 210..(i + 1) * 210];
        // SAFETY: bytes 208..210 of a 210-byte block.
        let d = unsafe { f16_at(wb.as_ptr().add(208)) };
        let mut sumi = [_mm256_setzero_si256(); 4];
        for n in 0..2 {
            // SAFETY: offsets stay inside the weight block and each 292-byte activation block.
            unsafe {
                let ql0 = _mm256_loadu_si256(wb.as_ptr().add(64 * n).cast());
                let ql1 = _mm256_loadu_si256(wb.as_ptr().add(64 * n + 32).cast());
                let qh = _mm256_loadu_si256(wb.as_ptr().add(128 + 32 * n).cast());
                let hi = |s: i32| -> __m256i {
                    let v = match s {
                        0 => qh,
                        2 => _mm256_srli_epi16(qh, 2),
                        4 => _mm256_srli_epi16(qh, 4),
                        _ => _mm256_srli_epi16(qh, 6),
                    };
                    _mm256_slli_epi16(_mm256_and_si256(v, m2), 4)
                };
                let q = [
                    _mm256_or_si256(_mm256_and_si256(ql0, m4), hi(0)),
                    _mm256_or_si256(_mm256_and_si256(ql1, m4), hi(2)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), hi(4)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), hi(6)),
                ];
                for (c, qc) in q.iter().enumerate() {
                    let s0 = i16::from(wb[192 + 8 * n + 2 * c] as i8);
                    let s1 = i16::from(wb[192 + 8 * n + 2 * c + 1] as i8);
                    let scales = _mm256_set_m128i(_mm_set1_epi16(s1), _mm_set1_epi16(s0));
                    for k in 0..4 {
                        let y = _mm256_loadu_si256(a[k].as_ptr().add(i * 292 + 4 + 128 * n + 32 * c).cast());
                        let p = _mm256_sub_epi16(_mm256_maddubs_epi16(*qc, y), _mm256_maddubs_epi16(m32, y));
                        sumi[k] = _mm256_add_epi32(sumi[k], _mm256_madd_epi16(p, scales));
                    }
                }
            }
        }
        for k in 0..4 {
            let ab = &a[k][i * 292..i * 292 + 4];
            let dy = f32::from_le_bytes([ab[0], ab[1], ab[2], ab[3]]);
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(d * dy), _mm256_cvtepi32_ps(sumi[k]), acc[k]);
        }
    }
    [0, 1, 2, 3].map(|k| hsum(acc[k]))
}

/// Four weight rows (type `TY`) times one Q8_0/Q8_1 row: four independent accumulator chains
/// for token-by-token decoding.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_small_r4<const TY: u8>(w: [&[u8]; 4], a: &[u8], nb: usize) -> [f32; 4] {
    let (wbb, abb, aq) = match TY {
        Q4_0 => (18, 36, 4),
        Q4_1 => (20, 40, 8),
        Q5_0 => (22, 36, 4),
        _ => (34, 36, 4),
    };
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut mins = [0f32; 4];
    let ones = _mm256_set1_epi16(1);
    let wp = w.map(<[u8]>::as_ptr);
    let a = a.as_ptr();
    for i in 0..nb {
        // SAFETY: block i lies inside every `w[k]` and `a` (caller).
        unsafe {
            let ab = a.add(i * abb);
            let y = _mm256_loadu_si256(ab.add(aq).cast());
            // |y| once per block; each signed row then needs one sign op: q*y = |y| * (q·sgn y).
            let y_abs = _mm256_sign_epi8(y, y);
            let d8 = f32_at(ab);
            for k in 0..4 {
                let wb = wp[k].add(i * wbb);
                let p16 = match TY {
                    Q4_1 => _mm256_maddubs_epi16(nibbles(wb.add(4)), y),
                    // Q8_0 may hold −128, which has no positive i8: |q| goes in as the u8 side.
                    Q8_0 => {
                        let q = _mm256_loadu_si256(wb.add(2).cast());
                        _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(y, q))
                    }
                    _ => {
                        let q = if TY == Q4_0 {
                            _mm256_sub_epi8(nibbles(wb.add(2)), _mm256_set1_epi8(8))
                        } else {
                            let qh = (wb.add(2) as *const u32).read_unaligned();
                            let hi = _mm256_andnot_si256(bits_to_bytes(qh), _mm256_set1_epi8(0xf0u8 as i8));
                            _mm256_or_si256(nibbles(wb.add(6)), hi)
                        };
                        _mm256_maddubs_epi16(y_abs, _mm256_sign_epi8(q, y))
                    }
                };
                let p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
                acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(wb) * d8), p, acc[k]);
                if TY == Q4_1 {
                    mins[k] += f16_at(wb.add(2)) * f32_at(ab.add(4));
                }
            }
        }
    }
    [0, 1, 2, 3].map(|k| hsum(acc[k]) + mins[k])
}
