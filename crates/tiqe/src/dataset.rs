//! Honest and degraded answers generated with the project's own models from committed prompts:
//! the training set of the cross-encoder head and the benchmark's test set.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use polylink_infer::{
    Finish as InferFinish, GenerateParams, Gguf, LogitsMode, Model, OutputKind, Pool, Shard, ShardInput,
    generate, generate::sample::argmax,
};

use crate::attack::{self, Kind};
use crate::error::{Result, TiqeError, io_err};
use crate::task::{Finish, Task};
use crate::util::SplitMix;

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
