//! Kernel tests: quantized dot products against float dot products of the dequantized rows,
//! and the dispatched (SIMD) kernels against the scalar reference.

use super::*;

/// Deterministic xorshift stream for test data.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub(super) fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u32
    }
    pub(super) fn f32(&mut self) -> f32 {
        self.next_u32() as f32 / u32::MAX as f32 * 2.0 - 1.0
    }
}

const ALL: [GgmlType; 8] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    GgmlType::Q4K,
    GgmlType::Q6K,
];

/// Random but well-formed blocks: small f16 scales, arbitrary quant bytes.
pub(crate) fn random_row(ty: GgmlType, n: usize, rng: &mut Rng) -> Vec<u8> {
    let mut b: Vec<u8> = (0..ty.row_bytes(n).unwrap_or(0)).map(|_| rng.next_u32() as u8).collect();
    let bb = ty.block_bytes();
    let scale = |rng: &mut Rng| half::f32_to_f16(0.001 + 0.01 * rng.f32().abs()).to_le_bytes();
    for blk in b.chunks_exact_mut(bb) {
        match ty {
            GgmlType::F32 => blk.copy_from_slice(&rng.f32().to_le_bytes()),
            GgmlType::F16 => blk.copy_from_slice(&half::f32_to_f16(rng.f32()).to_le_bytes()),
            GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => blk[0..2].copy_from_slice(&scale(rng)),
            GgmlType::Q4_1 | GgmlType::Q4K => {
                blk[0..2].copy_from_slice(&scale(rng));
                blk[2..4].copy_from_slice(&scale(rng));
            }
            GgmlType::Q6K => blk[208..210].copy_from_slice(&scale(rng)),
        }
    }
    b
}

#[test]
fn quantized_dots_match_float_dots_of_dequantized_rows() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let n = 512;
    for ty in ALL {
        let w = random_row(ty, n, &mut rng);
        let x: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
        let mut wf = vec![0f32; n];
        scalar::dequantize_row(ty, &w, &mut wf);
        let exact: f32 = wf.iter().zip(&x).map(|(a, b)| a * b).sum();
        let mut act = Vec::new();
        quantize_rows(ty, &x, n, &mut act);
        let got = scalar::vec_dot(ty, &w, &act, n);
        let norm: f32 = wf.iter().map(|v| v.abs()).sum::<f32>() / 100.0;
        assert!((got - exact).abs() <= norm + 1e-4, "{ty:?}: {got} vs {exact}");
    }
}

/// Row lengths that exercise one block, odd block counts and (for f32/f16) every tail length.
fn awkward_lengths(ty: GgmlType) -> Vec<usize> {
    match ty {
        GgmlType::F32 | GgmlType::F16 => vec![1, 3, 7, 8, 9, 15, 17, 31, 64, 100, 257, 1000],
        _ => [1usize, 2, 3, 5, 7, 13, 33].iter().map(|b| b * ty.block_elems()).collect(),
    }
}

/// Activations with magnitudes from 1e-3 to 1e3 (block scales far apart, as in real rows).
fn random_acts(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.f32() * 10f32.powi((rng.next_u32() % 7) as i32 - 3)).collect()
}

/// The canonical arithmetic: the dispatched (SIMD) kernels give the scalar reference's bits.
#[test]
fn dispatched_kernels_equal_the_scalar_reference_bit_for_bit() {
    let mut rng = Rng(42);
    with_kernels(Kernels::Native, || {
        for ty in ALL {
            for n in awkward_lengths(ty) {
                for _ in 0..4 {
                    let w = random_row(ty, n, &mut rng);
                    let x = random_acts(n, &mut rng);
                    let act_ty = ActType::for_weights(ty);
                    let mut a_ref = vec![0u8; act_ty.row_bytes(n)];
                    scalar::quantize_act(act_ty, &x, &mut a_ref);
                    let mut a_simd = Vec::new();
                    quantize_rows(ty, &x, n, &mut a_simd);
                    assert_eq!(a_ref, a_simd, "{ty:?} activation quantization");
                    let want = scalar::vec_dot(ty, &w, &a_ref, n);
                    let got = vec_dot(ty, &w, &a_ref, n);
                    assert_eq!(got.to_bits(), want.to_bits(), "{ty:?} n={n}: simd {got} scalar {want}");
                }
            }
        }
    });
}

