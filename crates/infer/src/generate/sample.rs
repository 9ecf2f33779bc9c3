//! Token sampling by a verifiable rule: greedy, temperature, top-k, top-p, seeded.
//!
//! # The rule (a protocol rule: workers and validators apply it bit for bit)
//!
//! Output token `i` (0 for the first generated token) is a pure function of the task's seed,
//! `i`, the row of logits `l` that predicts it, and `(temperature T, top_k, top_p)`; no state
//! carries from one token to the next, so a validator that teacher-forces the answer can check
//! every token on its own, and a replay that resumes at step `i` draws what the first run drew.
//!
//! 1. **Greedy** (`T ≤ 0` or `top_k = 1`): the arg-max of `l`, the lowest id on ties.
//! 2. **Candidates**: every id, ordered by logit (descending) then id (ascending); with
//!    `0 < top_k < vocab` only the first `top_k` of them.
//! 3. **Nucleus** (`top_p < 1`): weights `w_j = exp((l_j − l_max)/T)` in f64 (our portable `exp`,
//!    0 below −700), summed in candidate order; keep the shortest prefix whose running sum
//!    reaches `top_p · Σw` (at least one candidate).
//! 4. **Noise**: `k_i = mix(mix(seed) ^ i)`, `b_j = mix(k_i ^ j)` with `mix` splitmix64's output
//!    function (`z += 0x9e3779b97f4a7c15`, then the two xor-shift-multiplies of splitmix64),
//!    `u_j = ((b_j >> 12) + ½) · 2⁻⁵²`, and `G_j = −ln(−ln u_j)` with our portable `ln`: a
//!    standard Gumbel variate per (seed, step, token), the same bits on every machine.
//! 5. **Draw** (Gumbel-max): the kept candidate with the largest `s_j = l_j/T + G_j` (f64, `l_j`
//!    widened from f32), the lowest id on ties. This samples exactly from the softmax at
//!    temperature `T` over the kept set.
//!
//! # Verification
//!
//! [`margin`] recomputes the draw on the validator's own row and says, in logits, how far a
//! claimed token falls short of being drawn: `T · (max_kept s − s_token)`, or for a token outside
//! the validator's kept set the larger of that and its logit gap to the last kept candidate. An
//! honest token scores 0 when the rows are bit-identical (the numerics rule) and at most about
//! the rows' largest difference otherwise; a token the rule would not have drawn scores the gap
//! between two Gumbel-perturbed scores, typically of order `T`. Greedy is the same test without
//! noise: `l_max − l_token`.

mod noise;

/// Sampling options. `temperature == 0` means greedy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 picks the arg-max.
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p (1 = all).
    pub top_p: f32,
    /// Random seed of the task: with the step index it keys every draw.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0 }
    }
}

impl SamplingParams {
    fn greedy(&self) -> bool {
        self.temperature.is_nan() || self.temperature <= 0.0 || self.top_k == 1
    }

    /// Whether top-p keeps every candidate (1 or more, or not a number).
    fn whole_nucleus(&self) -> bool {
        self.top_p.is_nan() || self.top_p >= 1.0
    }
}

/// A sampler for one generation: it counts the output steps and keeps scratch between them.
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    step: u64,
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
    /// A sampler for `params` whose next draw is output step 0.
    pub fn new(params: SamplingParams) -> Self {
        Self::at_step(params, 0)
    }

    /// A sampler whose next draw is output step `step` (a generation resumed after `step`
    /// tokens draws what the uninterrupted one would have).
    pub fn at_step(params: SamplingParams, step: u64) -> Self {
        Self { params, step, cand: Vec::new() }
    }

    /// The output step of the next draw.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Picks the next token from one row of logits (step `self.step()`, then counts it).
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let step = self.step;
        self.step += 1;
        if self.params.greedy() || logits.is_empty() {
            return argmax(logits);
        }
        let kept = kept(logits, &self.params, &mut self.cand);
        let key = noise::step_key(self.params.seed, step);
        best(logits, kept, &self.cand, self.params.temperature, key).1
    }
}

/// The draw of the rule for output step `step` from `logits` (what [`Sampler::sample`] returns
/// at that step).
pub fn draw(logits: &[f32], params: &SamplingParams, step: u64) -> u32 {
    Sampler::at_step(*params, step).sample(logits)
}

