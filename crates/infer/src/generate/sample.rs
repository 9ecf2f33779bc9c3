//! Token sampling: greedy, temperature, top-k, top-p, seeded.

/// Sampling options. `temperature == 0` means greedy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 picks the arg-max.
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p (1 = all).
    pub top_p: f32,
    /// Random seed.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0 }
    }
}

/// A seeded sampler with reusable scratch.
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    state: u64,
    cand: Vec<(f32, u32)>,
}

/// Index of the largest value (the first on ties), as llama.cpp's greedy sampler picks.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

impl Sampler {
    /// A sampler for `params`.
    pub fn new(params: SamplingParams) -> Self {
        Self { params, state: params.seed ^ 0x9e37_79b9_7f4a_7c15, cand: Vec::new() }
    }

    fn uniform(&mut self) -> f32 {
        // splitmix64
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Picks the next token from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let p = self.params;
        if p.temperature <= 0.0 || p.top_k == 1 {
            return argmax(logits);
        }
        self.cand.clear();
        self.cand.extend(logits.iter().enumerate().map(|(i, &l)| (l / p.temperature, i as u32)));
        let desc = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if p.top_k > 0 && p.top_k < self.cand.len() {
            self.cand.select_nth_unstable_by(p.top_k - 1, desc);
            self.cand.truncate(p.top_k);
        }
        self.cand.sort_unstable_by(desc);
        let max = self.cand[0].0;
        let mut sum = 0f32;
        for c in &mut self.cand {
            c.0 = (c.0 - max).exp();
            sum += c.0;
        }
        let mut keep = self.cand.len();
        if p.top_p < 1.0 {
            let mut cum = 0f32;
            for (i, c) in self.cand.iter().enumerate() {
                cum += c.0 / sum;
                if cum >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        let total: f32 = self.cand[..keep].iter().map(|c| c.0).sum();
        let mut r = self.uniform() * total;
        for c in &self.cand[..keep] {
            r -= c.0;
            if r <= 0.0 {
                return c.1;
            }
        }
        self.cand[keep - 1].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_top_k_one_pick_the_max() {
        let logits = [0.1, 2.0, 1.9, -1.0];
        assert_eq!(Sampler::new(SamplingParams::default()).sample(&logits), 1);
        let p = SamplingParams { temperature: 1.0, top_k: 1, ..Default::default() };
        assert_eq!(Sampler::new(p).sample(&logits), 1);
    }

    #[test]
    fn same_seed_same_tokens_and_top_p_limits_choices() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.5).collect();
        let p = SamplingParams { temperature: 1.0, top_k: 0, top_p: 0.9, seed: 7 };
        let a: Vec<u32> = {
            let mut s = Sampler::new(p);
            (0..20).map(|_| s.sample(&logits)).collect()
        };
        let b: Vec<u32> = {
            let mut s = Sampler::new(p);
            (0..20).map(|_| s.sample(&logits)).collect()
        };
        assert_eq!(a, b);
        let narrow = SamplingParams { top_p: 0.01, ..p };
        let mut s = Sampler::new(narrow);
        // Only the first of the tied best tokens (value 3.0 at i = 6) survives a tiny top-p.
        assert!((0..20).all(|_| s.sample(&logits) == 6));
    }
}
