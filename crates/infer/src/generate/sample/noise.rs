//! The sampling noise of the verifiable-sampling rule (see [`super::sample`]): a counter-based
//! hash of (seed, step, token) turned into a standard Gumbel variate, and the `exp` the nucleus
//! uses, computed with IEEE-754 basic operations (`+ − × ÷`, exact bit moves) in a fixed order
//! only. No platform `ln`/`exp` is called, so every CPU and compiler gives the same bits.

/// The golden-ratio increment of splitmix64.
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64's output for state `z`: one bijective 64-bit mix.
pub(super) fn mix(z: u64) -> u64 {
    let mut z = z.wrapping_add(GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key of output step `step` of a generation seeded with `seed`.
pub(super) fn step_key(seed: u64, step: u64) -> u64 {
    mix(mix(seed) ^ step)
}

/// The 52 random bits of token `token` at the step whose key is `key`.
pub(super) fn token_bits(key: u64, token: u32) -> u64 {
    mix(key ^ u64::from(token)) >> 12
}

/// The Gumbel noise of `bits` (from [`token_bits`]): `−ln(−ln u)` with `u = (bits + ½) · 2⁻⁵²`
/// strictly inside (0, 1), so the result is finite. Non-decreasing in `bits`.
pub(super) fn gumbel_of_bits(bits: u64) -> f64 {
    let u = (bits as f64 + 0.5) * (1.0 / (1u64 << 52) as f64);
    -ln(-ln(u))
}

/// The Gumbel noise of token `token` at the step whose key is `key`.
pub(super) fn gumbel(key: u64, token: u32) -> f64 {
    gumbel_of_bits(token_bits(key, token))
}

/// Bits at or below this (u ≤ 0.98) give noise of at most [`skip_gumbel`].
pub(super) const SKIP_BITS: u64 = (0.98 * (1u64 << 52) as f64) as u64;

/// An upper bound of the noise of any bits up to [`SKIP_BITS`] (about 3.90), with a margin far
/// above the rounding of [`ln`], so skipping a token on it never changes a draw.
pub(super) fn skip_gumbel() -> f64 {
    gumbel_of_bits(SKIP_BITS) + 1e-9
}

const LN2_HI: f64 = 6.931_471_803_691_238e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;

/// Natural logarithm of a positive normal `x`: `x = m·2^e` with `m` in [√½, √2), then
/// `ln m = 2·atanh(s)`, `s = (m − 1)/(m + 1)`, by its series to `s²³` (|s| ≤ 0.172, so the
/// truncation is below 2⁻⁵⁵). Within a few ulps of the true value, and the same bits everywhere.
pub(super) fn ln(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return if x == 0.0 { f64::NEG_INFINITY } else { f64::NAN };
    }
    if x.is_infinite() {
        return x;
    }
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let s2 = s * s;
    // 1 + s²/3 + s⁴/5 + … + s²²/23, Horner from the top.
    let mut p = 1.0 / 23.0;
    for k in (0..11).rev() {
        p = p * s2 + 1.0 / f64::from(2 * k + 1);
    }
    let e = e as f64;
    e * LN2_HI + (e * LN2_LO + 2.0 * s * p)
}

/// `e^x` for `x ≤ 0` (the nucleus weights `exp((l − l_max)/T)`): 0 below −700, else
/// `2^k · e^r` with `k = round(x/ln 2)`, `|r| ≤ ½ ln 2`, and `e^r` by its Taylor series to `r¹⁴`.
pub(super) fn exp_neg(x: f64) -> f64 {
    if x.is_nan() || x < -700.0 {
        return 0.0;
    }
    let x = x.min(0.0);
    let k = (x * std::f64::consts::LOG2_E).round();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0;
    for n in (1..=14).rev() {
        p = 1.0 + p * r / f64::from(n);
    }
    // k ≥ −1010 here, so 2^k is a normal number.
    let scale = f64::from_bits(((k as i64 + 1023) as u64) << 52);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_and_exp_agree_with_the_platform_to_a_few_ulps() {
        for &x in
            &[1e-16, 1.1e-16, 1e-9, 0.001, 0.3, 0.5, 0.7072, 0.999_999, 1.0 - 1e-16, 1.0, 2.0, 36.7, 1e300]
        {
            let (ours, std) = (ln(x), f64::ln(x));
            assert!(
                (ours - std).abs() <= 4.0 * f64::EPSILON * std.abs().max(1e-300),
                "ln {x}: {ours} vs {std}"
            );
        }
        for i in 0..2000 {
            let x = -f64::from(i) * 0.35;
            let (ours, std) = (exp_neg(x), f64::exp(x));
            assert!((ours - std).abs() <= 4.0 * f64::EPSILON * std, "exp {x}: {ours} vs {std}");
        }
        assert_eq!(exp_neg(-800.0), 0.0);
        assert_eq!(exp_neg(0.0), 1.0);
    }

    #[test]
    fn gumbel_noise_is_finite_and_standard() {
        let key = step_key(42, 3);
        let n = 200_000;
        let g: Vec<f64> = (0..n).map(|j| gumbel(key, j)).collect();
        assert!(g.iter().all(|v| v.is_finite()));
        let mean = g.iter().sum::<f64>() / f64::from(n);
        let var = g.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / f64::from(n);
        // A standard Gumbel has mean γ ≈ 0.5772 and variance π²/6 ≈ 1.6449.
        assert!((mean - 0.5772).abs() < 0.01, "mean {mean}");
        assert!((var - 1.6449).abs() < 0.03, "variance {var}");
        assert_ne!(step_key(42, 3), step_key(42, 4));
        assert_ne!(step_key(42, 3), step_key(43, 3));
        assert!((skip_gumbel() - 3.902).abs() < 1e-3, "{}", skip_gumbel());
    }
}