/// How far, in logits, `token` falls short of being the rule's draw at step `step` from
/// `logits`: 0 for the token drawn, more the less the rule could have drawn it (see the module
/// documentation); infinite for an id outside the row. Never negative.
pub fn margin(logits: &[f32], params: &SamplingParams, step: u64, token: u32) -> f32 {
    let Some(&lt) = logits.get(token as usize) else { return f32::INFINITY };
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if params.greedy() {
        return (max - lt).max(0.0);
    }
    let mut cand = Vec::new();
    let kept = kept(logits, params, &mut cand);
    let t = f64::from(params.temperature);
    let key = noise::step_key(params.seed, step);
    let (top, _) = best(logits, kept, &cand, params.temperature, key);
    let own = f64::from(lt) / t + noise::gumbel(key, token);
    let gap = (t * (top - own)) as f32;
    let outside = match kept {
        Kept::All => 0.0,
        Kept::First(n) => {
            let last = cand[n - 1].0;
            let inside = cand[..n].iter().any(|&(_, id)| id == token);
            if inside { 0.0 } else { (last - lt).max(0.0) }
        }
    };
    gap.max(outside).max(0.0)
}

/// Which candidates the rule keeps: every id, or the first `n` of `cand`.
#[derive(Debug, Clone, Copy)]
enum Kept {
    All,
    First(usize),
}

/// Steps 2 and 3 of the rule: the kept candidates (in `cand` when not all).
fn kept(logits: &[f32], p: &SamplingParams, cand: &mut Vec<(f32, u32)>) -> Kept {
    let top_k = if p.top_k > 0 && p.top_k < logits.len() { p.top_k } else { logits.len() };
    if top_k == logits.len() && p.whole_nucleus() {
        return Kept::All;
    }
    cand.clear();
    cand.extend(logits.iter().enumerate().map(|(i, &l)| (l, i as u32)));
    let desc = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if top_k < cand.len() {
        cand.select_nth_unstable_by(top_k - 1, desc);
        cand.truncate(top_k);
    }
    cand.sort_unstable_by(desc);
    if p.whole_nucleus() {
        return Kept::First(cand.len());
    }
    let (max, t) = (f64::from(cand[0].0), f64::from(p.temperature));
    let weight = |l: f32| noise::exp_neg((f64::from(l) - max) / t);
    let total: f64 = cand.iter().map(|&(l, _)| weight(l)).sum();
    let goal = f64::from(p.top_p.max(0.0)) * total;
    let mut sum = 0.0;
    for (n, &(l, _)) in cand.iter().enumerate() {
        sum += weight(l);
        if sum >= goal {
            return Kept::First(n + 1);
        }
    }
    Kept::First(cand.len())
}

