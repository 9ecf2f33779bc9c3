//! Wiring for tools: open the three evaluators and the cascade from model files, generate the
//! labelled sets, train the head, and measure a cascade on a labelled set.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use polylink_infer::Model;
use serde::Serialize;
use serde_json::json;

use crate::attack::Kind;
use crate::cascade::{Cascade, CascadeConfig};
use crate::consistency::{ConsistencyConfig, ModelConsistency};
use crate::cross::{CrossEncoder, Head, MiniLmFiles};
use crate::dataset::{self, Answer, DroppedLayers, Sample, Sources};
use crate::error::Result;
use crate::judge::Judge;
use crate::metrics;
use crate::train::{self, TrainConfig};
use crate::util::{SplitMix, file_sha256};

/// Model files a validator needs.
#[derive(Debug, Clone)]
pub struct Files {
    /// GGUF of the registered model (also the judge and the honest worker).
    pub registered: PathBuf,
    /// MiniLM weights and vocabulary.
    pub minilm: MiniLmFiles,
}

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

/// Loads the registered model once (shared by consistency, judge and generation).
pub fn open_registered(files: &Files, threads: usize) -> Result<(Arc<Model>, [u8; 32])> {
    let sha = file_sha256(&files.registered)?;
    Ok((Arc::new(Model::open(&files.registered, None, threads)?), sha))
}

/// The full cascade: consistency (weight 2) and cross-encoder (weight 1) cheap, then the judge.
pub fn open_cascade(
    files: &Files,
    model: Arc<Model>,
    sha: [u8; 32],
    head: Head,
    cfg: CascadeConfig,
    threads: usize,
) -> Result<Cascade> {
    let consistency = ModelConsistency::new(model.clone(), sha, ConsistencyConfig::default());
    let cross = CrossEncoder::open(&files.minilm, Some(head), threads)?;
    let judge = Judge::new(model)?;
    Ok(Cascade::new(vec![(Box::new(consistency), 2.0), (Box::new(cross), 1.0)], Some(Box::new(judge)), cfg))
}

/// Generates honest answers (and the substitutes the kinds ask for) and builds labelled samples.
pub fn generate_set(
    model: &Model,
    prompts: &[String],
    spec: &SetSpec,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Sample>> {
    let (kinds, subs, threads, max_tokens) = (&spec.kinds, &spec.subs, spec.threads, spec.max_tokens);
    let mut honest = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        honest.push(dataset::answer(model, p, max_tokens)?);
        progress(&format!("honest {}/{}", i + 1, prompts.len()));
    }
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
        let mut v = Vec::new();
        for (i, p) in prompts.iter().enumerate() {
            v.push(dataset::answer(&gemma, p, max_tokens)?);
            progress(&format!("gemma {}/{}", i + 1, prompts.len()));
        }
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

/// Features of every sample and the head fitted on them (honest = good).
pub fn train_head(
    cross: &CrossEncoder,
    samples: &[Sample],
    seed: u64,
    progress: &mut dyn FnMut(&str),
) -> Result<Head> {
    let mut x = Vec::new();
    let mut y = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        x.push(cross.features(&s.task.prompt, &s.task.output)?);
        y.push(s.kind == Kind::Honest);
        if (i + 1) % 20 == 0 {
            progress(&format!("features {}/{}", i + 1, samples.len()));
        }
    }
    let mut counts = BTreeMap::new();
    for s in samples {
        *counts.entry(s.kind.name()).or_insert(0usize) += 1;
    }
    train::fit(&x, &y, TrainConfig::default(), json!({ "seed": seed, "kinds": counts }))
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
    /// Fraction of tasks on which the judge ran.
    pub judge_rate: f64,
    /// Median milliseconds of the cheap stages per evaluation.
    pub cheap_ms_median: f64,
    /// Median of cheap-stage milliseconds scaled to a 128-token answer.
    pub cheap_ms_per_128_tokens_median: f64,
    /// Median milliseconds of a judge call (when called).
    pub judge_ms_median: f64,
}

/// Summarizes scored samples.
pub fn summarize(scored: &[Scored]) -> Summary {
    let honest: Vec<u16> = scored.iter().filter(|s| s.kind == Kind::Honest).map(|s| s.score).collect();
    let attacks: Vec<u16> = scored.iter().filter(|s| s.kind != Kind::Honest).map(|s| s.score).collect();
    let t = metrics::threshold_at_fpr(&honest, 0.01);
    let mut per_attack = BTreeMap::new();
    for kind in Kind::ATTACKS {
        let a: Vec<u16> = scored.iter().filter(|s| s.kind == kind).map(|s| s.score).collect();
        if !a.is_empty() {
            per_attack.insert(kind.name(), (a.len(), metrics::auc(&honest, &a), metrics::caught_rate(&a, t)));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    Summary {
        auc: metrics::auc(&honest, &attacks),
        threshold_at_1pct_fpr: t,
        per_attack,
        judge_rate: scored.iter().filter(|s| s.judge_called).count() as f64 / scored.len().max(1) as f64,
        cheap_ms_median: median(scored.iter().map(|s| s.cheap_ms).collect()),
        cheap_ms_per_128_tokens_median: median(
            scored
                .iter()
                .filter(|s| s.output_tokens > 0)
                .map(|s| s.cheap_ms * 128.0 / s.output_tokens as f64)
                .collect(),
        ),
        judge_ms_median: median(scored.iter().filter(|s| s.judge_called).map(|s| s.judge_ms).collect()),
    }
}
