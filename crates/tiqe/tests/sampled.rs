//! Sampled answers (temperature 1 over the whole vocabulary, the OpenAI API's default) from the
//! registered model are not mistaken for a cheat, although they often pick unlikely tokens; the
//! same prompts answered by another model (Gemma-3-270M) fall well below them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use polylink_infer::{GenerateParams, Model, SamplingParams, generate};
use polylink_models::{GEMMA3_270M, gguf_path};
use polylink_tiqe::{ConsistencyConfig, Evaluator, Finish, Generation, ModelConsistency, Task};

const MAX_TOKENS: usize = 32;

/// `model`'s sampled answer to `prompt`, as a task for the registered model to check.
fn sampled(model: &Model, prompt: &str, seed: u64) -> Task {
    let ids = model.tokenizer.encode(&model.template.render(None, prompt));
    let params = GenerateParams {
        max_tokens: MAX_TOKENS,
        sampling: SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, seed },
        stop: Vec::new(),
        ignore_eos: false,
    };
    let g = generate(&model.shard, &model.tokenizer, &ids, &params, &mut |_| {}).unwrap();
    let finish = if g.finish == polylink_infer::Finish::Eos { Finish::Eos } else { Finish::Length };
    let mut task = Task::greedy(prompt, &g.text, MAX_TOKENS, finish);
    task.generation =
        Generation { temperature: 1.0, max_tokens: MAX_TOKENS, finish, ..Generation::default() };
    task
}

#[test]
fn honest_sampled_answers_pass_and_another_models_fall_below_them() {
    let model = common::model();
    let consistency = ModelConsistency::new(model.clone(), [0; 32], ConsistencyConfig::default());
    let gemma = Model::open(&gguf_path(GEMMA3_270M).unwrap(), None, 1).unwrap();
    let z = |task: &Task| {
        let v = consistency.evaluate(task).unwrap();
        (v.score, v.evidence["likelihood_z"].as_f64().unwrap())
    };
    let (mut honest, mut other) = (Vec::new(), Vec::new());
    for prompt in common::bench_prompts(4) {
        for seed in 1..=3 {
            let (score, hz) = z(&sampled(&model, &prompt, seed));
            assert!(score >= 500, "an honest sampled answer scored {score} (z {hz:.2}) for {prompt:?}");
            honest.push(hz);
            other.push(z(&sampled(&gemma, &prompt, seed)).1);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    eprintln!("likelihood z: honest {honest:.2?}, gemma {other:.2?}");
    assert!(mean(&other) < mean(&honest) - 2.0, "honest {honest:.2?}, gemma {other:.2?}");
}
