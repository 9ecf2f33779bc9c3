//! Where an evaluation's time goes: each stage (and the parts of the cheap ones) timed alone on a
//! real honest answer. `cargo run --release -p polylink-tiqe --example profile [threads]`.
//! With one thread, the CPU column is what the stage costs on an idle core.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use polylink_infer::{LogitsMode, ShardInput};
use polylink_models::{MINILM_L6_V2, SMOLLM2_135M, gguf_path, path};
use polylink_tiqe::{
    ConsistencyConfig, CrossEncoder, Evaluator, Files, Finish, Judge, MiniLmFiles, ModelConsistency,
    PAIR_TOKENS_MAX, Task, lab, open_registered,
};

/// Nanoseconds this thread has run on a CPU (Linux schedstat): unlike wall time, it does not
/// count time spent waiting for a core on a busy machine.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn time<T>(label: &str, runs: usize, mut f: impl FnMut() -> T) -> T {
    let (mut ms, mut cpu) = (Vec::new(), Vec::new());
    let mut out = None;
    for _ in 0..runs {
        let (t, c) = (Instant::now(), thread_cpu_ns());
        out = Some(f());
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        cpu.push((thread_cpu_ns() - c) as f64 / 1e6);
    }
    ms.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    println!(
        "{label:<34} wall median {:>7.1} ms  min {:>7.1} ms | this thread's CPU min {:>7.1} ms",
        ms[ms.len() / 2],
        ms[0],
        cpu[0]
    );
    out.unwrap()
}

fn main() {
    let threads: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let files = Files {
        registered: gguf_path(SMOLLM2_135M).unwrap(),
        minilm: MiniLmFiles {
            weights: path(MINILM_L6_V2, "model.safetensors").unwrap(),
            vocab: path(MINILM_L6_V2, "vocab.txt").unwrap(),
        },
    };
    let (model, sha) = open_registered(&files, threads).unwrap();
    let prompt = "Explain why the sky is blue in a short paragraph.";
    let a = lab::answer(&model, prompt, 128).unwrap();
    let task = Task::greedy(prompt, &a.text, 128, a.finish);
    let tok = &model.tokenizer;
    let p_ids = tok.encode(&model.template.render(None, prompt));
    let o_ids = tok.encode_with(&a.text, false);
    println!("threads {threads}: prompt {} tokens, output {} tokens", p_ids.len(), o_ids.len());
    let mut seq = p_ids.clone();
    seq.extend(&o_ids);
    let mut logits = Vec::new();
    for (label, mode) in
        [("smollm prefill, logits last", LogitsMode::Last), ("smollm prefill, logits all", LogitsMode::All)]
    {
        time(label, 5, || {
            let mut kv = model.shard.new_session(seq.len());
            model.shard.forward(&mut kv, ShardInput::Tokens(&seq), mode, &mut logits).unwrap();
        });
    }
    let cons = ModelConsistency::new(model.clone(), sha, ConsistencyConfig::default());
    let v = time("consistency.evaluate", 5, || cons.evaluate(&task).unwrap());
    // The floor: multiply-adds of the weights over the rows the stage feeds (layers for the
    // user part and the output, the LM head for the output rows), attention left out.
    let hp = model.shard.hparams();
    let layer_macs =
        hp.n_layers * (2 * hp.dim * hp.q_dim() + 2 * hp.dim * hp.kv_dim() + 3 * hp.dim * hp.ffn_dim);
    let head_macs = hp.dim * hp.vocab;
    let cached = v.evidence["prefix_tokens_cached"].as_u64().unwrap_or(0) as usize;
    let rows = seq.len() - cached;
    let gflop = 2.0 * (rows * layer_macs + (o_ids.len() + 1) * head_macs) as f64 / 1e9;
    println!(
        "  consistency work: {rows} rows through {} layers + {} LM-head rows = {gflop:.1} GFLOP \
         ({:.1} GFLOP for a 128-token answer after a 17-token user turn)",
        hp.n_layers,
        o_ids.len() + 1,
        2.0 * ((128 + 17) * layer_macs + 129 * head_macs) as f64 / 1e9
    );
    println!("  consistency {} {}", v.score, v.evidence);
    let cross = CrossEncoder::open(&files.minilm, None, threads).unwrap();
    let enc = cross.wordpiece().encode_pair(prompt, &a.text, PAIR_TOKENS_MAX);
    println!("minilm pair {} tokens", enc.ids.len());
    time("minilm joint forward", 3, || cross.bert().forward(&enc).unwrap());
    time("minilm embed prompt", 3, || cross.embed(prompt).unwrap());
    time("minilm embed output (unused by v2)", 3, || cross.embed(&a.text).unwrap());
    time("cross-encoder stage (features)", 5, || cross.features(prompt, &a.text).unwrap());
    let judge = Judge::new(model.clone()).unwrap();
    let jv = time("judge.evaluate", 3, || judge.evaluate(&task).unwrap());
    println!("  judge {} prompt_tokens {}", jv.score, jv.evidence["prompt_tokens"]);
    let _ = Finish::Eos;
    // Split prefill against one pass: how far do the last row's logits move?
    let ids = tok.encode(&judge.prompt(&task));
    let mut whole = Vec::new();
    let mut kv = model.shard.new_session(ids.len());
    model.shard.forward(&mut kv, ShardInput::Tokens(&ids), LogitsMode::Last, &mut whole).unwrap();
    for split in [30, 60, 100, 150, 200] {
        let mut kv = model.shard.new_session(ids.len());
        let mut part = Vec::new();
        model.shard.forward(&mut kv, ShardInput::Tokens(&ids[..split]), LogitsMode::Last, &mut part).unwrap();
        model.shard.forward(&mut kv, ShardInput::Tokens(&ids[split..]), LogitsMode::Last, &mut part).unwrap();
        let d = whole.iter().zip(&part).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        println!("split at {split}/{}: max |logit diff| {d:.4}", ids.len());
    }
}
