//! The lab's pipelines: generate the labelled sets, train the head, and measure a cascade on a
//! labelled set.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use polylink_infer::Model;
use serde::Serialize;
use serde_json::json;

use super::attack::Kind;
use super::dataset::{self, Answer, DroppedLayers, Sample, Sources};
use super::metrics;
use super::rng::SplitMix;
use super::train::{self, TrainConfig};
use crate::cascade::Cascade;
use crate::cross::CrossEncoder;
use crate::error::Result;
use crate::head::Head;
use crate::util::file_sha256;

/// What a generated set holds and how it is made.
#[derive(Debug, Clone)]
pub struct SetSpec {
    /// Kinds of answers per prompt.
    pub kinds: Vec<Kind>,
    /// Where the substitute workers come from.
    pub subs: Substitutes,
    /// Threads of the substitute models.
    pub threads: usize,
    /// Most tokens per answer (the tasks' `max_tokens`).
    pub max_tokens: usize,
    /// Seed of the degradations.
    pub seed: u64,
    /// File keeping the registered model's answers between runs (`None`: always generate).
    pub answers_cache: Option<PathBuf>,
}

/// Where the degraded workers come from.
#[derive(Debug, Clone)]
pub struct Substitutes {
    /// GGUF of the registered model (the dropped-layers worker loads it in two pieces).
    pub registered: PathBuf,
    /// A different model served in place of the registered one.
    pub gemma: Option<PathBuf>,
    /// Layers the dropped-layers worker skips.
    pub dropped: Range<usize>,
}

/// Generates honest answers (and the substitutes the kinds ask for) and builds labelled samples.
pub fn generate_set(
    model: &Model,
    prompts: &[String],
    spec: &SetSpec,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Sample>> {
    let (kinds, subs, threads, max_tokens) = (&spec.kinds, &spec.subs, spec.threads, spec.max_tokens);
    let mut honest_progress = |n: usize| progress(&format!("honest {n}/{}", prompts.len()));
    let honest = match &spec.answers_cache {
        Some(path) => {
            let sha = file_sha256(&subs.registered)?;
            dataset::answers_cached(model, sha, prompts, max_tokens, path, &mut honest_progress)?
        }
        None => dataset::answers(model, prompts, max_tokens, &mut honest_progress)?,
    };
    let mut others: Vec<(Kind, Vec<Answer>)> = Vec::new();
    if kinds.contains(&Kind::DroppedLayers) {
        let d = DroppedLayers::open(&subs.registered, subs.dropped.clone(), threads)?;
        let mut v = Vec::new();
        for (i, p) in prompts.iter().enumerate() {
            v.push(d.answer(model, p, max_tokens)?);
            progress(&format!("dropped layers {}/{}", i + 1, prompts.len()));
        }
        others.push((Kind::DroppedLayers, v));
    }
    if let (true, Some(g)) = (kinds.contains(&Kind::SubstituteGemma), &subs.gemma) {
        let gemma = Model::open(g, None, threads)?;
        let v = dataset::answers(&gemma, prompts, max_tokens, &mut |n| {
            progress(&format!("gemma {n}/{}", prompts.len()))
        })?;
        others.push((Kind::SubstituteGemma, v));
    }
    let mut rng = SplitMix::new(spec.seed);
    let src = Sources { prompts, honest: &honest, subs: &others, tok: &model.tokenizer, max_tokens };
    let mut out = Vec::new();
    for i in 0..prompts.len() {
        out.extend(dataset::samples_for(i, &src, kinds, &mut rng));
    }
    Ok(out)
}

/// Kinds the cross-encoder head learns to reject (substitutes are the consistency stage's job).
pub const TRAIN_KINDS: [Kind; 5] =
    [Kind::Honest, Kind::Mismatched, Kind::Truncated, Kind::Garbage, Kind::Shuffled];

/// Folds of the by-prompt cross-validation reported with a trained head.
pub const CV_FOLDS: usize = 5;

/// Features of every sample and the head fitted on them (honest = good), with the head's
/// held-out AUC per attack kind from a cross-validation split by prompt.
pub fn train_head(
    cross: &CrossEncoder,
    samples: &[Sample],
    seed: u64,
    progress: &mut dyn FnMut(&str),
) -> Result<Head> {
    let mut x = Vec::new();
    let mut y = Vec::new();
    let mut groups = Vec::new();
    let mut prompt_ids: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, s) in samples.iter().enumerate() {
        x.push(cross.task_features(&s.task)?);
        y.push(s.kind == Kind::Honest);
        let next = prompt_ids.len();
        groups.push(*prompt_ids.entry(s.task.prompt.as_str()).or_insert(next));
        if (i + 1) % 20 == 0 {
            progress(&format!("features {}/{}", i + 1, samples.len()));
        }
    }
    let mut counts = BTreeMap::new();
    for s in samples {
        *counts.entry(s.kind.name()).or_insert(0usize) += 1;
    }
    let cfg = TrainConfig::default();
    let held_out = train::cross_validate(&x, &y, &groups, CV_FOLDS, cfg)?;
    let to_score = |p: f64| crate::task::to_score(p);
    let honest: Vec<u16> = (0..x.len()).filter(|&i| y[i]).map(|i| to_score(held_out[i])).collect();
    let mut cv = BTreeMap::new();
    for kind in TRAIN_KINDS.iter().filter(|k| **k != Kind::Honest) {
        let a: Vec<u16> =
            (0..x.len()).filter(|&i| samples[i].kind == *kind).map(|i| to_score(held_out[i])).collect();
        cv.insert(kind.name(), (metrics::auc(&honest, &a) * 1e4).round() / 1e4);
    }
    let all: Vec<u16> = (0..x.len()).filter(|&i| !y[i]).map(|i| to_score(held_out[i])).collect();
    cv.insert("all", (metrics::auc(&honest, &all) * 1e4).round() / 1e4);
    train::fit(
        &x,
        &y,
        cfg,
        json!({ "seed": seed, "kinds": counts, "prompts": prompt_ids.len(), "held_out_auc_by_prompt_cv5": cv }),
    )
}

