//! The one multi-session engine: a task on a dedicated thread (spawned through the runtime it is
//! given, so it can run seeded) that owns the loaded [`Shard`] and every session's KV cache and
//! sampler, and runs the forwards (the shard's own worker pool parallelises inside each one). A
//! worker serves its pipeline stage with it and the local backend its whole model. Idle sessions
//! expire by that runtime's clock.
//!
//! Connections hand it [`Job`]s over a channel and await the [`Response`]. Whatever has queued up
//! while a forward ran is looked at together: one-token decode steps of different sessions are
//! run as one [`Shard::forward_batch`] (each weight row is read once for all of them, and each
//! row's arithmetic is the same as alone, so tokens do not change), other jobs one at a time, in
//! arrival order. A session runs the layers its first request names, the worker's whole range
//! or a span of it (standing in for a failed stage that held fewer layers); only sessions over the
//! same layers batch together. A request that does not fit (layers not held, wrong input kind or
//! width, a position other than what is cached, too many sessions) gets an error response and
//! changes nothing.
//!
//! A session that samples (the last stage) creates its [`Sampler`] at its first sampled step and
//! calls it once per sampled step, in order: a prefill chunk that needs no token asks for
//! nothing, and a replay onto a replacement stage samples its steps again, so the sampler is where
//! it was.
//!
//! A session serves the task its first forward names. Closing it answers with a receipt per span,
//! signed with the worker's key: the task, the layers and the rows this worker computed (its KV
//! cache's length, a replay onto it included), so the worker is paid only for what it ran and
//! answers only for tasks it signed, and the digests of the token ids it was fed (a first stage)
//! and of the sampling and tokens it drew (a last stage), so it answers only for those tokens.

use crate::wire::{ErrorCode, Input, Request, Response, Want};
use commonware_runtime::{Clock, Spawner};
use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use polylink_infer::{KvCache, LogitsMode, OutputKind, Sampler, SamplingParams, Shard, ShardInput};
use polylink_types::{Hash32, SecretKey, TokenDigest, WorkReceipt};
use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Limits a stage enforces on its sessions.
#[derive(Debug, Clone, Copy)]
pub struct EngineLimits {
    /// Most sessions held at once.
    pub sessions_max: usize,
    /// Most positions per session.
    pub context_max: usize,
    /// Sessions idle this long are dropped.
    pub idle_timeout: Duration,
    /// Most decode steps run together in one batched forward (1 turns batching off).
    pub batch_max: usize,
}

impl Default for EngineLimits {
    fn default() -> Self {
        Self { sessions_max: 64, context_max: 4096, idle_timeout: Duration::from_secs(600), batch_max: 16 }
    }
}

/// Sessions are keyed by the authenticated head that owns them, its session id, and the first
/// layer run: one worker may run two spans of the same session (standing in for two stages).
pub type SessionKey = ([u8; 32], u64, usize);

/// One request for the engine thread.
pub struct Job {
    /// Whose session.
    pub owner: [u8; 32],
    /// The request.
    pub request: Request,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Response>,
}

impl Job {
    /// The head's session this job belongs to (all its spans): its jobs run in order.
    fn session(&self) -> ([u8; 32], u64) {
        match &self.request {
            Request::Forward { session, .. } | Request::Close { session } => (self.owner, *session),
            // Never batched (the server answers echoes itself); the key only orders jobs.
            Request::Echo { .. } => (self.owner, u64::MAX),
        }
    }

    fn key(&self) -> Option<SessionKey> {
        match &self.request {
            Request::Forward { session, layers, .. } => Some((self.owner, *session, layers.start as usize)),
            Request::Close { .. } | Request::Echo { .. } => None,
        }
    }
}

/// A handle to submit jobs; the engine stops when every handle is gone.
#[derive(Clone)]
pub struct EngineHandle {
    jobs: mpsc::UnboundedSender<Job>,
}

impl EngineHandle {
    /// Starts the engine for `shard` as a task of `context` on a dedicated thread (forwards block
    /// it for their whole length); with `signer` (the worker's key) it signs a receipt for each
    /// session that served a task when the session closes.
    pub fn start<E: Spawner + Clock>(
        context: E,
        shard: Arc<Shard>,
        limits: EngineLimits,
        signer: Option<SecretKey>,
    ) -> Self {
        let (jobs, rx) = mpsc::unbounded::<Job>();
        context.dedicated().spawn(move |clock| {
            Engine { clock, shard, limits, signer, sessions: HashMap::new(), out: Vec::new() }.run(rx)
        });
        Self { jobs }
    }

