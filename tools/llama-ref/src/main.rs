//! llama.cpp reference for PolyLink's inference engine: benchmark-only, never used by the tests.
//!
//! Modes (all print one JSON object on stdout):
//! - `tokenize MODEL TEXT_FILE`: token ids of the text (BOS per the GGUF, special tokens parsed).
//! - `greedy MODEL PROMPTS_JSON N`: for each `{"name","text"}` prompt, the prompt ids and N greedy
//!   tokens (stopping after an end-of-generation token), with the top-1/top-2 logit margin per step.
//! - `bench MODEL PROMPT_FILE THREADS N_DECODE`: prefill tok/s of the whole prompt in one batch,
//!   decode tok/s over N_DECODE greedy steps (EOS ignored), peak RSS.

use std::num::NonZeroU32;
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;
use serde::{Deserialize, Serialize};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(Deserialize)]
struct Prompt {
    name: String,
    text: String,
}

#[derive(Serialize)]
struct GreedyCase {
    name: String,
    text: String,
    prompt_ids: Vec<i32>,
    generated_ids: Vec<i32>,
    /// top-1 minus top-2 logit at each generated step (llama.cpp's logits).
    margins: Vec<f32>,
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let mut backend = LlamaBackend::init()?;
    backend.void_logs();
    match args.get(1).map(String::as_str) {
        Some("tokenize") if args.len() == 4 => tokenize(&backend, &args[2], &args[3]),
        Some("greedy") if args.len() == 5 => greedy(&backend, &args[2], &args[3], args[4].parse()?),
        Some("bench") if args.len() == 6 => {
            bench(&backend, &args[2], &args[3], args[4].parse()?, args[5].parse()?)
        }
        _ => Err("usage: llama-ref tokenize MODEL TEXT_FILE | greedy MODEL PROMPTS_JSON N | \
                  bench MODEL PROMPT_FILE THREADS N_DECODE"
            .into()),
    }
}

fn load(backend: &LlamaBackend, path: &str) -> Res<LlamaModel> {
    Ok(LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())?)
}

fn context<'a>(backend: &LlamaBackend, model: &'a LlamaModel, threads: i32) -> Res<LlamaContext<'a>> {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(2048))
        .with_n_batch(512)
        .with_n_ubatch(512)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    Ok(model.new_context(backend, params)?)
}

fn tokenize(backend: &LlamaBackend, model_path: &str, text_file: &str) -> Res<()> {
    let model = load(backend, model_path)?;
    let text = std::fs::read_to_string(text_file)?;
    let ids: Vec<i32> = model.vocab().tokenize(text.as_bytes(), true, true).iter().map(|t| t.0).collect();
    println!("{}", serde_json::json!({ "ids": ids }));
    Ok(())
}

/// Runs `tokens` starting at `pos` as one batch; logits only for the last one.
fn run_batch(ctx: &mut LlamaContext, tokens: &[LlamaToken], pos: usize) -> Res<()> {
    let mut batch = LlamaBatch::new(tokens.len().max(1), 1);
    for (i, &t) in tokens.iter().enumerate() {
        batch.add(t, (pos + i) as i32, &[0], i + 1 == tokens.len())?;
    }
    ctx.decode(&mut batch)?;
    Ok(())
}

fn top2(logits: &[f32]) -> (usize, f32) {
    let (mut best, mut b1, mut b2) = (0usize, f32::NEG_INFINITY, f32::NEG_INFINITY);
    for (i, &l) in logits.iter().enumerate() {
        if l > b1 {
            b2 = b1;
            b1 = l;
            best = i;
        } else if l > b2 {
            b2 = l;
        }
    }
    (best, b1 - b2)
}

fn greedy(backend: &LlamaBackend, model_path: &str, prompts_json: &str, n: usize) -> Res<()> {
    let model = load(backend, model_path)?;
    let prompts: Vec<Prompt> = serde_json::from_str(&std::fs::read_to_string(prompts_json)?)?;
    let mut cases = Vec::new();
    for p in prompts {
        let mut ctx = context(backend, &model, 2)?;
        let ids = model.vocab().tokenize(p.text.as_bytes(), true, true);
        run_batch(&mut ctx, &ids, 0)?;
        let (mut generated, mut margins) = (Vec::new(), Vec::new());
        let mut pos = ids.len();
        for _ in 0..n {
            let (next, margin) = top2(ctx.get_logits_ith(-1));
            let tok = LlamaToken(next as i32);
            generated.push(tok.0);
            margins.push(margin);
            if model.vocab().is_eog(tok) {
                break;
            }
            run_batch(&mut ctx, &[tok], pos)?;
            pos += 1;
        }
        let prompt_ids = ids.iter().map(|t| t.0).collect();
        cases.push(GreedyCase { name: p.name, text: p.text, prompt_ids, generated_ids: generated, margins });
    }
    println!("{}", serde_json::to_string_pretty(&cases)?);
    Ok(())
}

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn bench(
    backend: &LlamaBackend,
    model_path: &str,
    prompt_file: &str,
    threads: i32,
    n_decode: usize,
) -> Res<()> {
    let t_load = Instant::now();
    let model = load(backend, model_path)?;
    let mut ctx = context(backend, &model, threads)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(prompt_file)?;
    let ids = model.vocab().tokenize(text.as_bytes(), true, true);
    let t0 = Instant::now();
    run_batch(&mut ctx, &ids, 0)?;
    let (mut next, _) = top2(ctx.get_logits_ith(-1));
    let prefill_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    for step in 0..n_decode {
        run_batch(&mut ctx, &[LlamaToken(next as i32)], ids.len() + step)?;
        next = top2(ctx.get_logits_ith(-1)).0;
    }
    let decode_s = t1.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "engine": "llama.cpp",
            "threads": threads,
            "prompt_tokens": ids.len(),
            "decode_tokens": n_decode,
            "load_s": load_s,
            "prefill_tok_s": ids.len() as f64 / prefill_s,
            "decode_tok_s": n_decode as f64 / decode_s,
            "peak_rss_bytes": peak_rss_bytes(),
        })
    );
    Ok(())
}
