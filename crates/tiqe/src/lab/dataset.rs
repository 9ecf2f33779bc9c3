//! Honest and degraded answers generated with the project's own models from committed prompts:
//! the training set of the cross-encoder head and the benchmark's test set.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use polylink_infer::{
    Finish as InferFinish, GenerateParams, Gguf, LogitsMode, Model, OutputKind, Pool, Sampler,
    SamplingParams, Shard, ShardInput, Tokenizer, generate, sample::argmax,
};

use serde::{Deserialize, Serialize};

use super::attack::{self, Kind};
use super::rng::SplitMix;
use crate::error::{Result, TiqeError, io_err};
use crate::task::{Finish, Task};

/// Most prompts read from one file.
const PROMPTS_MAX: usize = 10_000;

/// One generated answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Its text.
    pub text: String,
    /// Generated ids (an ending end token included).
    pub ids: Vec<u32>,
    /// How it ended.
    pub finish: Finish,
}

/// One labelled task.
#[derive(Debug, Clone)]
pub struct Sample {
    /// What produced the answer.
    pub kind: Kind,
    /// The task as a validator sees it.
    pub task: Task,
}

/// Non-empty lines of a prompts file that do not start with `#`.
pub fn read_prompts(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .take(PROMPTS_MAX)
        .map(str::to_string)
        .collect())
}

fn finish_of(f: InferFinish) -> Finish {
    if f == InferFinish::Length { Finish::Length } else { Finish::Eos }
}

/// The greedy answer of a whole model to a user message.
pub fn answer(model: &Model, prompt: &str, max_tokens: usize) -> Result<Answer> {
    let ids = model.tokenizer.encode(&model.template.render(None, prompt));
    let params = GenerateParams { max_tokens, ..GenerateParams::default() };
    let g = generate(&model.shard, &model.tokenizer, &ids, &params, &mut |_| {})?;
    Ok(Answer { text: g.text, ids: g.ids, finish: finish_of(g.finish) })
}

/// Sessions decoded together by [`answers`] (each weight row is read once per step for all).
pub const GENERATE_BATCH: usize = 8;

