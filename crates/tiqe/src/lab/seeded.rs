//! The verifiable-sampling benchmark: sampled answers with known seeds from the registered model
//! (honest) and from cheating workers that know the seed and run the same sampler on a cheaper
//! model ([`Source`]), cached on disk, then scored by the consistency stage's seeded test.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use polylink_infer::{Gguf, Model, Pool, SamplingParams, Shard, Tokenizer};
use serde::{Deserialize, Serialize};

use super::dataset::{Answer, decode_batched};
use super::metrics::binomial_upper;
use super::rng::SplitMix;
use crate::consistency::ModelConsistency;
use crate::error::{Result, TiqeError, io_err};
use crate::task::{Evaluator, Finish, Generation, Task};

/// The temperatures the benchmark samples at.
pub const TEMPERATURES: [f32; 3] = [0.7, 1.0, 1.3];

/// Scores below this are a failed check (the ledger's default `quality_min`).
pub const PASS_SCORE: u16 = 500;

/// Who produced a seeded answer. Every cheat knows the task's seed and draws with the protocol's
/// sampler; only its logits differ from the registered model's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The registered model.
    Honest,
    /// Another model (Gemma-3-270M), its text re-tokenized for the registered model.
    Substitute,
    /// The registered model with layers skipped.
    DroppedLayers,
    /// The registered model's weights re-quantized to Q4_0 in memory.
    Requantized,
}

impl Source {
    /// Every source, honest first.
    pub const ALL: [Source; 4] =
        [Source::Honest, Source::Substitute, Source::DroppedLayers, Source::Requantized];

    /// Snake-case name.
    pub fn name(self) -> &'static str {
        match self {
            Source::Honest => "honest",
            Source::Substitute => "substitute",
            Source::DroppedLayers => "dropped_layers",
            Source::Requantized => "requantized",
        }
    }
}

/// One sampled task: the user's message, the temperature and the seed the chain fixed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeededTask {
    /// The user's message.
    pub prompt: String,
    /// Sampling temperature.
    pub temperature: f32,
    /// The task's seed.
    pub seed: u64,
}

/// `n` tasks per temperature of [`TEMPERATURES`], cycling through `prompts`; task `k` at the
/// `j`-th temperature gets its seed from (`seed`, `j`, `k`) alone, so a larger `n` extends a
/// smaller one (and its cache).
pub fn seeded_tasks(prompts: &[String], n: usize, seed: u64) -> Vec<SeededTask> {
    let mut out = Vec::with_capacity(n * TEMPERATURES.len());
    for (j, t) in TEMPERATURES.into_iter().enumerate() {
        for k in 0..n {
            let prompt = prompts.get(k % prompts.len().max(1)).cloned().unwrap_or_default();
            let task_seed = SplitMix::new(seed ^ ((j as u64) << 48) ^ k as u64).next_u64();
            out.push(SeededTask { prompt, temperature: t, seed: task_seed });
        }
    }
    out
}

/// A cheaper stand-in for the registered model at `path`: its layers `drop` skipped, or its
/// weights re-quantized.
pub fn cheat_shard(
    path: &Path,
    source: Source,
    drop: std::ops::Range<usize>,
    threads: usize,
) -> Result<Shard> {
    let g = Gguf::open(path)?;
    let n = polylink_infer::ModelInfo::from_gguf(&g)?.hparams.n_layers;
    let shard = Shard::load(&g, 0..n, Arc::new(Pool::new(threads)))?;
    match source {
        Source::DroppedLayers => Ok(shard.without_layers(drop)?),
        Source::Requantized => Ok(shard.requantized_q4_0()),
        other => Err(TiqeError::Refused(format!("{} is not made from the registered model", other.name()))),
    }
}

/// Answers kept on disk, keyed by the generator and `max_tokens`; any mismatch regenerates.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SeededFile {
    key: String,
    answers: Vec<Stored>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    task: SeededTask,
    text: String,
    ids: Vec<u32>,
    eos: bool,
}

/// Answers generated between two saves of the cache file.
const SAVE_EVERY: usize = 64;

