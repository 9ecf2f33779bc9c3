//! Portable reference kernels: dequantization, activation quantization and dot products, block
//! by block as ggml lays them out. Their arithmetic is the canonical one that every kernel set
//! (these, AVX2, any later AVX-512 or NEON set) follows bit for bit, so a result never depends
//! on the CPU that computed it:
//!
//! - a quantized block's products are exact integers, summed into 8 lanes: element `i` of each
//!   32 goes to lane `(i % 32) / 4` (four neighbours per lane, as `maddubs`+`madd`, VNNI's
//!   `dpbusd` and NEON's `sdot` group them); K-quant sub-block scales multiply inside the lane;
//! - once per block, each lane is scaled into an f32 lane accumulator by one fused multiply-add
//!   (`acc = d·lane + acc`, `d` the weight scale times the activation scale, one f32 product);
//! - the 8 f32 lanes are reduced by [`reduce_lanes`]'s fixed tree; Q4_1's and Q4_K's minimum
//!   terms are a separate f32 sum, block by block, of one rounded product each (`+= m·s`, not
//!   fused: ggml's order, which keeps the AVX2 results and llama.cpp parity as they were), added
//!   (subtracted) last;
//! - f32 and f16 dot products ([`dot_f32_by`]) put element `i` in lane `i % 8` by fused
//!   multiply-adds, reduce with the same tree and fuse the last `n % 8` in order.
//!
//! `f32::mul_add` is one instruction with FMA (the build targets the host CPU) and exact in
//! software elsewhere, so the scalar code computes the same bits on every machine.

use super::half::{f16_to_f32, f32_to_f16};
use super::{ActType, GgmlType};

#[inline]
fn h(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

#[inline]
fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Scale and minimum of sub-block `j` of a Q4_K block's 12 packed scale bytes.
#[inline]
pub fn q4k_scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Dequantizes one row of `dst.len()` elements.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    match ty {
        GgmlType::F32 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q8_0 => {
            for (out, b) in dst.chunks_exact_mut(32).zip(src.chunks_exact(ty.block_bytes())) {
                let mut q = [0i32; 32];
                let (d, m) = small_block_ints(ty, b, &mut q);
                for (o, &v) in out.iter_mut().zip(&q) {
                    *o = d * v as f32 + m;
                }
            }
        }
        GgmlType::Q4K => {
            for (out, b) in dst.chunks_exact_mut(256).zip(src.chunks_exact(144)) {
                let (d, dmin) = (h(b, 0), h(b, 2));
                let (scales, qs) = (&b[4..16], &b[16..144]);
                for j in 0..8 {
                    let (sc, m) = q4k_scale_min(j, scales);
                    let (d1, m1) = (d * f32::from(sc), dmin * f32::from(m));
                    let q = &qs[32 * (j / 2)..32 * (j / 2) + 32];
                    for l in 0..32 {
                        let nib = if j % 2 == 0 { q[l] & 0xf } else { q[l] >> 4 };
                        out[32 * j + l] = d1 * f32::from(nib) - m1;
                    }
                }
            }
        }
        GgmlType::Q6K => {
            for (out, b) in dst.chunks_exact_mut(256).zip(src.chunks_exact(210)) {
                let mut q = [0i32; 256];
                q6k_ints(b, &mut q);
                let d = h(b, 208);
                for (i, o) in out.iter_mut().enumerate() {
                    *o = d * f32::from(b[192 + i / 16] as i8) * q[i] as f32;
                }
            }
        }
    }
}

/// Integer values of a 32-element block and its (scale, offset): x = d * q + m.
fn small_block_ints(ty: GgmlType, b: &[u8], q: &mut [i32; 32]) -> (f32, f32) {
    match ty {
        GgmlType::Q4_0 => {
            for l in 0..16 {
                q[l] = i32::from(b[2 + l] & 0xf) - 8;
                q[l + 16] = i32::from(b[2 + l] >> 4) - 8;
            }
            (h(b, 0), 0.0)
        }
        GgmlType::Q4_1 => {
            for l in 0..16 {
                q[l] = i32::from(b[4 + l] & 0xf);
                q[l + 16] = i32::from(b[4 + l] >> 4);
            }
            (h(b, 0), h(b, 2))
        }
        GgmlType::Q5_0 => {
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            for l in 0..16 {
                let hi0 = ((qh >> l) & 1) << 4;
                let hi1 = ((qh >> (l + 16)) & 1) << 4;
                q[l] = (u32::from(b[6 + l] & 0xf) | hi0) as i32 - 16;
                q[l + 16] = (u32::from(b[6 + l] >> 4) | hi1) as i32 - 16;
            }
            (h(b, 0), 0.0)
        }
        _ => {
            for l in 0..32 {
                q[l] = i32::from(b[2 + l] as i8);
            }
            (h(b, 0), 0.0)
        }
    }
}

