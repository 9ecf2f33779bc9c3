//! Running a model as a chain of layer-range shards (hidden states passed as f32 bytes) gives
//! bit-identical logits to the whole model, for the prompt (every position) and for decoding.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use polylink_infer::generate::sample::argmax;
use polylink_infer::{
    Gguf, KvCache, LogitsMode, OutputKind, Pool, Shard, ShardInput, Tokenizer, hidden_from_bytes,
    hidden_to_bytes,
};

/// Runs `ids` through the chain; returns the logits.
fn chain_step(shards: &[Shard], kvs: &mut [KvCache], ids: &[u32], mode: LogitsMode) -> Vec<f32> {
    let mut out = Vec::new();
    let mut wire: Vec<u8> = Vec::new();
    for (i, (s, kv)) in shards.iter().zip(kvs.iter_mut()).enumerate() {
        let hidden;
        let input = if i == 0 {
            ShardInput::Tokens(ids)
        } else {
            hidden = hidden_from_bytes(&wire, s.hparams().dim, 4096).unwrap();
            ShardInput::Hidden(&hidden)
        };
        match s.forward(kv, input, mode, &mut out).unwrap() {
            OutputKind::Hidden { rows } => {
                assert_eq!(rows, ids.len());
                wire = hidden_to_bytes(&out);
            }
            OutputKind::Logits { .. } => return out,
        }
    }
    panic!("the chain has no last shard")
}

fn check_cuts(path: &std::path::Path, cuts_list: &[&[usize]], prompt: &str, steps: usize) {
    let g = Gguf::open(path).unwrap();
    let pool = Arc::new(Pool::new(1));
    let n_layers = polylink_infer::HParams::from_gguf(&g).unwrap().n_layers;
    let tok = Tokenizer::from_gguf(&g, polylink_infer::HParams::from_gguf(&g).unwrap().vocab).unwrap();
    let ids = tok.encode(prompt);
    let whole = [Shard::load(&g, 0..n_layers, pool.clone()).unwrap()];
    let mut whole_kv = [whole[0].new_session(512)];
    let reference = chain_step(&whole, &mut whole_kv, &ids, LogitsMode::All);
    let mut ref_next = vec![argmax(&reference[reference.len() - whole[0].hparams().vocab..])];
    let mut ref_steps = Vec::new();
    for _ in 0..steps {
        let l = chain_step(&whole, &mut whole_kv, &ref_next[ref_next.len() - 1..], LogitsMode::Last);
        ref_next.push(argmax(&l));
        ref_steps.push(l);
    }
    for cuts in cuts_list {
        let shards: Vec<Shard> =
            cuts.windows(2).map(|w| Shard::load(&g, w[0]..w[1], pool.clone()).unwrap()).collect();
        assert!(shards[0].is_first() && shards[shards.len() - 1].is_last());
        let mut kvs: Vec<KvCache> = shards.iter().map(|s| s.new_session(512)).collect();
        let logits = chain_step(&shards, &mut kvs, &ids, LogitsMode::All);
        assert!(logits == reference, "cuts {cuts:?}: prompt logits differ from the whole model");
        for (i, want) in ref_steps.iter().enumerate() {
            let got = chain_step(&shards, &mut kvs, &ref_next[i..i + 1], LogitsMode::Last);
            assert!(&got == want, "cuts {cuts:?}: decode step {i} logits differ");
        }
    }
}

#[test]
fn smollm2_chains_0_15_30_and_0_10_20_30_are_bit_identical_to_the_whole_model() {
    let prompt = "<|im_start|>user\nWhy is the sea salty?<|im_end|>\n<|im_start|>assistant\n";
    check_cuts(&common::smollm2(), &[&[0, 15, 30], &[0, 10, 20, 30]], prompt, 8);
}

#[test]
fn gemma3_chain_across_a_global_layer_is_bit_identical() {
    check_cuts(&common::gemma3(), &[&[0, 5, 6, 18]], "The capital of France is", 4);
}
