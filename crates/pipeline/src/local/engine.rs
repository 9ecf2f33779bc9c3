//! The engine thread: one loaded model, many sessions, each with its own KV cache.
//!
//! The thread takes one step of every active session per round (a prompt chunk, or one token),
//! so concurrent requests share the model fairly and a long prompt cannot stall the others. A
//! session whose client dropped its stream is removed before its next step. Extra sessions wait
//! in arrival order until a slot frees.

use polylink_infer::generate::detok::StreamDecoder;
use polylink_infer::{KvCache, LogitsMode, Model, OutputKind, Sampler, SamplingParams, ShardInput};
use polylink_protocol::{FinishReason, GenerationParams, TokenEvent, TokenSender};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, TryRecvError};

/// One generation asked of the engine.
#[derive(Debug)]
pub struct Job {
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Sampling and length.
    pub params: GenerationParams,
    /// Where tokens go; closed when the client is gone.
    pub events: TokenSender,
}

struct Session {
    kv: KvCache,
    sampler: Sampler,
    decoder: StreamDecoder,
    prompt: Vec<u32>,
    fed: usize,
    logits: Vec<f32>,
    generated: usize,
    max_tokens: usize,
    events: TokenSender,
}

/// How the engine thread runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Sessions stepped together.
    pub sessions_max: usize,
    /// Prompt tokens per prefill step.
    pub prefill_chunk: usize,
    /// Counts every token sampled (end-of-generation tokens included).
    pub sampled: Arc<AtomicU64>,
}

/// Runs the engine until every job sender is dropped.
pub fn run(model: Arc<Model>, jobs: Receiver<Job>, config: EngineConfig) {
    let (sessions_max, prefill_chunk) = (config.sessions_max.max(1), config.prefill_chunk.max(1));
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut active: Vec<Session> = Vec::new();
    loop {
        if active.is_empty() && waiting.is_empty() {
            match jobs.recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => return,
            }
        }
        loop {
            match jobs.try_recv() {
                Ok(job) => waiting.push_back(job),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) if active.is_empty() && waiting.is_empty() => return,
                Err(TryRecvError::Disconnected) => break,
            }
        }
        waiting.retain(|j| !j.events.is_closed());
        while active.len() < sessions_max {
            let Some(job) = waiting.pop_front() else { break };
            active.push(Session::start(&model, job));
        }
        active.retain_mut(|s| s.step(&model, prefill_chunk, &config.sampled));
    }
}

impl Session {
    fn start(model: &Model, job: Job) -> Self {
        let p = job.params;
        let sampling = SamplingParams { temperature: p.temperature, top_k: 0, top_p: p.top_p, seed: p.seed };
        Self {
            kv: model.shard.new_session(job.prompt.len() + p.max_tokens),
            sampler: Sampler::new(sampling),
            decoder: StreamDecoder::new(),
            prompt: job.prompt,
            fed: 0,
            logits: Vec::new(),
            generated: 0,
            max_tokens: p.max_tokens,
            events: job.events,
        }
    }

    /// One step; returns whether the session goes on.
    fn step(&mut self, model: &Model, prefill_chunk: usize, sampled: &AtomicU64) -> bool {
        if self.events.is_closed() {
            return false;
        }
        if self.fed < self.prompt.len() {
            let end = (self.fed + prefill_chunk).min(self.prompt.len());
            let chunk = self.prompt[self.fed..end].to_vec();
            self.fed = end;
            return self.forward(model, &chunk);
        }
        let tok = &model.tokenizer;
        let id = self.sampler.sample(&self.logits);
        sampled.fetch_add(1, Relaxed);
        if tok.is_eog(id) {
            let tail = self.decoder.finish();
            if !tail.is_empty() {
                let _ = self.events.unbounded_send(TokenEvent::Token { text: tail });
            }
            let _ = self.events.unbounded_send(TokenEvent::Done(FinishReason::Stop));
            return false;
        }
        self.generated += 1;
        let mut text = if tok.is_control(id) { String::new() } else { self.decoder.push(tok.piece(id)) };
        let last = self.generated >= self.max_tokens;
        if last {
            text.push_str(&self.decoder.finish());
        }
        if self.events.unbounded_send(TokenEvent::Token { text }).is_err() {
            return false;
        }
        if last {
            let _ = self.events.unbounded_send(TokenEvent::Done(FinishReason::Length));
            return false;
        }
        self.forward(model, &[id])
    }

    fn forward(&mut self, model: &Model, ids: &[u32]) -> bool {
        match model.shard.forward(&mut self.kv, ShardInput::Tokens(ids), LogitsMode::Last, &mut self.logits) {
            Ok(OutputKind::Logits { .. }) => true,
            Ok(OutputKind::Hidden { .. }) => {
                let _ = self.events.unbounded_send(TokenEvent::Failed(
                    "the model returned hidden states, not logits".into(),
                ));
                false
            }
            Err(e) => {
                let _ = self.events.unbounded_send(TokenEvent::Failed(e.to_string()));
                false
            }
        }
    }
}
