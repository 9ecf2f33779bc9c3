//! The attack cases with the real models: an honest SmolLM2 worker scores high; a worker
//! that serves Gemma-3-270M or SmolLM2 with layers dropped, returns garbage, truncates, or
//! returns another prompt's answer scores low.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use polylink_models::{GEMMA3_270M, gguf_path};
use polylink_tiqe::lab::{self, Kind, SetSpec, Substitutes};

/// Short answers keep the test within a minute or two of CPU.
const MAX_TOKENS: usize = 48;

#[test]
fn honest_scores_high_and_every_attack_scores_low() {
    let (model, cascade) = common::cascade();
    let prompts = common::bench_prompts(3);
    let spec = SetSpec {
        kinds: vec![
            Kind::Honest,
            Kind::Mismatched,
            Kind::Truncated,
            Kind::Garbage,
            Kind::SubstituteGemma,
            Kind::DroppedLayers,
        ],
        subs: Substitutes {
            registered: common::files().registered,
            gemma: Some(gguf_path(GEMMA3_270M).unwrap()),
            dropped: 14..16,
        },
        threads: 1,
        max_tokens: MAX_TOKENS,
        seed: 5,
        answers_cache: None,
    };
    let samples = lab::generate_set(&model, &prompts, &spec, &mut |_| {}).unwrap();
    let mut honest_min = u16::MAX;
    let mut attack_max = (0, Kind::Honest);
    for s in &samples {
        let r = cascade.score(&s.task).unwrap();
        let score = r.verdict.score;
        eprintln!("{:<18} {score:>5} {}", s.kind.name(), r.verdict.evidence["stages"]);
        if s.kind == Kind::Honest {
            let c = &r.verdict.evidence["stages"]["consistency"]["evidence"];
            assert!(c["agree_rate"].as_f64().unwrap() >= 0.97, "honest answer disagrees with its model: {c}");
            assert!(c["end_ok"].as_bool().unwrap());
            honest_min = honest_min.min(score);
        } else if score > attack_max.0 {
            attack_max = (score, s.kind);
        }
    }
    assert_eq!(samples.iter().filter(|s| s.kind == Kind::Honest).count(), 3);
    assert!(honest_min >= 700, "an honest answer scored {honest_min}");
    assert!(attack_max.0 <= 300, "a {:?} answer scored {}", attack_max.1, attack_max.0);
}
