//! The numerics rule: a row's logits do not depend on how many rows are processed with it. A
//! worker decodes one row per step (or one row per session of a batch); a validator
//! teacher-forces the whole answer in a few long passes; both must see the same logits, bit for
//! bit, whatever the chunking, the batch, the thread count and the kernel set (the CPU's SIMD
//! kernels or the portable scalar ones).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use polylink_infer::quant::{Kernels, with_kernels};
use polylink_infer::sample::argmax;
use polylink_infer::{KvCache, LogitsMode, Model, ShardInput};

const STEPS: usize = 80;

/// Greedy decoding one row at a time: the prompt ids, the output ids and each step's logits
/// (row k predicts output token k).
fn decode(m: &Model, prompt: &str, steps: usize) -> (Vec<u32>, Vec<u32>, Vec<Vec<f32>>) {
    let ids = m.tokenizer.encode(&m.template.render(None, prompt));
    let mut kv = m.shard.new_session(ids.len() + steps + 1);
    let mut out = Vec::new();
    m.shard.forward(&mut kv, ShardInput::Tokens(&ids), LogitsMode::Last, &mut out).unwrap();
    let (mut toks, mut rows) = (Vec::new(), Vec::new());
    for _ in 0..steps {
        rows.push(out.clone());
        let t = argmax(&out);
        toks.push(t);
        m.shard.forward(&mut kv, ShardInput::Tokens(&[t]), LogitsMode::Last, &mut out).unwrap();
    }
    (ids, toks, rows)
}

/// Teacher-forced logits of every output position, feeding prompt ++ output in chunks of `chunk`.
fn forced(m: &Model, prompt: &[u32], output: &[u32], chunk: usize) -> Vec<Vec<f32>> {
    let vocab = m.info.hparams.vocab;
    let mut seq = prompt.to_vec();
    seq.extend_from_slice(&output[..output.len() - 1]);
    let mut kv: KvCache = m.shard.new_session(seq.len());
    let (mut out, mut all) = (Vec::new(), Vec::new());
    for c in seq.chunks(chunk) {
        m.shard.forward(&mut kv, ShardInput::Tokens(c), LogitsMode::All, &mut out).unwrap();
        all.extend_from_slice(&out);
    }
    all.chunks(vocab).skip(prompt.len() - 1).map(<[f32]>::to_vec).collect()
}

/// Rows that differ and the largest absolute logit difference.
fn compare(a: &[Vec<f32>], b: &[Vec<f32>]) -> (usize, f32) {
    assert_eq!(a.len(), b.len());
    let mut rows = 0;
    let mut max = 0f32;
    for (x, y) in a.iter().zip(b) {
        let d = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        rows += usize::from(x != y);
        max = max.max(d);
    }
    (rows, max)
}

#[test]
fn teacher_forced_logits_equal_step_by_step_logits_whatever_the_chunking_and_threads() {
    let path = common::smollm2();
    let one = Model::open(&path, None, 1).unwrap();
    let two = Model::open(&path, None, 2).unwrap();
    let mut report = Vec::new();
    for prompt in ["Count to ten.", "Write a short poem about the sea and the wind over it."] {
        let (ids, toks, steps) = decode(&two, prompt, STEPS);
        let (_, toks1, steps1) = decode(&one, prompt, STEPS);
        assert_eq!(toks, toks1, "one thread and two decode different tokens");
        report.push(("threads 1 vs 2".to_string(), compare(&steps, &steps1)));
        for chunk in [1, 3, 48, 64, 200] {
            let f = forced(&two, &ids, &toks, chunk);
            report.push((format!("forced in chunks of {chunk}"), compare(&steps, &f)));
        }
    }
    eprintln!("rows differing, largest |Δlogit| vs step-by-step decoding: {report:#?}");
    for (what, (rows, max)) in &report {
        assert_eq!(*rows, 0, "{what}: {rows} rows differ (largest |Δ| {max})");
    }
}