    /// Runs a request and returns the answer.
    pub async fn call(&self, owner: [u8; 32], request: Request) -> Response {
        let (reply, answer) = oneshot::channel();
        if self.jobs.unbounded_send(Job { owner, request, reply }).is_err() {
            return engine_error("the engine thread has stopped");
        }
        answer.await.unwrap_or_else(|_| engine_error("the engine thread dropped the request"))
    }
}

struct Session {
    /// The task it serves (all zeros for none).
    task: Hash32,
    kv: KvCache,
    /// Created at the session's first sampled step.
    sampler: Option<Sampler>,
    /// The token ids computed, in order (a first stage's; other stages take hidden states).
    fed: TokenDigest,
    /// The tokens drawn, in order, after the sampling asked for at the first sampled step.
    drawn: Option<TokenDigest>,
    last_used: SystemTime,
}

impl Session {
    /// The response for this session's step: its hidden rows, or a token its sampler draws from
    /// its last logits.
    fn answer(&mut self, want: Want, width: usize, out: &[f32]) -> Response {
        match want {
            Want::Nothing => Response::Done,
            Want::Hidden => Response::Hidden { dim: width as u32, values: out.to_vec() },
            Want::Sample(spec) => {
                let sampler = self.sampler.get_or_insert_with(|| {
                    Sampler::new(SamplingParams {
                        temperature: spec.temperature,
                        top_k: spec.top_k as usize,
                        top_p: spec.top_p,
                        seed: spec.seed,
                    })
                });
                let token = sampler.sample(out);
                self.drawn
                    .get_or_insert_with(|| {
                        TokenDigest::drawn(spec.temperature, spec.top_k, spec.top_p, spec.seed)
                    })
                    .push(&[token]);
                Response::Token(token)
            }
        }
    }
}

struct Engine<C> {
    clock: C,
    shard: Arc<Shard>,
    limits: EngineLimits,
    signer: Option<SecretKey>,
    sessions: HashMap<SessionKey, Session>,
    out: Vec<f32>,
}

/// What a closing session signs for.
struct Closing {
    task: Hash32,
    span: Range<usize>,
    rows: usize,
    fed: Hash32,
    drawn: Hash32,
}

fn span(layers: &Range<u32>) -> Range<usize> {
    layers.start as usize..layers.end as usize
}

fn engine_error(message: &str) -> Response {
    Response::Error { code: ErrorCode::Engine, message: message.to_string() }
}

fn refuse(code: ErrorCode, message: String) -> Response {
    Response::Error { code, message }
}

impl<C: Clock> Engine<C> {
    async fn run(mut self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        let mut queue = VecDeque::new();
        loop {
            if queue.is_empty() {
                match jobs.next().await {
                    Some(job) => queue.push_back(job),
                    None => return,
                }
            }
            while let Ok(job) = jobs.try_recv() {
                queue.push_back(job);
            }
            let now = self.clock.current();
            // Closes go first: they are cheap, and a head sends one only after every forward of
            // its session was answered, so none overtakes its own session's work. The head is
            // waiting on them for the stages' receipts.
            let (closes, rest): (VecDeque<Job>, VecDeque<Job>) =
                queue.drain(..).partition(|job| matches!(job.request, Request::Close { .. }));
            queue = rest;
            for job in closes {
                let response = self.handle(job.owner, job.request, now);
                let _ = job.reply.send(response);
            }
            let idle = self.limits.idle_timeout;
            // A clock that stepped back counts as no time passed.
            self.sessions.retain(|_, s| now.duration_since(s.last_used).unwrap_or_default() < idle);
            let batch = self.take_batch(&mut queue);
            if batch.len() > 1 {
                self.run_batch(batch, now);
            } else if let Some(job) = batch.into_iter().next().or_else(|| queue.pop_front()) {
                let response = self.handle(job.owner, job.request, now);
                // The connection may be gone; the work is done either way.
                let _ = job.reply.send(response);
            }
        }
    }