/// Greedy answers of a whole model to many user messages, decoded [`GENERATE_BATCH`] at a time
/// (the same tokens as [`answer`]: batched decoding gives the same logits).
pub fn answers(
    model: &Model,
    prompts: &[String],
    max_tokens: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Answer>> {
    let jobs: Vec<(Vec<u32>, SamplingParams)> = prompts
        .iter()
        .map(|p| (model.tokenizer.encode(&model.template.render(None, p)), SamplingParams::default()))
        .collect();
    decode_batched(&model.shard, &model.tokenizer, &jobs, max_tokens, progress)
}

/// Answers of a whole-model `shard` to prompt ids, each drawn with its own sampling settings by
/// the verifiable-sampling rule, decoded [`GENERATE_BATCH`] sessions at a time (the same tokens
/// as one at a time: a row's logits do not depend on the batch).
pub fn decode_batched(
    shard: &Shard,
    tok: &Tokenizer,
    jobs: &[(Vec<u32>, SamplingParams)],
    max_tokens: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Answer>> {
    let vocab = shard.hparams().vocab;
    let mut out = Vec::with_capacity(jobs.len());
    let mut logits = Vec::new();
    for chunk in jobs.chunks(GENERATE_BATCH) {
        let (mut kvs, mut next, mut samplers) = (Vec::new(), Vec::new(), Vec::new());
        for (ids, sampling) in chunk {
            let mut kv = shard.new_session(ids.len() + max_tokens);
            shard.forward(&mut kv, ShardInput::Tokens(ids), LogitsMode::Last, &mut logits)?;
            let mut sampler = Sampler::new(*sampling);
            next.push(sampler.sample(&logits));
            samplers.push(sampler);
            kvs.push(kv);
        }
        let mut made: Vec<(Vec<u32>, Option<Finish>)> = vec![(Vec::new(), None); chunk.len()];
        loop {
            let mut live = Vec::new();
            for (i, (ids, done)) in made.iter_mut().enumerate() {
                if done.is_some() {
                    continue;
                }
                ids.push(next[i]);
                if tok.is_eog(next[i]) {
                    *done = Some(Finish::Eos);
                } else if ids.len() == max_tokens {
                    *done = Some(Finish::Length);
                } else {
                    live.push(i);
                }
            }
            if live.is_empty() {
                break;
            }
            let feed: Vec<u32> = live.iter().map(|&i| next[i]).collect();
            let mut refs: Vec<&mut polylink_infer::KvCache> =
                kvs.iter_mut().enumerate().filter(|(i, _)| live.contains(i)).map(|(_, kv)| kv).collect();
            shard.forward_batch(&mut refs, ShardInput::Tokens(&feed), &mut logits)?;
            for (row, &i) in live.iter().enumerate() {
                next[i] = samplers[i].sample(&logits[row * vocab..(row + 1) * vocab]);
            }
        }
        for (ids, finish) in made {
            let body: Vec<u32> = ids.iter().copied().filter(|&i| !tok.is_eog(i)).collect();
            out.push(Answer { text: tok.decode(&body), ids, finish: finish.unwrap_or(Finish::Length) });
        }
        progress(out.len());
    }
    Ok(out)
}

/// Generated answers kept on disk between runs (training reruns need not decode again). The
/// file is keyed by the model's artifact hash and `max_tokens`; any mismatch regenerates.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AnswerFile {
    model_sha256: String,
    max_tokens: usize,
    answers: Vec<StoredAnswer>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredAnswer {
    prompt: String,
    text: String,
    ids: Vec<u32>,
    eos: bool,
}

/// [`answers`], reusing those already in the file at `path` for the same model (`sha256`) and
/// `max_tokens`, and writing the file back with the new ones.
pub fn answers_cached(
    model: &Model,
    sha256: [u8; 32],
    prompts: &[String],
    max_tokens: usize,
    path: &Path,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Answer>> {
    let key = hex::encode(sha256);
    let mut file: AnswerFile = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|f: &AnswerFile| f.model_sha256 == key && f.max_tokens == max_tokens)
        .unwrap_or_else(|| AnswerFile { model_sha256: key, max_tokens, answers: Vec::new() });
    let find = |f: &AnswerFile, p: &str| f.answers.iter().find(|a| a.prompt == p).cloned();
    let missing: Vec<String> = prompts.iter().filter(|p| find(&file, p).is_none()).cloned().collect();
    if !missing.is_empty() {
        for (prompt, a) in missing.iter().zip(answers(model, &missing, max_tokens, progress)?) {
            let eos = a.finish == Finish::Eos;
            file.answers.push(StoredAnswer { prompt: prompt.clone(), text: a.text, ids: a.ids, eos });
        }
        let bytes = serde_json::to_vec(&file).map_err(|e| TiqeError::Training(e.to_string()))?;
        std::fs::write(path, bytes).map_err(io_err(path))?;
    }
    prompts
        .iter()
        .map(|p| {
            let a = find(&file, p).ok_or_else(|| TiqeError::Training(format!("no answer for {p:?}")))?;
            Ok(Answer { text: a.text, ids: a.ids, finish: if a.eos { Finish::Eos } else { Finish::Length } })
        })
        .collect()
}

/// A model run with layers `drop` skipped: the hidden state jumps from the first shard to the
/// second (a worker that saves compute by dropping layers).
pub struct DroppedLayers {
    head: Shard,
    tail: Shard,
}

impl DroppedLayers {
    /// Loads layers `0..drop.start` and `drop.end..n` of the GGUF at `path`.
    pub fn open(path: &Path, drop: Range<usize>, threads: usize) -> Result<Self> {
        let g = Gguf::open(path)?;
        let pool = Arc::new(Pool::new(threads));
        let n = polylink_infer::ModelInfo::from_gguf(&g)?.hparams.n_layers;
        if drop.start == 0 || drop.end >= n || drop.start >= drop.end {
            return Err(TiqeError::Refused(format!("cannot drop layers {drop:?} of {n}")));
        }
        Ok(Self {
            head: Shard::load(&g, 0..drop.start, pool.clone())?,
            tail: Shard::load(&g, drop.end..n, pool)?,
        })
    }

    /// Greedy answer with `model`'s tokenizer and template.
    pub fn answer(&self, model: &Model, prompt: &str, max_tokens: usize) -> Result<Answer> {
        let tok = &model.tokenizer;
        let prompt_ids = tok.encode(&model.template.render(None, prompt));
        let ctx = prompt_ids.len() + max_tokens + 1;
        let (mut kh, mut kt) = (self.head.new_session(ctx), self.tail.new_session(ctx));
        let (mut hidden, mut logits) = (Vec::new(), Vec::new());
        let (mut ids, mut feed, mut finish) = (Vec::new(), prompt_ids, Finish::Length);
        while ids.len() < max_tokens {
            let kind =
                self.head.forward(&mut kh, ShardInput::Tokens(&feed), LogitsMode::Last, &mut hidden)?;
            let rows = match kind {
                OutputKind::Hidden { rows } => rows,
                OutputKind::Logits { .. } => {
                    return Err(TiqeError::Refused("first shard returned logits".into()));
                }
            };
            let dim = hidden.len() / rows.max(1);
            self.tail.forward(
                &mut kt,
                ShardInput::Hidden(&hidden[..rows * dim]),
                LogitsMode::Last,
                &mut logits,
            )?;
            let id = argmax(&logits);
            ids.push(id);
            if tok.is_eog(id) {
                finish = Finish::Eos;
                break;
            }
            feed = vec![id];
        }
        let text = tok.decode(&ids);
        Ok(Answer { text, ids, finish })
    }
}

/// Everything the labelled tasks of a set are made from.
pub struct Sources<'a> {
    /// The prompts.
    pub prompts: &'a [String],
    /// The registered model's answer to each prompt.
    pub honest: &'a [Answer],
    /// Substitute workers' answers per kind (one per prompt).
    pub subs: &'a [(Kind, Vec<Answer>)],
    /// The registered model's tokenizer (for garbage tokens).
    pub tok: &'a polylink_infer::Tokenizer,
    /// The tasks' `max_tokens`.
    pub max_tokens: usize,
}

/// Builds labelled tasks of each kind for prompt `i`.
pub fn samples_for(i: usize, src: &Sources<'_>, kinds: &[Kind], rng: &mut SplitMix) -> Vec<Sample> {
    let (prompts, honest, max_tokens) = (src.prompts, src.honest, src.max_tokens);
    let task = |text: &str, finish: Finish| Task::greedy(&prompts[i], text, max_tokens, finish);
    let h = &honest[i];
    let mut out = Vec::new();
    for &kind in kinds {
        let t = match kind {
            Kind::Honest => Some(task(&h.text, h.finish)),
            Kind::Mismatched if prompts.len() > 1 => {
                let j = (i + 1 + rng.below(prompts.len() - 1)) % prompts.len();
                Some(task(&honest[j].text, honest[j].finish))
            }
            Kind::Truncated => attack::truncate(&h.text, rng).map(|t| task(&t, Finish::Eos)),
            Kind::Garbage => {
                Some(task(&attack::garbage(src.tok, h.ids.len().clamp(8, max_tokens), rng), Finish::Eos))
            }
            Kind::Shuffled => Some(task(&attack::shuffle_words(&h.text, rng), h.finish)),
            _ => src
                .subs
                .iter()
                .find(|(k, _)| *k == kind)
                .and_then(|(_, a)| a.get(i))
                .map(|a| task(&a.text, a.finish)),
        };
        out.extend(t.map(|task| Sample { kind, task }));
    }
    out
}
