//! Stage 1, model consistency: teacher-force prompt ++ output through the registered model in one
//! prefill pass and check, token by token, that the model would have produced this output.
//!
//! A task with a seed (fixed on chain before inference) and the worker's own token ids is
//! checked exactly: each token must be the one the verifiable-sampling rule draws from the
//! validator's row for that step (`polylink_infer::sample::margin` within
//! `margin_tolerance` logits), greedy and sampled alike, and the score follows the fraction of
//! tokens that are. Rows are bit-identical to the worker's under the numerics rule, so an honest
//! answer has every margin 0 on the same kernels; the tolerance absorbs other SIMD paths.
//!
//! Without a seed, greedy tasks must agree with the model's arg-max almost everywhere; sampled
//! tasks must keep every token inside the top-k the worker sampled from (when it names one), at a
//! likelihood that honest sampling at that temperature gives: each token's log-probability
//! against its row's entropy, in standard deviations of the varentropy. The end of the answer is
//! checked too: a claimed end-of-generation must be one the model predicts (with a seed: the end
//! token must be the rule's draw), a claimed length stop must have used up `max_tokens`, and a
//! cancelled answer has no end to check. This catches a substituted or degraded model, garbage,
//! truncation and answers copied from another prompt.

use std::path::Path;
use std::sync::Arc;

use polylink_infer::Model;
use polylink_infer::sample::{self, SamplingParams};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Result, TiqeError};
use crate::prefix::{PrefixCache, shared_prefix};
use crate::task::{Evaluator, Finish, Task, Verdict, to_score};
use crate::util::{file_sha256, ramp};

/// Thresholds of the consistency check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConsistencyConfig {
    /// A token counts as the arg-max when its logit is within this of the largest (absorbs
    /// kernel differences between machines).
    pub tie_logit: f32,
    /// Greedy agreement rate that scores 0 …
    pub agree_floor: f64,
    /// … and the rate that scores full marks.
    pub agree_full: f64,
    /// Top-k used for sampled tasks that sampled from the whole vocabulary.
    pub k_default: usize,
    /// Sampled tasks: top-k membership rate that scores 0 and full marks.
    pub topk_floor: f64,
    /// See `topk_floor`.
    pub topk_full: f64,
    /// Sampled tasks: the answer's likelihood gap in standard deviations (see `evaluate`) that
    /// scores 0 and full marks.
    pub z_floor: f64,
    /// See `z_floor`.
    pub z_full: f64,
    /// Seeded tasks: a token counts as drawn when its margin under the verifiable-sampling rule
    /// is at most this many logits.
    pub margin_tolerance: f32,
    /// Seeded tasks: the fraction of drawn tokens that scores 0 …
    pub drawn_floor: f64,
    /// … and the fraction that scores full marks.
    pub drawn_full: f64,
    /// Factor applied when the end of the answer contradicts the claim (truncation).
    pub end_factor: f64,
    /// An empty answer sampled without a seed: the least probability of ending at once (under
    /// the task's temperature) that passes. An honest worker lands below it at most this often.
    pub empty_end_p_min: f64,
    /// Tokens of slack on a length stop when the ids come from re-tokenizing the text.
    pub length_slack: usize,
    /// Scores strictly between these (0..1) are flagged uncertain.
    pub uncertain_low: f64,
    /// See `uncertain_low`.
    pub uncertain_high: f64,
}

impl Default for ConsistencyConfig {
    fn default() -> Self {
        Self {
            tie_logit: 0.05,
            agree_floor: 0.80,
            agree_full: 0.99,
            k_default: 40,
            topk_floor: 0.90,
            topk_full: 0.99,
            z_floor: -4.0,
            z_full: -2.0,
            margin_tolerance: 0.05,
            drawn_floor: 0.97,
            drawn_full: 0.99,
            end_factor: 0.2,
            empty_end_p_min: 1e-3,
            length_slack: 3,
            uncertain_low: 0.25,
            uncertain_high: 0.8,
        }
    }
}

/// The registered model, loaded to re-score answers.
pub struct ModelConsistency {
    model: Arc<Model>,
    sha256: [u8; 32],
    eog: Vec<u32>,
    cfg: ConsistencyConfig,
    prefix: PrefixCache,
}

