//! Running a model as a chain of layer-range shards (hidden states passed as f32 bytes) gives
//! bit-identical logits to the whole model, for the prompt (every position) and for decoding; so
//! does a shard that holds more layers running only a span of them (a fail-over stand-in).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use polylink_infer::sample::argmax;
use polylink_infer::{
    Gguf, KvCache, LogitsMode, OutputKind, Pool, Shard, ShardInput, Tokenizer, hidden_from_bytes,
    hidden_to_bytes,
};

/// Runs `ids` through the chain; returns the logits.
fn chain_step(shards: &[&Shard], kvs: &mut [KvCache], ids: &[u32], mode: LogitsMode) -> Vec<f32> {
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
    let whole = [&Shard::load(&g, 0..n_layers, pool.clone()).unwrap()];
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
        let shards: Vec<&Shard> = shards.iter().collect();
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

#[test]
fn a_whole_model_shard_running_spans_stands_in_for_each_stage_bit_identically() {
    let path = common::smollm2();
    let g = Gguf::open(&path).unwrap();
    let pool = Arc::new(Pool::new(1));
    let hp = polylink_infer::HParams::from_gguf(&g).unwrap();
    let tok = Tokenizer::from_gguf(&g, hp.vocab).unwrap();
    let ids = tok.encode("<|im_start|>user\nName three rivers.<|im_end|>\n<|im_start|>assistant\n");
    let whole = Shard::load(&g, 0..hp.n_layers, pool.clone()).unwrap();
    let stages = [Shard::load(&g, 0..12, pool.clone()).unwrap(), Shard::load(&g, 12..30, pool).unwrap()];

    // Reference: the two real stages.
    let mut kvs: Vec<KvCache> = stages.iter().map(|s| s.new_session(256)).collect();
    let refs: Vec<&Shard> = stages.iter().collect();
    let reference = chain_step(&refs, &mut kvs, &ids, LogitsMode::All);

    // Stage 2 replaced by the whole shard running 12..30, then stage 1 by it running 0..12.
    for (k, span) in [(1, 12..30), (0, 0..12)] {
        let mut chain: Vec<&Shard> = stages.iter().collect();
        chain[k] = &whole;
        let mut kvs: Vec<KvCache> = stages.iter().map(|s| s.new_session(256)).collect();
        kvs[k] = whole.new_span_session(span.clone(), 256).unwrap();
        assert_eq!(kvs[k].span(), span);
        let logits = chain_step(&chain, &mut kvs, &ids, LogitsMode::All);
        assert!(logits == reference, "span {span:?}: logits differ from the real stages");
    }

    // A span outside the shard is refused; a middle span takes hidden states, not tokens.
    assert!(stages[0].new_span_session(10..14, 64).is_err());
    let mut middle = whole.new_span_session(5..9, 64).unwrap();
    let mut out = Vec::new();
    assert!(whole.forward(&mut middle, ShardInput::Tokens(&ids), LogitsMode::Last, &mut out).is_err());
    let hidden = vec![0.01f32; hp.dim];
    let kind = whole.forward(&mut middle, ShardInput::Hidden(&hidden), LogitsMode::Last, &mut out).unwrap();
    assert_eq!(kind, OutputKind::Hidden { rows: 1 });

    // Two span sessions decode as one batch, and a batch mixing spans is refused.
    let mut a = whole.new_span_session(12..30, 64).unwrap();
    let mut b = whole.new_span_session(12..30, 64).unwrap();
    let two = vec![0.02f32; 2 * hp.dim];
    let kind = whole.forward_batch(&mut [&mut a, &mut b], ShardInput::Hidden(&two), &mut out).unwrap();
    assert_eq!(kind, OutputKind::Logits { rows: 2 });
    let mut c = whole.new_span_session(13..30, 64).unwrap();
    assert!(whole.forward_batch(&mut [&mut a, &mut c], ShardInput::Hidden(&two), &mut out).is_err());
}
