//! What the process-level pipeline tests share: starting `polylink stage` processes and the
//! whole model's greedy answer that every pipeline must reproduce.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use polylink_infer::{GenerateParams, Gguf, HParams, Pool, SamplingParams, Shard, Tokenizer, generate};
use polylink_node::launch::{StageLaunch, StageProcess};
use polylink_node::netem::Host;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The SmolLM2 file every pipeline test uses.
pub fn model_path() -> PathBuf {
    polylink_models::gguf_path(polylink_models::SMOLLM2_135M).unwrap()
}

/// Starts a one-thread stage for `layers`, on 127.0.0.1 or inside `host`'s namespace.
pub fn start_stage(
    model: &Path,
    seed: u8,
    layers: std::ops::Range<usize>,
    host: Option<&Host>,
) -> StageProcess {
    StageProcess::start(&StageLaunch {
        exe: Path::new(env!("CARGO_BIN_EXE_polylink")),
        model,
        layers: Some(layers),
        seed: [seed; 32],
        threads: 1,
        core: None,
        netns: host.map(|h| h.netns.as_str()),
        listen: host.map(|h| SocketAddr::new(h.addr, 0)),
    })
    .unwrap()
}

/// Each question as a chat prompt, with its first `n` greedy tokens from the whole model.
pub fn solo_answers(model: &Path, questions: &[&str], n: usize) -> Vec<(Vec<u32>, Vec<u32>)> {
    solo_answers_sampled(model, questions, n, SamplingParams::default())
}

/// [`solo_answers`] drawn with `sampling` instead of greedily.
pub fn solo_answers_sampled(
    model: &Path,
    questions: &[&str],
    n: usize,
    sampling: SamplingParams,
) -> Vec<(Vec<u32>, Vec<u32>)> {
    let gguf = Gguf::open(model).unwrap();
    let tokenizer = Tokenizer::from_gguf(&gguf, HParams::from_gguf(&gguf).unwrap().vocab).unwrap();
    let template = polylink_infer::ChatTemplate::detect(&tokenizer, polylink_infer::Arch::Llama);
    let whole = Shard::load(&gguf, 0..30, Arc::new(Pool::new(1))).unwrap();
    let params = GenerateParams { max_tokens: n, sampling, stop: Vec::new(), ignore_eos: true };
    questions
        .iter()
        .map(|q| {
            let prompt = tokenizer.encode(&template.render(None, q));
            let ids = generate(&whole, &tokenizer, &prompt, &params, &mut |_| {}).unwrap().ids;
            (prompt, ids)
        })
        .collect()
}