/// Per-token statistics of one teacher-forced pass.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    tokens: usize,
    agree: usize,
    split_agree: usize,
    in_topk: usize,
    logprob_sum: f64,
    drawn: usize,
    margin_max: f32,
}

impl ModelConsistency {
    /// Loads the GGUF at `path` on `threads` threads and hashes it (its artifact hash).
    pub fn open(path: &Path, threads: usize, cfg: ConsistencyConfig) -> Result<Self> {
        let sha256 = file_sha256(path)?;
        Ok(Self::new(Arc::new(Model::open(path, None, threads)?), sha256, cfg))
    }

    /// Wraps an already loaded model whose file hashes to `sha256`.
    pub fn new(model: Arc<Model>, sha256: [u8; 32], cfg: ConsistencyConfig) -> Self {
        let eog = (0..model.tokenizer.vocab_size() as u32).filter(|&i| model.tokenizer.is_eog(i)).collect();
        let render = |user: &str| model.tokenizer.encode(&model.template.render(None, user));
        let prefix = PrefixCache::new(shared_prefix(&render("a"), &render("b")));
        Self { model, sha256, eog, cfg, prefix }
    }

    /// The loaded model (shared with the judge and the benchmark's generator).
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Artifact sha256 of the loaded file.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// The output's token ids: the worker's own when sent (they must decode to the text), else
    /// the text re-tokenized. `Err` holds the reason the claimed ids are refused.
    fn output_ids(&self, task: &Task) -> std::result::Result<(Vec<u32>, bool), String> {
        let tok = &self.model.tokenizer;
        match &task.output_ids {
            Some(ids) => {
                let body: Vec<u32> = ids.iter().copied().filter(|&i| !tok.is_eog(i)).collect();
                if tok.decode(&body) != task.output {
                    return Err("claimed token ids do not decode to the output".into());
                }
                Ok((body, false))
            }
            None => Ok((tok.encode_with(&task.output, false), true)),
        }
    }
}