/// Answers of `shard` (reading and writing with `model`'s tokenizer and template) to `tasks`,
/// reusing those in the cache file `path` made under the same `key`, and writing new ones back.
pub fn seeded_answers(
    shard: &Shard,
    model: &Model,
    tasks: &[SeededTask],
    max_tokens: usize,
    key: &str,
    path: &Path,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Answer>> {
    let key = format!("{key}:{max_tokens}");
    let mut file: SeededFile = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|f: &SeededFile| f.key == key)
        .unwrap_or_else(|| SeededFile { key, answers: Vec::new() });
    let mut index: BTreeMap<(String, u32, u64), usize> = BTreeMap::new();
    let id = |t: &SeededTask| (t.prompt.clone(), t.temperature.to_bits(), t.seed);
    for (i, a) in file.answers.iter().enumerate() {
        index.insert(id(&a.task), i);
    }
    let missing: Vec<&SeededTask> = tasks.iter().filter(|t| !index.contains_key(&id(t))).collect();
    // Saved after every chunk: a run stopped part-way keeps what it made.
    let mut done = 0;
    for missing in missing.chunks(SAVE_EVERY) {
        let jobs: Vec<(Vec<u32>, SamplingParams)> = missing
            .iter()
            .map(|t| {
                let ids = model.tokenizer.encode(&model.template.render(None, &t.prompt));
                let params =
                    SamplingParams { temperature: t.temperature, top_k: 0, top_p: 1.0, seed: t.seed };
                (ids, params)
            })
            .collect();
        let made = decode_batched(shard, &model.tokenizer, &jobs, max_tokens, &mut |n| progress(done + n))?;
        done += missing.len();
        for (&t, a) in missing.iter().zip(made) {
            index.insert(id(t), file.answers.len());
            let eos = a.finish == Finish::Eos;
            file.answers.push(Stored { task: t.clone(), text: a.text, ids: a.ids, eos });
        }
        let bytes = serde_json::to_vec(&file).map_err(|e| TiqeError::Training(e.to_string()))?;
        std::fs::write(path, bytes).map_err(io_err(path))?;
    }
    tasks
        .iter()
        .map(|t| {
            let a = index.get(&id(t)).and_then(|&i| file.answers.get(i));
            let a = a.ok_or_else(|| TiqeError::Training(format!("no answer for {t:?}")))?;
            let finish = if a.eos { Finish::Eos } else { Finish::Length };
            Ok(Answer { text: a.text.clone(), ids: a.ids.clone(), finish })
        })
        .collect()
}

/// The task a validator checks for answer `a` to `t`: the worker's claimed ids are the answer's
/// own, or, for text made with another tokenizer, the registered tokenizer's (`retokenize`).
pub fn seeded_task(t: &SeededTask, a: &Answer, tok: &Tokenizer, retokenize: bool, max_tokens: usize) -> Task {
    let ids = if retokenize {
        let mut ids = tok.encode_with(&a.text, false);
        let eog = (0..tok.vocab_size() as u32).find(|&i| tok.is_eog(i));
        ids.extend(eog.filter(|_| a.finish == Finish::Eos));
        ids
    } else {
        a.ids.clone()
    };
    let mut task = Task::greedy(&t.prompt, &a.text, max_tokens, a.finish);
    task.output_ids = Some(ids);
    task.generation = Generation {
        temperature: t.temperature,
        top_p: 1.0,
        seed: Some(t.seed),
        max_tokens,
        finish: a.finish,
        ..Generation::default()
    };
    task
}

/// The consistency verdict on one seeded answer.
#[derive(Debug, Clone, Serialize)]
pub struct SeededScore {
    /// Who made it.
    pub source: Source,
    /// Its temperature.
    pub temperature: f32,
    /// Consistency score.
    pub score: u16,
    /// Fraction of its tokens the rule would have drawn (within tolerance).
    pub drawn_rate: f64,
    /// Its largest token margin, in logits (`None` when infinite).
    pub margin_max: Option<f64>,
    /// Its tokens.
    pub tokens: usize,
    /// Its seed.
    pub seed: u64,
}

/// Scores `task` (made by `source`) with the seeded consistency test.
pub fn score_seeded(c: &ModelConsistency, source: Source, task: &Task) -> Result<SeededScore> {
    let v = c.evaluate(task)?;
    let e = &v.evidence;
    Ok(SeededScore {
        source,
        temperature: task.generation.temperature,
        score: v.score,
        drawn_rate: e["drawn_rate"].as_f64().unwrap_or(0.0),
        margin_max: e["margin_max"].as_f64(),
        tokens: e["output_tokens"].as_u64().unwrap_or(0) as usize,
        seed: task.generation.seed.unwrap_or(0),
    })
}

/// One cell of the table: how many answers of a source at a temperature failed the check.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Cell {
    /// Answers scored.
    pub n: usize,
    /// Answers that scored below [`PASS_SCORE`].
    pub failed: usize,
    /// `failed / n`.
    pub rate: f64,
    /// One-sided 95% upper bound of the failure rate (Clopper–Pearson).
    pub upper_95: f64,
    /// The largest token margin among the answers that passed, in logits.
    pub passed_margin_max: f64,
}

/// The table: one cell per (source, temperature).
pub fn seeded_table(scores: &[SeededScore]) -> BTreeMap<(Source, String), Cell> {
    let mut table = BTreeMap::new();
    for s in Source::ALL {
        for t in TEMPERATURES {
            let of: Vec<&SeededScore> =
                scores.iter().filter(|x| x.source == s && x.temperature == t).collect();
            if of.is_empty() {
                continue;
            }
            let failed = of.iter().filter(|x| x.score < PASS_SCORE).count();
            let passed_margin_max = of
                .iter()
                .filter(|x| x.score >= PASS_SCORE)
                .map(|x| x.margin_max.unwrap_or(f64::INFINITY))
                .fold(0.0, f64::max);
            table.insert(
                (s, format!("{t:.1}")),
                Cell {
                    n: of.len(),
                    failed,
                    rate: failed as f64 / of.len() as f64,
                    upper_95: binomial_upper(failed, of.len(), 0.95),
                    passed_margin_max,
                },
            );
        }
    }
    table
}