/// The 256 signed 6-bit values of a Q6_K block.
pub fn q6k_ints(b: &[u8], q: &mut [i32; 256]) {
    let (ql, qh) = (&b[0..128], &b[128..192]);
    for n in 0..2 {
        let (ql, qh, y) = (&ql[64 * n..], &qh[32 * n..], &mut q[128 * n..]);
        for l in 0..32 {
            y[l] = i32::from((ql[l] & 0xf) | ((qh[l] & 3) << 4)) - 32;
            y[l + 32] = i32::from((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
            y[l + 64] = i32::from((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            y[l + 96] = i32::from((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        }
    }
}

/// Quantizes weights `x` (a multiple of 32 long) to Q4_0 blocks appended to `out`, as ggml's
/// reference quantizer does: per block `d = m / −8` for the value `m` of largest magnitude, and
/// `q = min(15, ⌊x/d + 8.5⌋)`.
pub fn quantize_q4_0(x: &[f32], out: &mut Vec<u8>) {
    for block in x.chunks_exact(32) {
        let m = block.iter().copied().fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
        let d = m / -8.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend(super::half::f32_to_f16(d).to_le_bytes());
        let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
        out.extend((0..16).map(|l| q(block[l]) | (q(block[l + 16]) << 4)));
    }
}

/// Quantizes activations `x` into `out` in the format `act` (ggml's rounding).
pub fn quantize_act(act: ActType, x: &[f32], out: &mut [u8]) {
    match act {
        ActType::F32 => {
            for (c, v) in out.chunks_exact_mut(4).zip(x) {
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        ActType::Q8_0 | ActType::Q8_1 => {
            let bb = act.block_bytes();
            let qoff = if act == ActType::Q8_0 { 4 } else { 8 };
            for (xb, ob) in x.chunks_exact(32).zip(out.chunks_exact_mut(bb)) {
                let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
                let mut sum = 0i32;
                for (o, &v) in ob[qoff..].iter_mut().zip(xb) {
                    let q = (v * id).round_ties_even() as i32;
                    sum += q;
                    *o = q as i8 as u8;
                }
                // ggml stores these as f16; keep exactly those values, as f32.
                ob[0..4].copy_from_slice(&f16_to_f32(f32_to_f16(d)).to_le_bytes());
                if act == ActType::Q8_1 {
                    ob[4..8].copy_from_slice(&f16_to_f32(f32_to_f16(d * sum as f32)).to_le_bytes());
                }
            }
        }
        ActType::Q8K => {
            for (xb, ob) in x.chunks_exact(256).zip(out.chunks_exact_mut(292)) {
                let (mut amax, mut max) = (0f32, 0f32);
                for &v in xb {
                    if v.abs() > amax {
                        amax = v.abs();
                        max = v;
                    }
                }
                ob.fill(0);
                if amax == 0.0 {
                    continue;
                }
                let iscale = -127.0 / max;
                for (j, &v) in xb.iter().enumerate() {
                    ob[4 + j] = ((iscale * v).round_ties_even() as i32).min(127) as i8 as u8;
                }
                for g in 0..16 {
                    let s: i32 = ob[4 + 16 * g..4 + 16 * g + 16].iter().map(|&q| i32::from(q as i8)).sum();
                    ob[260 + 2 * g..262 + 2 * g].copy_from_slice(&(s as i16).to_le_bytes());
                }
                ob[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
            }
        }
    }
}

/// Dot product of one weight row with one quantized activation row of `n` elements, in the
/// canonical order (see the module documentation): what every kernel set computes, bit for bit.
pub fn vec_dot(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> f32 {
    match ty {
        GgmlType::F32 => dot_f32_by(n, |i| (f32_at(w, 4 * i), f32_at(a, 4 * i))),
        GgmlType::F16 => dot_f32_by(n, |i| (h(w, 2 * i), f32_at(a, 4 * i))),
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 | GgmlType::Q4_1 => {
            let (ab, aoff) = if ty == GgmlType::Q4_1 { (40, 8) } else { (36, 4) };
            let (mut acc, mut mins) = ([0f32; LANES], 0f32);
            let mut q = [0i32; 32];
            for (wb, xb) in w.chunks_exact(ty.block_bytes()).zip(a.chunks_exact(ab)).take(n / 32) {
                let (d, m) = small_block_ints(ty, wb, &mut q);
                let mut p = [0i32; LANES];
                lane_products(&mut p, &q, &xb[aoff..aoff + 32], 1);
                fma_lanes(&mut acc, d * f32_at(xb, 0), &p);
                if ty == GgmlType::Q4_1 {
                    mins += m * f32_at(xb, 4);
                }
            }
            reduce_lanes(acc) + mins
        }
        GgmlType::Q4K => {
            let (mut acc, mut acc_m) = ([0f32; LANES], 0f32);
            let mut q = [0i32; 32];
            for (wb, xb) in w.chunks_exact(144).zip(a.chunks_exact(292)).take(n / 256) {
                let dy = f32_at(xb, 0);
                let (d, dmin) = (h(wb, 0) * dy, h(wb, 2) * dy);
                let bsum = |g: usize| i32::from(i16::from_le_bytes([xb[260 + 2 * g], xb[261 + 2 * g]]));
                let (mut p, mut sum_m) = ([0i32; LANES], 0i32);
                for j in 0..8 {
                    let (sc, m) = q4k_scale_min(j, &wb[4..16]);
                    let qs = &wb[16 + 32 * (j / 2)..][..32];
                    for (v, &b) in q.iter_mut().zip(qs) {
                        *v = i32::from(if j % 2 == 0 { b & 0xf } else { b >> 4 });
                    }
                    lane_products(&mut p, &q, &xb[4 + 32 * j..][..32], i32::from(sc));
                    sum_m += i32::from(m) * (bsum(2 * j) + bsum(2 * j + 1));
                }
                fma_lanes(&mut acc, d, &p);
                acc_m += dmin * sum_m as f32;
            }
            reduce_lanes(acc) - acc_m
        }
        GgmlType::Q6K => {
            let mut acc = [0f32; LANES];
            let mut q = [0i32; 256];
            for (wb, xb) in w.chunks_exact(210).zip(a.chunks_exact(292)).take(n / 256) {
                q6k_ints(wb, &mut q);
                let mut p = [0i32; LANES];
                for g in 0..16 {
                    let (qg, yg) = (&q[16 * g..][..16], &xb[4 + 16 * g..][..16]);
                    lane_products_16(&mut p, g % 2, qg, yg, i32::from(wb[192 + g] as i8));
                }
                fma_lanes(&mut acc, h(wb, 208) * f32_at(xb, 0), &p);
            }
            reduce_lanes(acc)
        }
    }
}

/// Lanes of the canonical accumulator.
pub const LANES: usize = 8;

/// The canonical reduction of eight lanes, `((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7))`: adding the
/// two halves of an AVX2 register, then the halves of that half, then the last two, written out
/// so every kernel set reduces in this one order.
#[inline]
pub fn reduce_lanes(a: [f32; LANES]) -> f32 {
    let s = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    (s[0] + s[2]) + (s[1] + s[3])
}

/// The canonical f32 dot product of `n` pairs `pair(i)`: element `i` of the first `n − n % 8`
/// goes to lane `i % 8` by a fused multiply-add, the lanes are reduced by [`reduce_lanes`], and
/// the last `n % 8` are fused into the sum in order.
#[inline]
pub fn dot_f32_by(n: usize, pair: impl Fn(usize) -> (f32, f32)) -> f32 {
    let body = n - n % LANES;
    let mut acc = [0f32; LANES];
    for i in (0..body).step_by(LANES) {
        for (l, a) in acc.iter_mut().enumerate() {
            let (x, y) = pair(i + l);
            *a = x.mul_add(y, *a);
        }
    }
    let mut sum = reduce_lanes(acc);
    for i in body..n {
        let (x, y) = pair(i);
        sum = x.mul_add(y, sum);
    }
    sum
}

/// Adds `scale × Σ q·y` of a 32-element group into the lane partials: elements `4l..4l+4` go
/// to lane `l` (exact integers, so their order inside a lane does not matter).
#[inline]
fn lane_products(p: &mut [i32; LANES], q: &[i32], y: &[u8], scale: i32) {
    for (l, pl) in p.iter_mut().enumerate() {
        let s: i32 = (0..4).map(|e| q[4 * l + e] * i32::from(y[4 * l + e] as i8)).sum();
        *pl += scale * s;
    }
}

/// [`lane_products`] for the low (`half` 0) or high 16 elements of a group.
#[inline]
fn lane_products_16(p: &mut [i32; LANES], half: usize, q: &[i32], y: &[u8], scale: i32) {
    for (l, pl) in p[4 * half..4 * half + 4].iter_mut().enumerate() {
        let s: i32 = (0..4).map(|e| q[4 * l + e] * i32::from(y[4 * l + e] as i8)).sum();
        *pl += scale * s;
    }
}

/// `acc[l] = d · p[l] + acc[l]`, fused, lane by lane.
#[inline]
fn fma_lanes(acc: &mut [f32; LANES], d: f32, p: &[i32; LANES]) {
    for (a, &v) in acc.iter_mut().zip(p) {
        *a = d.mul_add(v as f32, *a);
    }
}