impl Evaluator for ModelConsistency {
    fn name(&self) -> &'static str {
        "consistency"
    }

    fn evaluate(&self, task: &Task) -> Result<Verdict> {
        if let Some(want) = task.model_sha256
            && want != self.sha256
        {
            return Err(TiqeError::WrongModel { task: hex::encode(want), loaded: hex::encode(self.sha256) });
        }
        let (out_ids, retokenized) = match self.output_ids(task) {
            Ok(v) => v,
            Err(why) => {
                return Ok(Verdict { score: 0, uncertain: false, evidence: json!({ "rejected": why }) });
            }
        };
        let tok = &self.model.tokenizer;
        let prompt_ids = match &task.prompt_ids {
            Some(ids) => ids.clone(),
            None => tok.encode(&self.model.template.render(None, &task.prompt)),
        };
        if prompt_ids.is_empty() {
            return Err(TiqeError::Refused("prompt renders to no tokens".into()));
        }
        let g = task.generation;
        let mut seq = prompt_ids.clone();
        seq.extend_from_slice(&out_ids);
        // One extra position predicts what follows the output: an end token for `finish = eos`.
        seq.push(self.eog.first().copied().unwrap_or(0));
        let mut logits = Vec::new();
        // Row r of `logits` predicts token `prompt_ids.len() + r`: the output, then what follows
        // it. The last position's own logits are never read, so it is not fed.
        let cached = self.prefix.logits(
            &self.model.shard,
            &seq[..seq.len() - 1],
            prompt_ids.len() - 1,
            &mut logits,
        )?;
        let vocab = logits.len() / (out_ids.len() + 1);
        let row = |r: usize| &logits[r * vocab..(r + 1) * vocab];
        let k = if g.top_k > 0 { g.top_k } else { self.cfg.k_default };
        let offsets = byte_offsets(tok, &out_ids, task.output.len());
        let mut st = Stats::default();
        // Sampled tasks: how far the answer's likelihood under the sampling distribution falls
        // below what honest sampling gives. Each token's log-probability is expected to be minus
        // the entropy of its row, with the row's varentropy as variance, so the sum of the gaps
        // over the sum of the variances is about a standard normal for an honest answer and far
        // below zero for text the model would not have sampled.
        let (mut gap, mut variance) = (0.0f64, 0.0f64);
        // Seeded tasks: the rule's draw is checked only on the worker's own ids (a re-tokenized
        // text may split differently from what was drawn).
        let rule = g.seed.filter(|_| !retokenized).map(|seed| sampling(&g, seed));
        for (i, &target) in out_ids.iter().enumerate() {
            let r = row(i);
            if let Some(p) = &rule {
                let m = sample::margin(r, p, i as u64, target);
                st.drawn += usize::from(m <= self.cfg.margin_tolerance);
                st.margin_max = st.margin_max.max(m);
            } else if g.temperature > 0.0 {
                let (logp, entropy, varentropy) = tempered(r, target, g.temperature);
                gap += logp + entropy;
                variance += varentropy;
            }
            let p = position(r, target, self.cfg.tie_logit);
            st.tokens += 1;
            st.logprob_sum += f64::from(p.logprob);
            st.in_topk += usize::from(p.rank < k);
            if p.top1 {
                st.agree += 1;
            } else if let Some(off) = &offsets {
                // A different split of the same text (re-tokenization) is still agreement.
                let best = tok.piece(p.argmax);
                if !best.is_empty() && task.output.as_bytes()[off[i]..].starts_with(best) {
                    st.split_agree += 1;
                }
            }
        }
        let end_row = row(out_ids.len());
        let end_ok = match (g.finish, &rule) {
            (Finish::CutShort, _) => out_ids.len() <= g.max_tokens + self.cfg.length_slack,
            (Finish::Eos, Some(p)) => {
                // The end token the worker drew, else the likeliest of the model's end tokens.
                let claimed =
                    task.output_ids.as_ref().and_then(|ids| ids.last().copied()).filter(|&e| tok.is_eog(e));
                let step = out_ids.len() as u64;
                let margin = |e: u32| sample::margin(end_row, p, step, e);
                let m = match claimed {
                    Some(e) => margin(e),
                    None => self.eog.iter().map(|&e| margin(e)).fold(f32::INFINITY, f32::min),
                };
                m <= self.cfg.margin_tolerance
            }
            (Finish::Eos, None) => {
                let best =
                    self.eog.iter().map(|&e| position(end_row, e, self.cfg.tie_logit)).min_by_key(|p| p.rank);
                best.is_some_and(|p| if g.temperature > 0.0 { p.rank < k } else { p.top1 })
            }
            (Finish::Length, _) => {
                let slack = if retokenized { self.cfg.length_slack } else { 0 };
                out_ids.len() + slack >= g.max_tokens && out_ids.len() <= g.max_tokens + slack
            }
        };
        let c = &self.cfg;
        // An empty answer that claims the model ended at once stands or falls on that one end
        // token: the rule's draw, the greedy choice, or (sampled without a seed) an end the
        // tempered model gives at least `empty_end_p_min`. Raw completions of a finished
        // sentence often end at once, honestly.
        let empty_end = st.tokens == 0 && g.finish == Finish::Eos;
        let end_p = (empty_end && rule.is_none() && g.temperature > 0.0)
            .then(|| end_probability(end_row, &self.eog, g.temperature));
        let end_ok = end_ok && end_p.is_none_or(|p| p >= c.empty_end_p_min);
        let n = st.tokens.max(1) as f64;
        let agree_rate = (st.agree + st.split_agree) as f64 / n;
        let topk_rate = st.in_topk as f64 / n;
        let mean_logprob = st.logprob_sum / n;
        let likelihood_z = gap / variance.max(1e-6).sqrt();
        let drawn_rate = st.drawn as f64 / n;
        // Nothing delivered: a cut-short answer holds no evidence either way (it is paid only
        // for its prompt); any other empty answer is unsure.
        let token_score = if st.tokens == 0 {
            if g.finish == Finish::CutShort || (empty_end && end_ok) { 1.0 } else { 0.5 }
        } else if rule.is_some() {
            ramp(drawn_rate, c.drawn_floor, c.drawn_full)
        } else if g.temperature <= 0.0 {
            ramp(agree_rate, c.agree_floor, c.agree_full)
        } else {
            // Outside the top-k the worker says it sampled from is impossible; with no top-k
            // any token is possible and only the likelihood speaks.
            let topk = if g.top_k > 0 { ramp(topk_rate, c.topk_floor, c.topk_full) } else { 1.0 };
            topk * ramp(likelihood_z, c.z_floor, c.z_full)
        };
        let x = token_score * if end_ok { 1.0 } else { c.end_factor };
        Ok(Verdict {
            score: to_score(x),
            uncertain: (st.tokens == 0 && g.finish != Finish::CutShort && !(empty_end && end_ok))
                || (x > c.uncertain_low && x < c.uncertain_high),
            evidence: json!({
                "prompt_tokens": prompt_ids.len(),
                "prefix_tokens_cached": cached,
                "output_tokens": st.tokens,
                "retokenized": retokenized,
                "top1_agree": st.agree,
                "split_agree": st.split_agree,
                "agree_rate": agree_rate,
                "topk": k,
                "topk_rate": topk_rate,
                "mean_logprob": mean_logprob,
                "likelihood_z": if g.temperature > 0.0 { json!(likelihood_z) } else { Value::Null },
                "seeded": rule.is_some(),
                "drawn_rate": if rule.is_some() { json!(drawn_rate) } else { Value::Null },
                "margin_max": if rule.is_some() { json!(st.margin_max) } else { Value::Null },
                "finish_claimed": g.finish,
                "end_ok": end_ok,
                "end_p": end_p,
            }),
        })
    }
}

