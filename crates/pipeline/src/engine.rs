//! The stage's engine thread: it owns the loaded [`Shard`] and every session's KV cache, and runs
//! forwards one at a time (the shard's own worker pool parallelises inside each one).
//!
//! Connections hand it [`Job`]s over a channel and await the [`Response`]. A request that does not
//! fit (wrong input kind or width, a position other than what is cached, too many sessions)
//! gets an error response and changes nothing.

use crate::wire::{ErrorCode, Input, Request, Response, Want};
use futures::channel::oneshot;
use polylink_infer::{KvCache, LogitsMode, OutputKind, Sampler, SamplingParams, Shard, ShardInput};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Limits a stage enforces on its sessions.
#[derive(Debug, Clone, Copy)]
pub struct EngineLimits {
    /// Most sessions held at once.
    pub sessions_max: usize,
    /// Most positions per session.
    pub context_max: usize,
    /// Sessions idle this long are dropped.
    pub idle_timeout: Duration,
}

impl Default for EngineLimits {
    fn default() -> Self {
        Self { sessions_max: 64, context_max: 4096, idle_timeout: Duration::from_secs(600) }
    }
}

/// Sessions are keyed by the authenticated head that owns them and its session id.
pub type SessionKey = ([u8; 32], u64);

/// One request for the engine thread.
pub struct Job {
    /// Whose session.
    pub owner: [u8; 32],
    /// The request.
    pub request: Request,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Response>,
}

/// A handle to submit jobs; the thread stops when every handle is gone.
#[derive(Clone)]
pub struct EngineHandle {
    jobs: mpsc::Sender<Job>,
}

impl EngineHandle {
    /// Starts the engine thread for `shard`.
    pub fn start(shard: Arc<Shard>, limits: EngineLimits) -> Self {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(format!("stage-{}-{}", shard.range().start, shard.range().end))
            .spawn(move || Engine { shard, limits, sessions: HashMap::new(), out: Vec::new() }.run(rx))
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!("cannot start the engine thread: {e}"));
        Self { jobs }
    }

    /// Runs a request and returns the answer.
    pub async fn call(&self, owner: [u8; 32], request: Request) -> Response {
        let (reply, answer) = oneshot::channel();
        if self.jobs.send(Job { owner, request, reply }).is_err() {
            return engine_error("the engine thread has stopped");
        }
        answer.await.unwrap_or_else(|_| engine_error("the engine thread dropped the request"))
    }
}

struct Session {
    kv: KvCache,
    last_used: Instant,
}

struct Engine {
    shard: Arc<Shard>,
    limits: EngineLimits,
    sessions: HashMap<SessionKey, Session>,
    out: Vec<f32>,
}

fn engine_error(message: &str) -> Response {
    Response::Error { code: ErrorCode::Engine, message: message.to_string() }
}

fn refuse(code: ErrorCode, message: String) -> Response {
    Response::Error { code, message }
}

impl Engine {
    fn run(mut self, jobs: mpsc::Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            let response = self.handle(job.owner, job.request);
            // The connection may be gone; the work is done either way.
            let _ = job.reply.send(response);
        }
    }

    fn handle(&mut self, owner: [u8; 32], request: Request) -> Response {
        let now = Instant::now();
        let idle = self.limits.idle_timeout;
        self.sessions.retain(|_, s| now.duration_since(s.last_used) < idle);
        match request {
            Request::Close { session } => {
                self.sessions.remove(&(owner, session));
                Response::Done
            }
            Request::Forward { session, pos, input, want } => {
                self.forward((owner, session), pos, input, want, now)
            }
        }
    }

    fn forward(&mut self, key: SessionKey, pos: u32, input: Input, want: Want, now: Instant) -> Response {
        let shard = &self.shard;
        let dim = shard.hparams().dim;
        match (&input, shard.is_first()) {
            (Input::Tokens(_), false) => {
                return refuse(ErrorCode::BadRequest, "this stage takes hidden states".into());
            }
            (Input::Hidden { .. }, true) => {
                return refuse(ErrorCode::BadRequest, "this stage takes token ids".into());
            }
            (Input::Hidden { dim: d, .. }, false) if *d as usize != dim => {
                return refuse(ErrorCode::BadRequest, format!("hidden width {d}, this model's is {dim}"));
            }
            _ => {}
        }
        match (want, shard.is_last()) {
            (Want::Hidden, true) => {
                return refuse(ErrorCode::BadRequest, "the last stage returns tokens".into());
            }
            (Want::Sample(_), false) => {
                return refuse(ErrorCode::BadRequest, "only the last stage samples".into());
            }
            _ => {}
        }
        if !self.sessions.contains_key(&key) {
            if pos != 0 {
                return refuse(ErrorCode::BadRequest, format!("unknown session {} at position {pos}", key.1));
            }
            if self.sessions.len() >= self.limits.sessions_max {
                return refuse(
                    ErrorCode::Busy,
                    format!("stage holds {} sessions already", self.sessions.len()),
                );
            }
            let kv = shard.new_session(self.limits.context_max);
            self.sessions.insert(key, Session { kv, last_used: now });
        }
        let Some(session) = self.sessions.get_mut(&key) else {
            return engine_error("session vanished");
        };
        if pos as usize != session.kv.len() {
            let cached = session.kv.len();
            return refuse(
                ErrorCode::BadRequest,
                format!("position {pos}, but {cached} positions are cached"),
            );
        }
        session.last_used = now;
        let shard_input = match &input {
            Input::Tokens(ids) => ShardInput::Tokens(ids),
            Input::Hidden { values, .. } => ShardInput::Hidden(values),
        };
        let kind = match shard.forward(&mut session.kv, shard_input, LogitsMode::Last, &mut self.out) {
            Ok(kind) => kind,
            Err(e) => return refuse(ErrorCode::BadRequest, e.to_string()),
        };
        match (want, kind) {
            (Want::Nothing, _) => Response::Done,
            (Want::Hidden, OutputKind::Hidden { rows }) => {
                Response::Hidden { dim: dim as u32, values: self.out[..rows * dim].to_vec() }
            }
            (Want::Sample(spec), OutputKind::Logits { rows }) => {
                let vocab = self.out.len() / rows.max(1);
                let last = &self.out[(rows - 1) * vocab..rows * vocab];
                // Seed by position: a step replayed on a replacement stage draws the same token.
                let position = u64::from(pos) + input.rows() as u64;
                let mut sampler = Sampler::new(SamplingParams {
                    temperature: spec.temperature,
                    top_k: spec.top_k as usize,
                    top_p: spec.top_p,
                    seed: spec.seed ^ position.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                });
                Response::Token(sampler.sample(last))
            }
            _ => engine_error("the shard returned an unexpected output"),
        }
    }
}