/// One scored sample of a benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct Scored {
    /// What produced the answer.
    pub kind: Kind,
    /// Final score.
    pub score: u16,
    /// Per-stage scores.
    pub stages: serde_json::Value,
    /// Whether the judge ran.
    pub judge_called: bool,
    /// Milliseconds in the cheap stages.
    pub cheap_ms: f64,
    /// Milliseconds in the judge.
    pub judge_ms: f64,
    /// Milliseconds per stage that ran.
    pub stage_ms: BTreeMap<&'static str, f64>,
    /// Output tokens (registered tokenizer).
    pub output_tokens: usize,
}

/// Scores every sample with the cascade.
pub fn score_all(
    cascade: &Cascade,
    model: &Model,
    samples: &[Sample],
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Scored>> {
    let mut out = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let r = cascade.score(&s.task)?;
        let stages = r.verdict.evidence.get("stages").cloned().unwrap_or_default();
        let score_of = |name: &str| stages.get(name).and_then(|v| v.get("score")).cloned();
        out.push(Scored {
            kind: s.kind,
            score: r.verdict.score,
            stages: json!({ "consistency": score_of("consistency"), "cross_encoder": score_of("cross_encoder"), "judge": score_of("judge") }),
            judge_called: r.judge_called,
            cheap_ms: r.cheap_ms,
            judge_ms: r.judge_ms,
            stage_ms: r.stage_ms,
            output_tokens: model.tokenizer.encode_with(&s.task.output, false).len(),
        });
        if (i + 1) % 10 == 0 {
            progress(&format!("scored {}/{}", i + 1, samples.len()));
        }
    }
    Ok(out)
}

