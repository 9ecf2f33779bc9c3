//! The seeded consistency test: with the task's seed, a validator re-derives every token of an
//! honest sampled answer (full marks at any temperature, and on a prefix cut short by a
//! disconnect), while a worker that returns the mode (greedy text claimed as sampling at T = 1)
//! or runs a degraded model with the right seed and sampler fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use polylink_infer::sample::margin;
use polylink_infer::{GenerateParams, LogitsMode, Model, SamplingParams, Shard, ShardInput, generate};
use polylink_tiqe::lab::{self, Source};
use polylink_tiqe::{ConsistencyConfig, Evaluator, Finish, Generation, ModelConsistency, Task};

const MAX_TOKENS: usize = 48;

/// Open-ended questions: long answers with many plausible continuations.
const OPEN: [&str; 3] = [
    "Write a short story about a lighthouse keeper.",
    "Describe your ideal weekend.",
    "Give me some tips for learning to cook.",
];

/// `shard`'s answer to `prompt` drawn by the rule with `sampling`, as a seeded task claiming
/// `claimed` (the temperature and seed the chain fixed).
fn task(
    model: &Model,
    shard: &Shard,
    prompt: &str,
    sampling: SamplingParams,
    claimed: SamplingParams,
) -> Task {
    let ids = model.tokenizer.encode(&model.template.render(None, prompt));
    let params = GenerateParams { max_tokens: MAX_TOKENS, sampling, stop: Vec::new(), ignore_eos: false };
    let g = generate(shard, &model.tokenizer, &ids, &params, &mut |_| {}).unwrap();
    let finish = if g.finish == polylink_infer::Finish::Eos { Finish::Eos } else { Finish::Length };
    let mut task = Task::greedy(prompt, &g.text, MAX_TOKENS, finish);
    task.output_ids = Some(g.ids);
    task.generation = Generation {
        temperature: claimed.temperature,
        top_p: claimed.top_p,
        seed: Some(claimed.seed),
        max_tokens: MAX_TOKENS,
        finish,
        ..Generation::default()
    };
    task
}

fn sampled(temperature: f32, top_p: f32, seed: u64) -> SamplingParams {
    SamplingParams { temperature, top_k: 0, top_p, seed }
}

#[test]
fn honest_seeded_answers_score_full_marks_and_the_mode_seeking_cheat_fails() {
    let model = common::model();
    let c = ModelConsistency::new(model.clone(), [0; 32], ConsistencyConfig::default());
    for (k, prompt) in OPEN.iter().enumerate() {
        let seed = 100 + k as u64;
        for p in [sampled(0.0, 1.0, seed), sampled(0.7, 1.0, seed), sampled(1.3, 0.9, seed)] {
            let v = c.evaluate(&task(&model, &model.shard, prompt, p, p)).unwrap();
            assert_eq!(v.score, 1000, "honest {p:?} on {prompt:?}: {}", v.evidence);
            assert_eq!(v.evidence["drawn_rate"], 1.0);
            assert_eq!(v.evidence["margin_max"], 0.0, "rows must be bit-identical here");
        }
        // The mode: greedy text claimed as sampling at temperature 1 with this seed (where the
        // draw differs from it: for a near-certain answer the two are the same text).
        let mode = task(&model, &model.shard, prompt, sampled(0.0, 1.0, 0), sampled(1.0, 1.0, seed));
        let honest = task(&model, &model.shard, prompt, sampled(1.0, 1.0, seed), sampled(1.0, 1.0, seed));
        assert_ne!(mode.output, honest.output, "{prompt:?}");
        let v = c.evaluate(&mode).unwrap();
        assert!(v.score < 500, "the mode passed as a T = 1 sample on {prompt:?}: {}", v.evidence);
    }
}

#[test]
fn an_answer_cut_short_passes_on_its_delivered_prefix() {
    let model = common::model();
    let c = ModelConsistency::new(model.clone(), [0; 32], ConsistencyConfig::default());
    let prompt = OPEN[0];
    let full = task(&model, &model.shard, prompt, sampled(1.0, 1.0, 9), sampled(1.0, 1.0, 9));
    let ids = full.output_ids.clone().unwrap();
    assert!(ids.len() > 12, "{ids:?}");
    let prefix = &ids[..10];
    let mut cut = full.clone();
    cut.output = model.tokenizer.decode(prefix);
    cut.output_ids = Some(prefix.to_vec());
    cut.generation.finish = Finish::CutShort;
    let v = c.evaluate(&cut).unwrap();
    assert_eq!(v.score, 1000, "{}", v.evidence);
    // The same prefix claimed as a complete answer is a truncation.
    cut.generation.finish = Finish::Eos;
    assert!(c.evaluate(&cut).unwrap().score < 500);
}

#[test]
fn a_requantized_model_with_the_right_seed_and_sampler_is_caught() {
    let model = common::model();
    let c = ModelConsistency::new(model.clone(), [0; 32], ConsistencyConfig::default());
    let files = common::files();
    let cheap = lab::cheat_shard(&files.registered, Source::Requantized, 14..16, 1).unwrap();
    let mut scores = Vec::new();
    for (k, prompt) in OPEN.iter().enumerate() {
        let p = sampled(1.0, 1.0, 40 + k as u64);
        scores.push(c.evaluate(&task(&model, &cheap, prompt, p, p)).unwrap().score);
    }
    assert!(scores.iter().all(|&s| s < 500), "requantized answers scored {scores:?}");
}

#[test]
fn the_margin_of_an_honest_token_is_zero_on_the_validators_teacher_forced_rows() {
    let model = common::model();
    let prompt = OPEN[1];
    let p = sampled(1.0, 0.95, 3);
    let t = task(&model, &model.shard, prompt, p, p);
    let ids = model.tokenizer.encode(&model.template.render(None, prompt));
    let out = t.output_ids.unwrap();
    let mut seq = ids.clone();
    seq.extend_from_slice(&out[..out.len() - 1]);
    let mut kv = model.shard.new_session(seq.len());
    let mut logits = Vec::new();
    model.shard.forward(&mut kv, ShardInput::Tokens(&seq), LogitsMode::All, &mut logits).unwrap();
    let vocab = model.info.hparams.vocab;
    for (i, &token) in out.iter().enumerate() {
        let row = &logits[(ids.len() - 1 + i) * vocab..][..vocab];
        assert_eq!(margin(row, &p, i as u64, token), 0.0, "token {i}");
    }
}
