//! Text generation over a whole model: chat templates, sampling, stop sequences and a streaming
//! detokenizer.

pub(crate) mod chat;
pub(crate) mod decode;
pub(crate) mod detok;
pub mod sample;

use std::time::Instant;

use crate::error::{InferError, Result};
use crate::model::shard::{LogitsMode, OutputKind, Shard, ShardInput};
use crate::tokenizer::Tokenizer;
use decode::Decoding;
use sample::{Sampler, SamplingParams};

/// Options of one generation.
#[derive(Debug, Clone)]
pub struct GenerateParams {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Sampling options.
    pub sampling: SamplingParams,
    /// Generation stops before any of these strings.
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens (benchmarks).
    pub ignore_eos: bool,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self { max_tokens: 128, sampling: SamplingParams::default(), stop: Vec::new(), ignore_eos: false }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-generation token.
    Eos,
    /// A stop sequence.
    Stop,
    /// `max_tokens` reached.
    Length,
}

/// The result of one generation.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Prompt token count.
    pub prompt_tokens: usize,
    /// Generated ids (an ending EOS included).
    pub ids: Vec<u32>,
    /// Generated text (up to any stop sequence).
    pub text: String,
    /// Why it ended.
    pub finish: Finish,
    /// Seconds of the prompt pass.
    pub prefill_s: f64,
    /// Seconds of the decode steps after the first token.
    pub decode_s: f64,
}

/// Runs a whole-model shard from prompt ids to text; `on_text` receives text as it completes.
pub fn generate(
    shard: &Shard,
    tok: &Tokenizer,
    prompt: &[u32],
    params: &GenerateParams,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation> {
    if !(shard.is_first() && shard.is_last()) {
        return Err(InferError::BadInput("generation needs the whole model".into()));
    }
    let ctx = shard.hparams().context_len;
    if prompt.len() + params.max_tokens > ctx {
        return Err(InferError::ContextFull { needed: prompt.len() + params.max_tokens, context: ctx });
    }
    let mut kv = shard.new_session(prompt.len() + params.max_tokens);
    let mut logits = Vec::new();
    let mut sampler = Sampler::new(params.sampling);
    let mut decoding = Decoding::new(params.max_tokens, params.ignore_eos);
    let (mut text, mut emitted) = (String::new(), 0usize);
    let mut ids = Vec::new();
    let t0 = Instant::now();
    forward_logits(shard, &mut kv, prompt, &mut logits)?;
    let prefill_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut finish = Finish::Length;
    while ids.len() < params.max_tokens {
        let id = sampler.sample(&logits);
        ids.push(id);
        let decoded = decoding.push(tok, id);
        text.push_str(&decoded.text);
        if decoded.finish == Some(Finish::Eos) {
            finish = Finish::Eos;
            break;
        }
        if let Some(cut) = params.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
            text.truncate(cut);
            finish = Finish::Stop;
            break;
        }
        // Hold back a tail that could still grow into a stop sequence.
        let safe = text.len() - held_back(&text, &params.stop);
        if safe > emitted {
            on_text(&text[emitted..safe]);
            emitted = safe;
        }
        if decoded.finish.is_some() {
            break;
        }
        forward_logits(shard, &mut kv, &[id], &mut logits)?;
    }
    if text.len() > emitted {
        on_text(&text[emitted..]);
    }
    Ok(Generation {
        prompt_tokens: prompt.len(),
        ids,
        text,
        finish,
        prefill_s,
        decode_s: t1.elapsed().as_secs_f64(),
    })
}

fn forward_logits(shard: &Shard, kv: &mut crate::KvCache, ids: &[u32], out: &mut Vec<f32>) -> Result<()> {
    match shard.forward(kv, ShardInput::Tokens(ids), LogitsMode::Last, out)? {
        OutputKind::Logits { .. } => Ok(()),
        OutputKind::Hidden { .. } => Err(InferError::BadInput("shard returned hidden states".into())),
    }
}

/// Bytes at the end of `text` that are a proper prefix of some stop string.
fn held_back(text: &str, stops: &[String]) -> usize {
    let mut keep = 0;
    for s in stops {
        for l in (1..s.len()).rev() {
            if l <= text.len()
                && text.is_char_boundary(text.len() - l)
                && s.is_char_boundary(l)
                && text.ends_with(&s[..l])
            {
                keep = keep.max(l);
                break;
            }
        }
    }
    keep
}