#[test]
fn a_session_decoded_in_a_batch_of_eight_gets_the_logits_of_a_teacher_forced_pass() {
    let m = Model::open(&common::smollm2(), None, 2).unwrap();
    let vocab = m.info.hparams.vocab;
    let mut kvs = Vec::new();
    let (mut next, mut out) = (Vec::new(), Vec::new());
    for i in 0..8 {
        let ids = m.tokenizer.encode(&m.template.render(None, &format!("Say the number {i} in words.")));
        let mut kv = m.shard.new_session(ids.len() + 16);
        m.shard.forward(&mut kv, ShardInput::Tokens(&ids), LogitsMode::Last, &mut out).unwrap();
        next.push(argmax(&out));
        kvs.push((ids, kv));
    }
    let mut fed: Vec<Vec<u32>> = next.iter().map(|&t| vec![t]).collect();
    let mut rows: Vec<Vec<Vec<f32>>> = vec![Vec::new(); 8];
    for _ in 0..8 {
        let mut refs: Vec<&mut KvCache> = kvs.iter_mut().map(|(_, kv)| kv).collect();
        m.shard.forward_batch(&mut refs, ShardInput::Tokens(&next), &mut out).unwrap();
        for (i, row) in out.chunks(vocab).enumerate() {
            next[i] = argmax(row);
            fed[i].push(next[i]);
            rows[i].push(row.to_vec());
        }
    }
    for (i, (ids, _)) in kvs.iter().enumerate() {
        // Row k of the forced pass predicts fed[k]; batch step s predicted fed[s + 1].
        let f = forced(&m, ids, &fed[i], 64);
        let (differ, max) = compare(&rows[i], &f[1..]);
        assert_eq!(differ, 0, "session {i}: {differ} rows differ, largest |Δ| {max}");
    }
}

/// One row of logits per position.
type Rows = Vec<Vec<f32>>;

/// Step-by-step logits and teacher-forced logits (chunks of 64, the four-row kernels) of greedy
/// answers to `prompts` with the kernel set `k`.
fn logits_with(k: Kernels, m: &Model, prompts: &[&str], steps: usize) -> Vec<(Rows, Rows)> {
    with_kernels(k, || {
        prompts
            .iter()
            .map(|p| {
                let (ids, toks, rows) = decode(m, p, steps);
                (rows, forced(m, &ids, &toks, 64))
            })
            .collect()
    })
}

/// The canonical-arithmetic rule: the portable scalar kernels and the CPU's SIMD kernels give
/// the same logits, bit for bit, at every position, so a validator on any CPU sees a worker's.
fn portable_and_native_agree(path: &std::path::Path, prompts: &[&str], steps: usize) {
    let m = Model::open(path, None, 2).unwrap();
    let native = logits_with(Kernels::Native, &m, prompts, steps);
    let portable = logits_with(Kernels::Portable, &m, prompts, steps);
    for (p, ((n_steps, n_forced), (p_steps, p_forced))) in prompts.iter().zip(native.iter().zip(&portable)) {
        let (rows, max) = compare(n_steps, p_steps);
        assert_eq!(rows, 0, "{p:?} step by step: {rows} rows differ, largest |Δ| {max}");
        let (rows, max) = compare(n_forced, p_forced);
        assert_eq!(rows, 0, "{p:?} teacher-forced: {rows} rows differ, largest |Δ| {max}");
        let (rows, max) = compare(n_steps, n_forced);
        assert_eq!(rows, 0, "{p:?} native forced vs steps: {rows} rows differ, largest |Δ| {max}");
    }
}

#[test]
fn portable_and_native_kernels_give_bit_identical_logits_smollm2() {
    let prompts = [
        "Count to ten.",
        "Write a short poem about the sea and the wind over it.",
        "What is the capital of France? Answer in one sentence, then explain why.",
        "List three prime numbers larger than 100 and say how you checked them.",
    ];
    portable_and_native_agree(&common::smollm2(), &prompts, 24);
}

#[test]
fn portable_and_native_kernels_give_bit_identical_logits_gemma3() {
    let prompts = ["Count to ten.", "Describe a thunderstorm to a child in two sentences."];
    portable_and_native_agree(&common::gemma3(), &prompts, 12);
}
