//! The local backend: a whole GGUF model on this machine, served by the one multi-session engine
//! ([`crate::engine`], which batches concurrent sessions' decode steps, as a worker's stage does)
//! with each generation driven by the one decode loop ([`crate::decode`]). Both run on a
//! Commonware tokio runtime of the backend's own, on a thread it starts, so callers need no
//! runtime; at most `sessions_max` generations run at once and the rest wait in arrival order.

use crate::PipelineError;
use crate::decode::{self, Steps};
use crate::engine::{EngineHandle, EngineLimits};
use crate::wire::{Input, Request, Response, SampleSpec, Want};
use commonware_runtime::{Runner as _, Spawner, Supervisor, tokio as cw};
use futures::channel::mpsc;
use futures::{StreamExt, future, stream};
use polylink_infer::{ChatTemplate, Model, Shard, Tokenizer};
use polylink_protocol::{
    Closed, GenerationParams, InferenceBackend, ModelCard, Prompt, ProtocolError, ReceiptSender, Receipts,
    Result, TokenSender, TokenStream,
};
use polylink_types::{Hash32, SecretKey};
use std::collections::VecDeque;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The engine's owner id for the sessions of this backend (there is no remote head to name).
const OWNER: [u8; 32] = [0; 32];

/// How the local engine runs.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Kernel threads.
    pub threads: usize,
    /// Sessions decoded together; more wait their turn.
    pub sessions_max: usize,
    /// Prompt tokens per prefill step (bounds how long other sessions wait).
    pub prefill_chunk_tokens: usize,
    /// Model id clients use (default: the file name without `.gguf`).
    pub model_id: Option<String>,
    /// The worker key this machine serves under: with it, each billed generation's work is
    /// receipted (signed for its task), as a remote stage's is.
    pub signer: Option<SecretKey>,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self { threads: 2, sessions_max: 8, prefill_chunk_tokens: 64, model_id: None, signer: None }
    }
}

/// One generation asked of the backend's runtime.
#[derive(Debug)]
struct Job {
    prompt: Vec<u32>,
    params: GenerationParams,
    events: TokenSender,
    receipts: ReceiptSender,
}

/// A loaded model served from its own runtime thread.
#[derive(Debug)]
pub struct LocalBackend {
    card: ModelCard,
    tokenizer: Arc<Tokenizer>,
    template: ChatTemplate,
    jobs: mpsc::UnboundedSender<Job>,
    sampled: Arc<AtomicU64>,
}

impl LocalBackend {
    /// Loads the GGUF at `path` whole and starts its runtime thread.
    pub fn load(path: &Path, options: &LocalOptions) -> Result<Self, PipelineError> {
        let model = Model::open(path, None, options.threads.max(1))
            .map_err(|e| PipelineError::Setup(format!("cannot load {}: {e}", path.display())))?;
        let id = match &options.model_id {
            Some(id) => id.clone(),
            None => {
                path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
            }
        };
        let Model { info, shard, tokenizer, template } = model;
        let context_tokens = info.hparams.context_len;
        let card = ModelCard { id, owned_by: "polylink".into(), context_tokens };
        let tokenizer = Arc::new(tokenizer);
        let sessions_max = options.sessions_max.max(1);
        let (jobs, queue) = mpsc::unbounded();
        let sampled = Arc::new(AtomicU64::new(0));
        let serve = Serve {
            layers: 0..info.hparams.n_layers as u32,
            shard: Arc::new(shard),
            tokenizer: tokenizer.clone(),
            limits: EngineLimits { sessions_max, context_max: context_tokens, ..EngineLimits::default() },
            prefill_chunk: options.prefill_chunk_tokens.max(1),
            sampled: sampled.clone(),
            signer: options.signer.clone(),
        };
        std::thread::Builder::new()
            .name("polylink-local".into())
            .spawn(move || {
                let runtime = cw::Config::new().with_worker_threads(1);
                cw::Runner::new(runtime).start(|context| serve.run(context, queue));
            })
            .map_err(|e| PipelineError::Setup(format!("cannot start the engine thread: {e}")))?;
        Ok(Self { card, tokenizer, template, jobs, sampled })
    }

    /// Tokens the engine has sampled since it started (shows when generation really stops).
    pub fn tokens_sampled(&self) -> u64 {
        self.sampled.load(Relaxed)
    }

    fn check_model(&self, model: &str) -> Result<()> {
        if model == self.card.id { Ok(()) } else { Err(ProtocolError::UnknownModel(model.to_string())) }
    }
}

impl InferenceBackend for LocalBackend {
    fn models(&self) -> Vec<ModelCard> {
        vec![self.card.clone()]
    }

    fn tokenize(&self, model: &str, prompt: &Prompt) -> Result<Vec<u32>> {
        self.check_model(model)?;
        Ok(self.template.encode(&self.tokenizer, prompt))
    }