    /// When the oldest job is a decode step, takes it and every later decode step of another
    /// session over the same layers (up to the batch limit); a session's jobs never overtake
    /// each other.
    fn take_batch(&self, queue: &mut VecDeque<Job>) -> Vec<Job> {
        if !queue.front().is_some_and(|job| self.decodable(job)) {
            return Vec::new();
        }
        let layers = |job: &Job| match &job.request {
            Request::Forward { layers, .. } => Some(layers.clone()),
            Request::Close { .. } | Request::Echo { .. } => None,
        };
        let span = queue.front().and_then(layers);
        let mut seen = HashSet::new();
        let mut batch = Vec::new();
        let mut rest = VecDeque::with_capacity(queue.len());
        for job in queue.drain(..) {
            let fresh = seen.insert(job.session());
            let room = batch.len() < self.limits.batch_max.max(1);
            if fresh && room && layers(&job) == span && self.decodable(&job) {
                batch.push(job);
            } else {
                rest.push_back(job);
            }
        }
        *queue = rest;
        batch
    }

    /// Whether `job` is one valid decode step of a session at its cached position.
    fn decodable(&self, job: &Job) -> bool {
        let Request::Forward { session, task, pos, layers, input, want } = &job.request else { return false };
        input.rows() == 1
            && *want != Want::Nothing
            && self.check(span(layers), input, *want).is_ok()
            && self.sessions.get(&(job.owner, *session, layers.start as usize)).is_some_and(|s| {
                s.kv.len() == *pos as usize && s.kv.span() == span(layers) && s.task == *task
            })
    }

    fn handle(&mut self, owner: [u8; 32], request: Request, now: SystemTime) -> Response {
        match request {
            Request::Close { session } => {
                let mut closed: Vec<Closing> = Vec::new();
                self.sessions.retain(|k, s| {
                    let mine = (k.0, k.1) == (owner, session);
                    if mine {
                        closed.push(Closing {
                            task: s.task,
                            span: s.kv.span(),
                            rows: s.kv.len(),
                            fed: s.fed.finish(),
                            drawn: s.drawn.as_ref().map_or(Hash32::ZERO, TokenDigest::finish),
                        });
                    }
                    !mine
                });
                Response::Receipts(self.receipts(&closed))
            }
            Request::Forward { session, task, pos, layers, input, want } => {
                let key = (owner, session, layers.start as usize);
                self.forward(key, task, pos, span(&layers), input, want, now)
            }
            Request::Echo { payload } => Response::Echo(payload),
        }
    }

    /// Whether `layers` are held here and `input` and `want` fit their place in the pipeline.
    fn check(&self, layers: Range<usize>, input: &Input, want: Want) -> Result<(), Response> {
        let shard = &self.shard;
        let (held, dim) = (shard.range(), shard.hparams().dim);
        if layers.start < held.start || layers.end > held.end {
            let message = format!("layers {layers:?} asked for, this stage holds {held:?}");
            return Err(refuse(ErrorCode::BadRequest, message));
        }
        let (first, last) = (layers.start == 0, layers.end == shard.hparams().n_layers);
        match (input, first) {
            (Input::Tokens(_), false) => {
                return Err(refuse(ErrorCode::BadRequest, "this stage takes hidden states".into()));
            }
            (Input::Hidden { .. }, true) => {
                return Err(refuse(ErrorCode::BadRequest, "this stage takes token ids".into()));
            }
            (Input::Hidden { dim: d, .. }, false) if *d as usize != dim => {
                let message = format!("hidden width {d}, this model's is {dim}");
                return Err(refuse(ErrorCode::BadRequest, message));
            }
            _ => {}
        }
        match (want, last) {
            (Want::Hidden, true) => {
                Err(refuse(ErrorCode::BadRequest, "the last stage returns tokens".into()))
            }
            (Want::Sample(_), false) => {
                Err(refuse(ErrorCode::BadRequest, "only the last stage samples".into()))
            }
            _ => Ok(()),
        }
    }

