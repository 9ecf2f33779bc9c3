//! Run-time kernel selection: AVX2 kernels where the CPU has them, scalar otherwise.

use std::sync::OnceLock;

use super::{ActType, GgmlType, scalar};

/// Environment variable that, when set to `1`, makes every kernel take its portable scalar
/// version even where AVX2 is present: how the verifier's tolerance between SIMD paths is
/// measured on one machine.
pub const PORTABLE_KERNELS_ENV: &str = "POLYLINK_PORTABLE_KERNELS";

/// Whether the AVX2/FMA/F16C kernels run (detected once per process).
pub(crate) fn has_avx2() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        if std::env::var(PORTABLE_KERNELS_ENV).is_ok_and(|v| v == "1") {
            return false;
        }
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// Quantizes one activation row.
#[inline]
pub fn quantize_act(act: ActType, x: &[f32], out: &mut [u8]) {
    scalar::quantize_act(act, x, out);
}

/// Dot product of one weight row and one activation row.
#[inline]
pub fn vec_dot(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        let nb = n / ty.block_elems();
        let ab = ActType::for_weights(ty).block_bytes();
        assert!(w.len() >= nb * ty.block_bytes() && a.len() >= nb * ab);
        // SAFETY: AVX2/FMA/F16C were detected and the lengths were checked above.
        unsafe {
            match ty {
                GgmlType::Q4_0 => return super::x86::dot_q4_0(w, a, nb),
                GgmlType::Q4_1 => return super::x86::dot_q4_1(w, a, nb),
                GgmlType::Q5_0 => return super::x86::dot_q5_0(w, a, nb),
                GgmlType::Q8_0 => return super::x86::dot_q8_0(w, a, nb),
                GgmlType::Q4K => return super::x86::dot_q4k(w, a, nb),
                GgmlType::Q6K => return super::x86::dot_q6k(w, a, nb),
                GgmlType::F32 | GgmlType::F16 => {}
            }
        }
    }
    scalar::vec_dot(ty, w, a, n)
}

/// Four dot products of one weight row with four activation rows, if a multi-row kernel exists
/// for `ty` on this CPU.
#[inline]
pub fn vec_dot_x4(ty: GgmlType, w: &[u8], a: [&[u8]; 4], n: usize) -> Option<[f32; 4]> {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        use super::x86_multi as m;
        let nb = n / ty.block_elems();
        let ab = ActType::for_weights(ty).block_bytes();
        assert!(w.len() >= nb * ty.block_bytes() && a.iter().all(|r| r.len() >= nb * ab));
        // SAFETY: AVX2/FMA/F16C were detected and the lengths were checked above.
        unsafe {
            return match ty {
                GgmlType::Q4_0 => Some(m::dot_small_x4::<{ m::Q4_0 }>(w, a, nb)),
                GgmlType::Q4_1 => Some(m::dot_small_x4::<{ m::Q4_1 }>(w, a, nb)),
                GgmlType::Q5_0 => Some(m::dot_small_x4::<{ m::Q5_0 }>(w, a, nb)),
                GgmlType::Q8_0 => Some(m::dot_small_x4::<{ m::Q8_0 }>(w, a, nb)),
                GgmlType::Q4K => Some(m::dot_q4k_x4(w, a, nb)),
                GgmlType::Q6K => Some(m::dot_q6k_x4(w, a, nb)),
                GgmlType::F32 | GgmlType::F16 => None,
            };
        }
    }
    let _ = (ty, w, a, n);
    None
}

/// Whether [`vec_dot_x4`] has a kernel for `ty` here.
pub fn has_x4(ty: GgmlType) -> bool {
    has_avx2() && !matches!(ty, GgmlType::F32 | GgmlType::F16)
}

/// Four weight rows times one activation row, if a multi-row kernel exists for `ty` here.
#[inline]
pub fn vec_dot_r4(ty: GgmlType, w: [&[u8]; 4], a: &[u8], n: usize) -> Option<[f32; 4]> {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        use super::x86_multi as m;
        let nb = n / ty.block_elems();
        let ab = ActType::for_weights(ty).block_bytes();
        assert!(w.iter().all(|r| r.len() >= nb * ty.block_bytes()) && a.len() >= nb * ab);
        // SAFETY: AVX2/FMA/F16C were detected and the lengths were checked above.
        unsafe {
            return match ty {
                GgmlType::Q4_0 => Some(m::dot_small_r4::<{ m::Q4_0 }>(w, a, nb)),
                GgmlType::Q4_1 => Some(m::dot_small_r4::<{ m::Q4_1 }>(w, a, nb)),
                GgmlType::Q5_0 => Some(m::dot_small_r4::<{ m::Q5_0 }>(w, a, nb)),
                GgmlType::Q8_0 => Some(m::dot_small_r4::<{ m::Q8_0 }>(w, a, nb)),
                _ => None,
            };
        }
    }
    let _ = (ty, w, a, n);
    None
}

/// Whether [`vec_dot_r4`] has a kernel for `ty` here.
pub fn has_r4(ty: GgmlType) -> bool {
    has_avx2() && matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q8_0)
}
