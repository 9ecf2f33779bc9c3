//! Empty answers: a raw completion of a finished sentence often ends at once, and the worker
//! that honestly returns nothing must pass (greedy, seeded or sampled), while an empty answer
//! where the model would have spoken is still caught. (Found by `bench traffic`: honest empty
//! completions scored as junk struck the worker that served them.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use polylink_infer::{GenerateParams, Model, SamplingParams, generate};
use polylink_tiqe::{Finish, Generation, Task};

/// Raw completion prompts (no chat template) of the kind `bench traffic` sends.
const RAW: [&str; 4] = [
    "Once upon a time, explain photosynthesis in one sentence.",
    "Once upon a time, suggest a name for a bakery.",
    "Once upon a time, what is the capital of france?",
    "Once upon a time, count to ten.",
];

/// Whether `sampling` ends at once after `ids` (the model's first token is an end token).
fn ends_at_once(model: &Model, ids: &[u32], sampling: SamplingParams) -> bool {
    let params = GenerateParams { max_tokens: 1, sampling, stop: Vec::new(), ignore_eos: false };
    let g = generate(&model.shard, &model.tokenizer, ids, &params, &mut |_| {}).unwrap();
    g.finish == polylink_infer::Finish::Eos
}

/// An empty answer to `ids` claiming the model ended, at `temperature` with `seed`.
fn empty(prompt: &str, ids: &[u32], temperature: f32, seed: Option<u64>) -> Task {
    let mut task = Task::greedy(prompt, "", 48, Finish::Eos);
    task.prompt_ids = Some(ids.to_vec());
    task.output_ids = Some(Vec::new());
    task.generation =
        Generation { temperature, seed, max_tokens: 48, finish: Finish::Eos, ..Generation::default() };
    task
}

#[test]
fn an_honest_empty_answer_passes_and_an_empty_answer_where_the_model_speaks_fails() {
    let (model, cascade) = common::cascade();
    let tok = &model.tokenizer;
    let greedy = SamplingParams { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0 };
    let mut quiet = 0;
    for prompt in RAW {
        let ids = tok.encode_with(prompt, false);
        if !ends_at_once(&model, &ids, greedy) {
            // The model speaks here: an empty greedy answer is a worker that skipped the work.
            let r = cascade.score(&empty(prompt, &ids, 0.0, None)).unwrap();
            assert!(r.verdict.score < 500, "empty greedy answer to {prompt:?}: {}", r.verdict.evidence);
            continue;
        }
        quiet += 1;
        let r = cascade.score(&empty(prompt, &ids, 0.0, None)).unwrap();
        assert_eq!(r.verdict.score, 1000, "honest greedy empty answer to {prompt:?}: {}", r.verdict.evidence);
        assert!(!r.verdict.uncertain);
        // Sampled at T = 1 without a seed: ending at once is the likeliest draw here.
        let r = cascade.score(&empty(prompt, &ids, 1.0, None)).unwrap();
        assert_eq!(r.verdict.score, 1000, "sampled empty answer to {prompt:?}: {}", r.verdict.evidence);
        // Seeded: the first seed whose draw ends at once passes; one whose draw speaks fails.
        let draws: Vec<(u64, bool)> = (0..40)
            .map(|seed| {
                let s = SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, seed };
                (seed, ends_at_once(&model, &ids, s))
            })
            .collect();
        let ends = draws.iter().find(|d| d.1).expect("no seed of 40 ends at once at T = 1").0;
        let r = cascade.score(&empty(prompt, &ids, 1.0, Some(ends))).unwrap();
        assert_eq!(r.verdict.score, 1000, "seed {ends} draws the end: {}", r.verdict.evidence);
        if let Some(&(speaks, _)) = draws.iter().find(|d| !d.1) {
            let r = cascade.score(&empty(prompt, &ids, 1.0, Some(speaks))).unwrap();
            assert!(r.verdict.score < 500, "seed {speaks} draws a word, not the end: {}", r.verdict.evidence);
        }
    }
    assert!(quiet > 0, "no raw prompt ends at once; the test needs one");
    // A chat question the model answers at length: an empty answer fails at any temperature.
    let prompt = "Write a short story about a lighthouse keeper.";
    let ids = tok.encode(&model.template.render(None, prompt));
    for (t, seed) in [(0.0, None), (1.0, None), (1.0, Some(3))] {
        let r = cascade.score(&empty(prompt, &ids, t, seed)).unwrap();
        assert!(r.verdict.score < 500, "empty answer at T = {t}, seed {seed:?}: {}", r.verdict.evidence);
    }
}