    fn generate(&self, model: &str, prompt_ids: Vec<u32>, params: GenerationParams) -> Result<TokenStream> {
        self.check_model(model)?;
        if prompt_ids.is_empty() {
            return Err(ProtocolError::Backend("an empty prompt cannot start a generation".into()));
        }
        let (tx, stream) = TokenStream::channel();
        let (receipts_tx, receipts) = Receipts::channel();
        let job = Job { prompt: prompt_ids, params, events: tx, receipts: receipts_tx };
        self.jobs
            .unbounded_send(job)
            .map_err(|_| ProtocolError::Backend("the engine thread has stopped".into()))?;
        Ok(stream.with_receipts(receipts))
    }
}

/// What the backend's runtime serves with.
struct Serve {
    layers: Range<u32>,
    shard: Arc<Shard>,
    tokenizer: Arc<Tokenizer>,
    limits: EngineLimits,
    prefill_chunk: usize,
    sampled: Arc<AtomicU64>,
    signer: Option<SecretKey>,
}

enum Event {
    Job(Job),
    JobsClosed,
    Finished,
}

impl Serve {
    /// Starts the engine and a generation per job (at most `sessions_max` at once), until the
    /// backend is dropped and every generation has finished.
    async fn run(self, context: cw::Context, jobs: mpsc::UnboundedReceiver<Job>) {
        let engine = EngineHandle::start(
            context.child("engine"),
            self.shard.clone(),
            self.limits,
            self.signer.clone(),
        );
        let (finished, finishes) = mpsc::unbounded::<()>();
        let jobs = jobs.map(Event::Job).chain(stream::once(future::ready(Event::JobsClosed)));
        let mut events = stream::select(jobs, finishes.map(|()| Event::Finished));
        let (mut waiting, mut running, mut open, mut session) = (VecDeque::new(), 0, true, 0u64);
        while open || running > 0 {
            match events.next().await {
                Some(Event::Job(job)) => waiting.push_back(job),
                Some(Event::JobsClosed) => open = false,
                Some(Event::Finished) => running -= 1,
                None => return,
            }
            waiting.retain(|job: &Job| !job.events.is_closed());
            while running < self.limits.sessions_max
                && let Some(job) = waiting.pop_front()
            {
                running += 1;
                session += 1;
                let steps = EngineSteps {
                    engine: engine.clone(),
                    session,
                    task: job.params.task.unwrap_or(Hash32::ZERO),
                    pos: 0,
                    layers: self.layers.clone(),
                    sampled: self.sampled.clone(),
                };
                let (tokenizer, chunk, finished) =
                    (self.tokenizer.clone(), self.prefill_chunk, finished.clone());
                context.child("generation").spawn(move |_| async move {
                    let (mut steps, mut drawn) = (steps, Vec::new());
                    let end = decode::run(
                        &mut steps,
                        &tokenizer,
                        &job.prompt,
                        &job.params,
                        chunk,
                        &job.events,
                        &mut drawn,
                    );
                    if let Some(end) = end.await {
                        let _ = job.events.unbounded_send(end);
                    }
                    let closed = steps.engine.call(OWNER, Request::Close { session: steps.session }).await;
                    let receipts = match closed {
                        Response::Receipts(receipts) => receipts,
                        _ => Vec::new(),
                    };
                    let _ = job.receipts.send(Closed { receipts, drawn });
                    let _ = finished.unbounded_send(());
                });
            }
        }
    }
}

/// One session's forwards on the engine here.
struct EngineSteps {
    engine: EngineHandle,
    session: u64,
    task: Hash32,
    pos: u32,
    layers: Range<u32>,
    sampled: Arc<AtomicU64>,
}

impl Steps for EngineSteps {
    fn feed(
        &mut self,
        tokens: &[u32],
        sample: Option<SampleSpec>,
    ) -> impl Future<Output = Result<Option<u32>, PipelineError>> + Send {
        let request = Request::Forward {
            session: self.session,
            task: self.task,
            pos: self.pos,
            layers: self.layers.clone(),
            input: Input::Tokens(tokens.to_vec()),
            want: sample.map_or(Want::Nothing, Want::Sample),
        };
        let rows = tokens.len() as u32;
        async move {
            let token = match self.engine.call(OWNER, request).await {
                Response::Token(token) if sample.is_some() => {
                    self.sampled.fetch_add(1, Relaxed);
                    Some(token)
                }
                Response::Done if sample.is_none() => None,
                Response::Error { code, message } => {
                    return Err(PipelineError::Refused { stage: 0, code: code as u8, message });
                }
                other => return Err(PipelineError::Protocol(format!("the engine answered {other:?}"))),
            };
            self.pos += rows;
            Ok(token)
        }
    }
}