/// The task's sampling settings under the verifiable-sampling rule.
fn sampling(g: &crate::task::Generation, seed: u64) -> SamplingParams {
    SamplingParams { temperature: g.temperature, top_k: g.top_k, top_p: g.top_p, seed }
}

/// Probability, at `temperature`, that the row's next token is one of the `eog` tokens.
fn end_probability(row: &[f32], eog: &[u32], temperature: f32) -> f64 {
    eog.iter().map(|&e| tempered(row, e, temperature).0.exp()).sum()
}

/// Log-probability of `target`, entropy and varentropy (variance of the log-probability) of the
/// row's distribution at `temperature`, in nats.
fn tempered(row: &[f32], target: u32, temperature: f32) -> (f64, f64, f64) {
    let t = f64::from(temperature.max(1e-3));
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let scaled = |v: f32| (f64::from(v) - f64::from(max)) / t;
    let log_z = row.iter().map(|&v| scaled(v).exp()).sum::<f64>().ln();
    let (mut entropy, mut second) = (0.0f64, 0.0f64);
    for &v in row {
        let lp = scaled(v) - log_z;
        let p = lp.exp();
        entropy -= p * lp;
        second += p * lp * lp;
    }
    let logp = row.get(target as usize).map_or(f64::NEG_INFINITY, |&v| scaled(v) - log_z);
    (logp, entropy, (second - entropy * entropy).max(0.0))
}

/// Where one target token stands in a row of logits.
#[derive(Debug, Clone, Copy)]
struct Position {
    logprob: f32,
    rank: usize,
    top1: bool,
    argmax: u32,
}

fn position(row: &[f32], target: u32, tie_logit: f32) -> Position {
    let (mut max, mut argmax) = (f32::NEG_INFINITY, 0u32);
    for (i, &v) in row.iter().enumerate() {
        if v > max {
            (max, argmax) = (v, i as u32);
        }
    }
    let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
    let t = row.get(target as usize).copied().unwrap_or(f32::NEG_INFINITY);
    let rank = row.iter().filter(|&&v| v > t).count();
    Position { logprob: t - max - sum.ln(), rank, top1: t >= max - tie_logit, argmax }
}

/// Byte offset in the output where each token starts, when the pieces rebuild the text exactly.
fn byte_offsets(tok: &polylink_infer::Tokenizer, ids: &[u32], len: usize) -> Option<Vec<usize>> {
    let mut off = Vec::with_capacity(ids.len());
    let mut at = 0;
    for &id in ids {
        off.push(at);
        at += tok.piece(id).len();
    }
    (at == len).then_some(off)
}
