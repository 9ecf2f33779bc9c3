//! The pipeline backend: a model served by workers elsewhere, whole or split by layer ranges, each
//! [`Deployment`] driven by a [`PipelineHead`] over authenticated, encrypted links.
//!
//! The backend keeps only the tokenizer and chat template (read from the GGUF's metadata, no
//! weights). A model may have several deployments (a worker serving it whole, a 2-stage pipeline,
//! …); each request goes to the one with the fewest generations running, ties taken in turn. The
//! head survives a stage that dies mid-answer by replaying the session onto a standby (see
//! [`crate::head`]), so the stream goes on with no token lost or repeated. Each generation runs as
//! a task spawned through the runtime the backend was given, so it can run seeded.

use crate::PipelineError;
use crate::deployment::Deployment;
use crate::head::{HeadSession, PipelineHead};
use crate::wire::SampleSpec;
use commonware_runtime::{Clock, Network, Spawner};
use polylink_infer::generate::detok::StreamDecoder;
use polylink_infer::{ChatTemplate, Gguf, ModelInfo, Tokenizer};
use polylink_protocol::{
    FinishReason, GenerationParams, InferenceBackend, ModelCard, Placement, Prompt, ProtocolError, Result,
    TokenEvent, TokenSender, TokenStream,
};
use rand_core::CryptoRng;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Prompt tokens sent in one step: long prompts go in chunks, so one request's prefill never holds a
/// stage for long and every frame stays well under the wire limits.
const PREFILL_CHUNK: usize = 128;

/// A model served through pipeline heads.
pub struct PipelineBackend<E: Network> {
    context: E,
    card: ModelCard,
    tokenizer: Arc<Tokenizer>,
    template: ChatTemplate,
    deployments: Vec<Arc<Deployment<E>>>,
    turn: AtomicUsize,
}

impl<E: Spawner + Clock + Network + CryptoRng> PipelineBackend<E> {
    /// Reads the tokenizer and chat template of the GGUF at `path` (its weights stay on the
    /// workers) and serves it as `model_id` over `deployments`, running generations as tasks
    /// spawned from `context`.
    pub fn new(
        context: E,
        path: &Path,
        model_id: &str,
        deployments: Vec<Deployment<E>>,
    ) -> Result<Self, PipelineError> {
        if deployments.is_empty() {
            return Err(PipelineError::Setup(format!("model {model_id} has no deployment")));
        }
        let setup = |e: polylink_infer::InferError| PipelineError::Setup(format!("{}: {e}", path.display()));
        let gguf = Gguf::open(path).map_err(setup)?;
        let info = ModelInfo::from_gguf(&gguf).map_err(setup)?;
        let tokenizer = Tokenizer::from_gguf(&gguf, info.hparams.vocab).map_err(setup)?;
        let template = ChatTemplate::detect(&tokenizer, info.arch);
        let card = ModelCard {
            id: model_id.to_string(),
            owned_by: "polylink".into(),
            context_tokens: info.hparams.context_len,
        };
        Ok(Self {
            context,
            card,
            tokenizer: Arc::new(tokenizer),
            template,
            deployments: deployments.into_iter().map(Arc::new).collect(),
            turn: AtomicUsize::new(0),
        })
    }

    /// The deployments, in the order given.
    pub fn deployments(&self) -> &[Arc<Deployment<E>>] {
        &self.deployments
    }

    fn check_model(&self, model: &str) -> Result<()> {
        if model == self.card.id { Ok(()) } else { Err(ProtocolError::UnknownModel(model.to_string())) }
    }
}

