//! The work the evaluators skip changes no result: a cached prompt prefix gives the logits of
//! running the same tokens afresh (and a later task never sees an earlier one's positions), and
//! batched generation gives the answers of one prompt at a time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use polylink_infer::{LogitsMode, ShardInput};
use polylink_tiqe::dataset;
use polylink_tiqe::prefix::{PrefixCache, shared_prefix};

#[test]
fn a_cached_prefix_gives_the_logits_of_a_fresh_pass() {
    let model = common::model();
    let tok = &model.tokenizer;
    let render = |u: &str| tok.encode(&model.template.render(None, u));
    let prefix = shared_prefix(&render("a"), &render("b"));
    assert!(prefix.len() > 5 && render("Hello there").starts_with(&prefix));
    let cache = PrefixCache::new(prefix.clone());
    let tasks = [
        ("Why is the sky blue?", "Because of Rayleigh scattering of sunlight by the air."),
        ("Name a colour.", "Red."),
        ("Why is the sky blue?", "Sunlight scatters."),
    ];
    for (prompt, answer) in tasks {
        let p = render(prompt);
        let mut seq = p.clone();
        seq.extend(tok.encode_with(answer, false));
        let mut got = Vec::new();
        assert_eq!(cache.logits(&model.shard, &seq, p.len() - 1, &mut got).unwrap(), prefix.len());
        // The same split computed from nothing: prefix, the prompt's rest, then the scored rows.
        let mut kv = model.shard.new_session(seq.len());
        let mut want = Vec::new();
        let chunks = [&seq[..prefix.len()], &seq[prefix.len()..p.len() - 1]];
        for c in chunks.iter().filter(|c| !c.is_empty()) {
            model.shard.forward(&mut kv, ShardInput::Tokens(c), LogitsMode::Last, &mut want).unwrap();
        }
        model
            .shard
            .forward(&mut kv, ShardInput::Tokens(&seq[p.len() - 1..]), LogitsMode::All, &mut want)
            .unwrap();
        assert_eq!(got.len(), (seq.len() - p.len() + 1) * model.shard.hparams().vocab);
        assert!(got == want, "logits differ for {prompt:?} / {answer:?}");
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
    let batched = dataset::answers(&model, &prompts, 24, &mut |_| {}).unwrap();
    for (p, b) in prompts.iter().zip(&batched) {
        assert_eq!(&dataset::answer(&model, p, 24).unwrap(), b, "prompt {p:?}");
    }
}
