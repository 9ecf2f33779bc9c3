//! Run-time kernel selection: AVX2 kernels where the CPU has them, scalar otherwise. Both sets
//! follow one canonical arithmetic (see `scalar`), so the choice changes speed, never a bit.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use super::{ActType, GgmlType, scalar};

/// Environment variable that, when set to `1`, makes every kernel take its portable scalar
/// version even where AVX2 is present (a validator's or a test's check that they agree).
pub const PORTABLE_KERNELS_ENV: &str = "POLYLINK_PORTABLE_KERNELS";

/// A kernel set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// The SIMD kernels this CPU has (AVX2/FMA/F16C), whatever the environment says.
    Native,
    /// The portable scalar kernels.
    Portable,
}

/// The set forced by [`with_kernels`]: 0 none, else `1 + Kernels as u8`.
static FORCED: AtomicU8 = AtomicU8::new(0);
/// One forced scope at a time in a process.
static SCOPE: Mutex<()> = Mutex::new(());

/// Runs `f` with every kernel (on every pool thread) taken from `kernels`, for tests and
/// benchmarks that compare the sets in one process. Scopes are serialized; work outside a scope
/// running meanwhile also takes the forced set.
pub fn with_kernels<R>(kernels: Kernels, f: impl FnOnce() -> R) -> R {
    let _scope = SCOPE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            FORCED.store(0, Ordering::SeqCst);
        }
    }
    let _reset = Reset;
    FORCED.store(1 + kernels as u8, Ordering::SeqCst);
    f()
}

/// Whether the CPU has AVX2, FMA and F16C (detected once per process).
fn cpu_has_avx2() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
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

/// Whether [`PORTABLE_KERNELS_ENV`] asks for the scalar kernels (read once per process).
fn env_portable() -> bool {
    static PORTABLE: OnceLock<bool> = OnceLock::new();
    *PORTABLE.get_or_init(|| std::env::var(PORTABLE_KERNELS_ENV).is_ok_and(|v| v == "1"))
}

/// Whether the AVX2/FMA/F16C kernels run now.
#[inline]
pub(crate) fn has_avx2() -> bool {
    match FORCED.load(Ordering::Relaxed) {
        0 => cpu_has_avx2() && !env_portable(),
        1 => cpu_has_avx2(),
        _ => false,
    }
}

/// Quantizes one activation row.
#[inline]
pub(super) fn quantize_act(act: ActType, x: &[f32], out: &mut [u8]) {
    scalar::quantize_act(act, x, out);
}

/// Dot product of one weight row and one activation row.
#[inline]
pub(super) fn vec_dot(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> f32 {
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
pub(super) fn vec_dot_x4(ty: GgmlType, w: &[u8], a: [&[u8]; 4], n: usize) -> Option<[f32; 4]> {
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
pub(super) fn has_x4(ty: GgmlType) -> bool {
    has_avx2() && !matches!(ty, GgmlType::F32 | GgmlType::F16)
}

/// Four weight rows times one activation row, if a multi-row kernel exists for `ty` here.
#[inline]
pub(super) fn vec_dot_r4(ty: GgmlType, w: [&[u8]; 4], a: &[u8], n: usize) -> Option<[f32; 4]> {
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
pub(super) fn has_r4(ty: GgmlType) -> bool {
    has_avx2() && matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q8_0)
}