    /// The signed receipts of closed sessions that served a task (none without a key).
    fn receipts(&self, closed: &[Closing]) -> Vec<polylink_types::SignedReceipt> {
        let Some(key) = &self.signer else { return Vec::new() };
        let mut out: Vec<_> = closed
            .iter()
            .filter(|c| c.task != Hash32::ZERO && c.rows > 0)
            .map(|c| {
                WorkReceipt {
                    task: c.task,
                    worker: key.public_key(),
                    layer_start: c.span.start as u32,
                    layer_end: c.span.end as u32,
                    rows: u32::try_from(c.rows).unwrap_or(u32::MAX),
                    fed: c.fed,
                    drawn: c.drawn,
                }
                .sign(key)
            })
            .collect();
        out.sort_by_key(|r| r.receipt.layer_start);
        out.truncate(polylink_types::RECEIPTS_MAX);
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        key: SessionKey,
        task: Hash32,
        pos: u32,
        layers: Range<usize>,
        input: Input,
        want: Want,
        now: SystemTime,
    ) -> Response {
        if let Err(refusal) = self.check(layers.clone(), &input, want) {
            return refusal;
        }
        let shard = &self.shard;
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
            let kv = match shard.new_span_session(layers.clone(), self.limits.context_max) {
                Ok(kv) => kv,
                Err(e) => return refuse(ErrorCode::BadRequest, e.to_string()),
            };
            let (fed, drawn) = (TokenDigest::fed(), None);
            self.sessions.insert(key, Session { task, kv, sampler: None, fed, drawn, last_used: now });
        }
        let Some(session) = self.sessions.get_mut(&key) else {
            return engine_error("session vanished");
        };
        if session.task != task {
            let message = format!("session {} serves task {}, not {task}", key.1, session.task);
            return refuse(ErrorCode::BadRequest, message);
        }
        if session.kv.span() != layers {
            let message = format!("session {} runs layers {:?}, not {layers:?}", key.1, session.kv.span());
            return refuse(ErrorCode::BadRequest, message);
        }
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
        if let Input::Tokens(ids) = &input {
            session.fed.push(ids);
        }
        let width = shard.hparams().dim;
        match (want, kind) {
            (Want::Nothing, _) => Response::Done,
            (Want::Hidden, OutputKind::Hidden { rows }) => {
                session.answer(want, width, &self.out[..rows * width])
            }
            (Want::Sample(_), OutputKind::Logits { rows }) => {
                let vocab = self.out.len() / rows.max(1);
                session.answer(want, width, &self.out[(rows - 1) * vocab..rows * vocab])
            }
            _ => engine_error("the shard returned an unexpected output"),
        }
    }

    /// Runs several sessions' decode steps as one batched forward and answers each.
    fn run_batch(&mut self, jobs: Vec<Job>, now: SystemTime) {
        let keys: Vec<SessionKey> = jobs.iter().filter_map(Job::key).collect();
        let mut taken: Vec<Session> = keys.iter().filter_map(|k| self.sessions.remove(k)).collect();
        assert_eq!(taken.len(), keys.len(), "a batch holds only known sessions");
        let (mut ids, mut hidden) = (Vec::new(), Vec::new());
        for job in &jobs {
            if let Request::Forward { input, .. } = &job.request {
                match input {
                    Input::Tokens(t) => ids.extend_from_slice(t),
                    Input::Hidden { values, .. } => hidden.extend_from_slice(values),
                }
            }
        }
        let first = taken.first().is_some_and(|s| s.kv.span().start == 0);
        let input = if first { ShardInput::Tokens(&ids) } else { ShardInput::Hidden(&hidden) };
        let mut caches: Vec<&mut KvCache> = taken.iter_mut().map(|s| &mut s.kv).collect();
        let result = self.shard.forward_batch(&mut caches, input, &mut self.out);
        for session in &mut taken {
            session.last_used = now;
        }
        let width = match result {
            Ok(OutputKind::Hidden { rows } | OutputKind::Logits { rows }) if rows == jobs.len() => {
                self.out.len() / rows
            }
            // The batch changed nothing: run the steps one by one, each gets its own answer.
            _ => {
                self.sessions.extend(keys.into_iter().zip(taken));
                for job in jobs {
                    let response = self.handle(job.owner, job.request, now);
                    let _ = job.reply.send(response);
                }
                return;
            }
        };
        let dim = self.shard.hparams().dim;
        for (i, ((key, mut session), job)) in keys.into_iter().zip(taken).zip(jobs).enumerate() {
            let want = match job.request {
                Request::Forward { want, input, .. } => {
                    if let Input::Tokens(ids) = &input {
                        session.fed.push(ids);
                    }
                    want
                }
                Request::Close { .. } | Request::Echo { .. } => Want::Nothing,
            };
            let response = session.answer(want, dim, &self.out[i * width..(i + 1) * width]);
            self.sessions.insert(key, session);
            // The connection may be gone; the work is done either way.
            let _ = job.reply.send(response);
        }
    }
}