impl<E> InferenceBackend for PipelineBackend<E>
where
    E: Spawner + Clock + Network + CryptoRng,
{
    fn models(&self) -> Vec<ModelCard> {
        vec![self.card.clone()]
    }

    fn tokenize(&self, model: &str, prompt: &Prompt) -> Result<Vec<u32>> {
        self.check_model(model)?;
        Ok(self.template.encode(&self.tokenizer, prompt))
    }

    fn place(&self, model: &str) -> Result<Placement> {
        self.check_model(model)?;
        let n = self.deployments.len();
        let first = self.turn.fetch_add(1, Relaxed) % n.max(1);
        let slot = (0..n)
            .map(|i| (first + i) % n)
            .min_by_key(|&k| self.deployments[k].running())
            .ok_or_else(|| ProtocolError::Backend("no deployment".into()))?;
        let deployment = &self.deployments[slot];
        Ok(Placement { workers: deployment.workers.clone(), shares_bps: deployment.shares_bps.clone(), slot })
    }

    fn generate(&self, model: &str, prompt_ids: Vec<u32>, params: GenerationParams) -> Result<TokenStream> {
        let placement = self.place(model)?;
        self.generate_on(model, &placement, prompt_ids, params)
    }

    fn generate_on(
        &self,
        model: &str,
        placement: &Placement,
        prompt_ids: Vec<u32>,
        params: GenerationParams,
    ) -> Result<TokenStream> {
        self.check_model(model)?;
        if prompt_ids.is_empty() {
            return Err(ProtocolError::Backend("an empty prompt cannot start a generation".into()));
        }
        let deployment = self
            .deployments
            .get(placement.slot)
            .ok_or_else(|| ProtocolError::Backend(format!("no deployment {}", placement.slot)))?
            .clone();
        let (tx, stream) = TokenStream::channel();
        let running = deployment.enter();
        let tokenizer = self.tokenizer.clone();
        self.context.child("generation").spawn(move |_| async move {
            let _running = running;
            let mut session = deployment.head.open();
            let end = run(&deployment.head, &tokenizer, &mut session, prompt_ids, params, &tx).await;
            if let Some(end) = end {
                let _ = tx.unbounded_send(TokenEvent::Work(deployment.work(&session)));
                let _ = tx.unbounded_send(end);
            }
            deployment.head.close(session).await;
        });
        Ok(stream)
    }
}

/// Drives one generation through `head`, sending each token's text on `events`. Returns the
/// event that ends it (done or failed), or `None` when the client's stream was dropped.
async fn run<E: Spawner + Clock + Network + CryptoRng>(
    head: &PipelineHead<E>,
    tokenizer: &Tokenizer,
    session: &mut HeadSession,
    prompt: Vec<u32>,
    params: GenerationParams,
    events: &TokenSender,
) -> Option<TokenEvent> {
    let sample = SampleSpec {
        temperature: params.temperature,
        top_k: 0,
        top_p: params.top_p,
        seed: params.seed,
        step: 0,
    };
    let failed = |e: PipelineError| Some(TokenEvent::Failed(e.to_string()));
    let mut decoder = StreamDecoder::new();
    let mut next = None;
    for chunk in prompt.chunks(PREFILL_CHUNK) {
        if events.is_closed() {
            return None;
        }
        match head.step(session, chunk, sample).await {
            Ok(token) => next = Some(token),
            Err(e) => return failed(e),
        }
    }
    let mut token = next?;
    let mut generated = 0usize;
    loop {
        if tokenizer.is_eog(token) {
            let tail = decoder.finish();
            if !tail.is_empty() {
                events.unbounded_send(TokenEvent::Token { text: tail }).ok()?;
            }
            return Some(TokenEvent::Done(FinishReason::Stop));
        }
        generated += 1;
        let mut text =
            if tokenizer.is_control(token) { String::new() } else { decoder.push(tokenizer.piece(token)) };
        let last = generated >= params.max_tokens;
        if last {
            text.push_str(&decoder.finish());
        }
        events.unbounded_send(TokenEvent::Token { text }).ok()?;
        if last {
            return Some(TokenEvent::Done(FinishReason::Length));
        }
        token = match head.step(session, &[token], SampleSpec { step: generated as u64, ..sample }).await {
            Ok(t) => t,
            Err(e) => return failed(e),
        };
    }
}