/// Q8_0 weights may hold −128 (ggml never writes it, a hostile file may): every kernel still
/// multiplies exactly.
#[test]
fn q8_0_weights_of_minus_128_multiply_exactly_in_every_kernel() {
    let n = 64;
    let mut w = vec![0u8; GgmlType::Q8_0.row_bytes(n).unwrap_or(0)];
    for blk in w.chunks_exact_mut(34) {
        blk[0..2].copy_from_slice(&half::f32_to_f16(0.5).to_le_bytes());
        blk[2..].fill(0x80);
    }
    let x: Vec<f32> = (0..n).map(|i| if i % 3 == 0 { -1.0 } else { 0.25 }).collect();
    let mut a = Vec::new();
    quantize_rows(GgmlType::Q8_0, &x, n, &mut a);
    let want = scalar::vec_dot(GgmlType::Q8_0, &w, &a, n);
    let mut wf = vec![0f32; n];
    scalar::dequantize_row(GgmlType::Q8_0, &w, &mut wf);
    let exact: f32 = wf.iter().zip(&x).map(|(p, q)| p * q).sum();
    assert!((want - exact).abs() < 0.05 * exact.abs(), "scalar {want} vs float {exact}");
    with_kernels(Kernels::Native, || {
        assert_eq!(vec_dot(GgmlType::Q8_0, &w, &a, n).to_bits(), want.to_bits());
        if let Some(got) = simd::vec_dot_r4(GgmlType::Q8_0, [&w, &w, &w, &w], &a, n) {
            assert_eq!(got.map(f32::to_bits), [want.to_bits(); 4], "four weight rows");
        }
        if let Some(got) = simd::vec_dot_x4(GgmlType::Q8_0, &w, [&a, &a, &a, &a], n) {
            assert_eq!(got.map(f32::to_bits), [want.to_bits(); 4], "four activation rows");
        }
    });
}

#[test]
fn four_row_kernels_equal_the_scalar_reference_bit_for_bit() {
    let mut rng = Rng(7);
    with_kernels(Kernels::Native, || {
        for ty in ALL {
            for n in awkward_lengths(ty) {
                let w = random_row(ty, n, &mut rng);
                let acts: Vec<Vec<u8>> = (0..4)
                    .map(|_| {
                        let mut a = Vec::new();
                        quantize_rows(ty, &random_acts(n, &mut rng), n, &mut a);
                        a
                    })
                    .collect();
                let Some(got) = simd::vec_dot_x4(ty, &w, [&acts[0], &acts[1], &acts[2], &acts[3]], n) else {
                    continue;
                };
                for k in 0..4 {
                    let want = scalar::vec_dot(ty, &w, &acts[k], n);
                    assert_eq!(
                        got[k].to_bits(),
                        want.to_bits(),
                        "{ty:?} n={n} row {k}: {} vs {want}",
                        got[k]
                    );
                }
            }
        }
    });
}

#[test]
fn four_weight_row_kernels_equal_the_scalar_reference_bit_for_bit() {
    let mut rng = Rng(11);
    with_kernels(Kernels::Native, || {
        for ty in ALL {
            for n in awkward_lengths(ty) {
                let rows: Vec<Vec<u8>> = (0..4).map(|_| random_row(ty, n, &mut rng)).collect();
                let mut a = Vec::new();
                quantize_rows(ty, &random_acts(n, &mut rng), n, &mut a);
                let Some(got) = simd::vec_dot_r4(ty, [&rows[0], &rows[1], &rows[2], &rows[3]], &a, n) else {
                    continue;
                };
                for k in 0..4 {
                    let want = scalar::vec_dot(ty, &rows[k], &a, n);
                    assert_eq!(got[k].to_bits(), want.to_bits(), "{ty:?} n={n} row {k}");
                }
            }
        }
    });
}

#[test]
fn q4_0_requantization_round_trips_within_one_step() {
    let mut rng = Rng(5);
    let x: Vec<f32> = (0..256).map(|_| rng.f32() * 2.0 - 1.0).collect();
    let mut q = Vec::new();
    scalar::quantize_q4_0(&x, &mut q);
    assert_eq!(q.len(), 256 / 32 * 18);
    let mut back = vec![0f32; 256];
    scalar::dequantize_row(GgmlType::Q4_0, &q, &mut back);
    for (block, got) in x.chunks(32).zip(back.chunks(32)) {
        let step = block.iter().fold(0f32, |m, v| m.max(v.abs())) / 8.0;
        for (a, b) in block.iter().zip(got) {
            // Half a step, or one at the clamped end opposite the block's largest value.
            assert!((a - b).abs() <= step + 1e-3, "{a} became {b} (step {step})");
        }
    }
}
