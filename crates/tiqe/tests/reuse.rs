//! The work the evaluators skip changes no result: teacher forcing with a cached prompt prefix
//! gives exactly the logits a worker saw while decoding (and a later task never sees an earlier
//! one's positions), and batched generation gives the answers of one prompt at a time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use polylink_infer::{LogitsMode, ShardInput};
use polylink_tiqe::lab;
use polylink_tiqe::{PrefixCache, shared_prefix};

#[test]
fn teacher_forcing_with_a_cached_prefix_gives_the_workers_decode_logits() {
    let model = common::model();
    let tok = &model.tokenizer;
    let vocab = model.shard.hparams().vocab;
    let render = |u: &str| tok.encode(&model.template.render(None, u));
    let prefix = shared_prefix(&render("a"), &render("b"));
    assert!(prefix.len() > 5 && render("Hello there").starts_with(&prefix));
    let cache = PrefixCache::new(prefix.clone());
    let greedy = lab::answer(&model, "Why is the sky blue?", 80).unwrap();
    let tasks = [
        ("Why is the sky blue?", greedy.ids.clone()),
        ("Name a colour.", tok.encode_with("Red, or perhaps a deep blue like the sea.", false)),
        ("Why is the sky blue?", tok.encode_with("Sunlight scatters.", false)),
    ];
    for (prompt, answer) in tasks {
        let p = render(prompt);
        let mut seq = p.clone();
        seq.extend(&answer);
        let mut got = Vec::new();
        assert_eq!(cache.logits(&model.shard, &seq, p.len() - 1, &mut got).unwrap(), prefix.len());
        // What a worker computes: the prompt in one pass, then one token at a time.
        let mut kv = model.shard.new_session(seq.len());
        let mut want = Vec::new();
        let mut row = Vec::new();
        model.shard.forward(&mut kv, ShardInput::Tokens(&p), LogitsMode::Last, &mut row).unwrap();
        want.extend_from_slice(&row);
        for &t in &answer {
            model.shard.forward(&mut kv, ShardInput::Tokens(&[t]), LogitsMode::Last, &mut row).unwrap();
            want.extend_from_slice(&row);
        }
        assert_eq!(got.len(), (answer.len() + 1) * vocab);
        assert!(got == want, "teacher-forced logits differ from decoding for {prompt:?}");
    }
    // A sequence that does not start with the prefix runs afresh and says so.
    let raw = tok.encode("no template here at all");
    let mut out = Vec::new();
    assert_eq!(cache.logits(&model.shard, &raw, 2, &mut out).unwrap(), 0);
}

#[test]
fn batched_generation_gives_the_answers_of_one_prompt_at_a_time() {
    let model = common::model();
    let prompts: Vec<String> = common::bench_prompts(3);
    let batched = lab::answers(&model, &prompts, 24, &mut |_| {}).unwrap();
    for (p, b) in prompts.iter().zip(&batched) {
        assert_eq!(&lab::answer(&model, p, 24).unwrap(), b, "prompt {p:?}");
    }
}