/// Step 5 of the rule: the largest perturbed score among the kept candidates and its id.
///
/// Exact, but it skips most of the logarithms: once a best score `B` is known, a token whose
/// `l/T` lies more than [`noise::SKIP_GUMBEL`] below `B` can only win with a noise above that,
/// which needs its hash above [`noise::SKIP_BITS`]; a single integer comparison rules out the
/// rest (98% of them) without computing their noise.
fn best(logits: &[f32], kept: Kept, cand: &[(f32, u32)], temperature: f32, key: u64) -> (f64, u32) {
    let t = f64::from(temperature);
    let first = match kept {
        Kept::All => argmax(logits),
        Kept::First(n) => cand[..n].first().map_or(0, |c| c.1),
    };
    let start = logits.get(first as usize).map_or(f64::NEG_INFINITY, |&l| f64::from(l) / t);
    let mut top = (start + noise::gumbel(key, first), first);
    if top.0.is_nan() {
        top = (f64::NEG_INFINITY, u32::MAX);
    }
    let skip = noise::skip_gumbel();
    let mut consider = |l: f32, id: u32| {
        let base = f64::from(l) / t;
        let bits = noise::token_bits(key, id);
        if top.0 - base > skip && bits <= noise::SKIP_BITS {
            return;
        }
        let s = base + noise::gumbel_of_bits(bits);
        if s > top.0 || (s == top.0 && id < top.1) {
            top = (s, id);
        }
    };
    match kept {
        Kept::All => logits.iter().enumerate().for_each(|(i, &l)| consider(l, i as u32)),
        Kept::First(n) => cand[..n].iter().for_each(|&(l, id)| consider(l, id)),
    }
    if top.1 == u32::MAX {
        // Every score was NaN: fall back to the arg-max so a broken row still yields an id.
        return (f64::NEG_INFINITY, argmax(logits));
    }
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampled(temperature: f32, top_k: usize, top_p: f32, seed: u64) -> SamplingParams {
        SamplingParams { temperature, top_k, top_p, seed }
    }

    #[test]
    fn greedy_and_top_k_one_pick_the_max() {
        let logits = [0.1, 2.0, 1.9, -1.0];
        assert_eq!(Sampler::new(SamplingParams::default()).sample(&logits), 1);
        assert_eq!(Sampler::new(sampled(1.0, 1, 1.0, 0)).sample(&logits), 1);
        assert_eq!(margin(&logits, &SamplingParams::default(), 0, 2), 2.0 - 1.9);
        assert_eq!(margin(&logits, &SamplingParams::default(), 0, 9), f32::INFINITY);
    }

    #[test]
    fn each_draw_depends_only_on_seed_step_and_row() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.5).collect();
        let p = sampled(1.0, 0, 0.9, 7);
        let mut s = Sampler::new(p);
        let run: Vec<u32> = (0..40).map(|_| s.sample(&logits)).collect();
        // A sampler resumed at step 25 continues the same sequence, and each draw is the pure one.
        let mut resumed = Sampler::at_step(p, 25);
        assert!((25..40).all(|i| resumed.sample(&logits) == run[i]));
        assert!((0..40).all(|i| draw(&logits, &p, i as u64) == run[i]));
        assert!(run.windows(2).any(|w| w[0] != w[1]), "sampling must vary across steps: {run:?}");
        let other: Vec<u32> = (0..40).map(|i| draw(&logits, &sampled(1.0, 0, 0.9, 8), i)).collect();
        assert_ne!(run, other);
        // Only the first of the tied best tokens (value 3.0 at i = 6) survives a tiny top-p.
        assert!((0..20).all(|i| draw(&logits, &sampled(1.0, 0, 0.01, 7), i) == 6));
    }

    #[test]
    fn draws_follow_the_softmax_and_honour_top_k() {
        let logits = [2.0f32, 1.0, 0.0, -1.0];
        let p = sampled(1.0, 0, 1.0, 3);
        let n = 20_000;
        let mut counts = [0usize; 4];
        for i in 0..n {
            counts[draw(&logits, &p, i) as usize] += 1;
        }
        let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        for (j, &c) in counts.iter().enumerate() {
            let want = f64::from(logits[j]).exp() / z;
            let got = c as f64 / n as f64;
            assert!((got - want).abs() < 0.015, "token {j}: {got} vs {want}");
        }
        let k2 = sampled(1.0, 2, 1.0, 3);
        assert!((0..500).all(|i| draw(&logits, &k2, i) < 2));
    }

    #[test]
    fn the_drawn_token_has_margin_zero_and_others_do_not() {
        let logits: Vec<f32> = (0..300).map(|i| ((i * 37) % 101) as f32 * 0.05).collect();
        for p in [sampled(0.7, 0, 1.0, 1), sampled(1.3, 40, 1.0, 2), sampled(1.0, 0, 0.8, 3)] {
            let mut others = Vec::new();
            for step in 0..200 {
                let t = draw(&logits, &p, step);
                assert_eq!(margin(&logits, &p, step, t), 0.0, "{p:?} step {step}");
                others.push(margin(&logits, &p, step, (t + 1) % 300));
            }
            assert!(others.iter().all(|&m| m > 0.0), "{p:?}");
            // A token the rule did not draw almost never comes within a hundredth of a logit.
            assert!(others.iter().filter(|&&m| m < 0.01).count() <= 2, "{p:?}: {others:?}");
        }
        // A token outside top-k is as far as its logit is below the k-th.
        let p = sampled(1.0, 2, 1.0, 0);
        let low = [3.0f32, 2.5, 1.0, 0.0];
        assert!(margin(&low, &p, 0, 3) >= 2.5);
    }

    #[test]
    fn skipping_hopeless_tokens_never_changes_the_draw() {
        let logits: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 1009) as f32 / 60.0).collect();
        for t in [0.3f32, 1.0, 2.5] {
            let p = sampled(t, 0, 1.0, 11);
            for step in 0..100 {
                let key = noise::step_key(p.seed, step);
                let exhaustive = (0..logits.len() as u32)
                    .map(|j| (f64::from(logits[j as usize]) / f64::from(t) + noise::gumbel(key, j), j))
                    .fold((f64::NEG_INFINITY, 0), |a, b| if b.0 > a.0 { b } else { a });
                assert_eq!(draw(&logits, &p, step), exhaustive.1, "T {t} step {step}");
            }
        }
    }

    #[test]
    fn a_small_change_of_the_row_moves_the_margin_of_an_honest_token_little() {
        let logits: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1009) as f32 / 200.0).collect();
        let p = sampled(1.0, 0, 0.95, 5);
        for step in 0..200 {
            let t = draw(&logits, &p, step);
            let nudged: Vec<f32> =
                logits.iter().enumerate().map(|(j, &l)| l + ((j % 3) as f32 - 1.0) * 1e-3).collect();
            assert!(margin(&nudged, &p, step, t) <= 2.5e-3, "step {step}");
        }
    }
}