/// Separation and cost figures of a scored set.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// AUC of honest against every attack pooled.
    pub auc: f64,
    /// Threshold that flags at most 1% of honest answers.
    pub threshold_at_1pct_fpr: u16,
    /// Per attack kind: (count, AUC, caught rate at that threshold).
    pub per_attack: BTreeMap<&'static str, (usize, f64, f64)>,
    /// Per cheap stage alone: AUC of its own score, honest against each attack kind.
    pub stage_auc: BTreeMap<&'static str, BTreeMap<&'static str, f64>>,
    /// Fraction of tasks on which the judge ran.
    pub judge_rate: f64,
    /// Median milliseconds of the cheap stages per evaluation.
    pub cheap_ms_median: f64,
    /// Median of cheap-stage milliseconds scaled to a 128-token answer.
    pub cheap_ms_per_128_tokens_median: f64,
    /// Median milliseconds of a judge call (when called).
    pub judge_ms_median: f64,
    /// Milliseconds per evaluation, (p50, p99), by stage, for the cheap stages together
    /// (`cheap`) and for the whole evaluation (`total`); the judge's only where it ran.
    pub latency_ms: BTreeMap<&'static str, (f64, f64)>,
}

/// The `q` quantile (nearest rank) of `v`; NaN when empty.
pub fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// Summarizes scored samples.
pub fn summarize(scored: &[Scored]) -> Summary {
    let of = |k: Option<Kind>, f: &dyn Fn(&Scored) -> Option<u16>| -> Vec<u16> {
        scored.iter().filter(|s| k.is_none_or(|k| s.kind == k)).filter_map(f).collect()
    };
    let final_score = |s: &Scored| Some(s.score);
    let honest = of(Some(Kind::Honest), &final_score);
    let attacks: Vec<u16> = scored.iter().filter(|s| s.kind != Kind::Honest).map(|s| s.score).collect();
    let t = metrics::threshold_at_fpr(&honest, 0.01);
    let mut per_attack = BTreeMap::new();
    let mut stage_auc: BTreeMap<&'static str, BTreeMap<&'static str, f64>> = BTreeMap::new();
    for kind in Kind::ATTACKS {
        let a = of(Some(kind), &final_score);
        if a.is_empty() {
            continue;
        }
        per_attack.insert(kind.name(), (a.len(), metrics::auc(&honest, &a), metrics::caught_rate(&a, t)));
        for stage in ["consistency", "cross_encoder"] {
            let get = |s: &Scored| s.stages.get(stage).and_then(serde_json::Value::as_u64).map(|v| v as u16);
            let (h, a) = (of(Some(Kind::Honest), &get), of(Some(kind), &get));
            if !h.is_empty() && !a.is_empty() {
                stage_auc.entry(stage).or_default().insert(kind.name(), metrics::auc(&h, &a));
            }
        }
    }
    let ms = |f: &dyn Fn(&Scored) -> Option<f64>| -> Vec<f64> { scored.iter().filter_map(f).collect() };
    let mut latency_ms = BTreeMap::new();
    let mut put = |name: &'static str, v: Vec<f64>| {
        if !v.is_empty() {
            latency_ms.insert(name, (quantile(v.clone(), 0.5), quantile(v, 0.99)));
        }
    };
    for stage in ["consistency", "cross_encoder", "judge"] {
        put(stage, ms(&|s| s.stage_ms.get(stage).copied()));
    }
    put("cheap", ms(&|s| Some(s.cheap_ms)));
    put("total", ms(&|s| Some(s.cheap_ms + s.judge_ms)));
    Summary {
        auc: metrics::auc(&honest, &attacks),
        threshold_at_1pct_fpr: t,
        per_attack,
        stage_auc,
        judge_rate: scored.iter().filter(|s| s.judge_called).count() as f64 / scored.len().max(1) as f64,
        cheap_ms_median: quantile(ms(&|s| Some(s.cheap_ms)), 0.5),
        cheap_ms_per_128_tokens_median: quantile(
            ms(&|s| (s.output_tokens > 0).then(|| s.cheap_ms * 128.0 / s.output_tokens as f64)),
            0.5,
        ),
        judge_ms_median: quantile(ms(&|s| s.judge_called.then_some(s.judge_ms)), 0.5),
        latency_ms,
    }
}
