//! The pipeline backend: a model served by workers elsewhere, whole or split by layer ranges, each
//! deployment driven by a [`PipelineHead`] over authenticated, encrypted links.
//!
//! The gateway keeps only the tokenizer and chat template (read from the GGUF's metadata, no
//! weights). A model may have several deployments (a worker serving it whole, a 2-stage pipeline,
//! …); each request goes to the one with the fewest generations running, ties taken in turn. The head survives a stage that dies mid-answer by replaying the session onto a standby
//! (see `polylink_pipeline::head`), so the stream goes on with no token lost or repeated.

use crate::backend::{
    FinishReason, GenerationParams, InferenceBackend, ModelCard, Placement, Prompt, TokenEvent, TokenStream,
};
use crate::error::{GatewayError, Result};
use crate::local::chat;
use commonware_runtime::{Clock, Network, Supervisor};
use polylink_infer::generate::detok::StreamDecoder;
use polylink_infer::{ChatTemplate, Gguf, ModelInfo, Tokenizer};
use polylink_pipeline::head::{HeadSession, PipelineHead};
use polylink_pipeline::transport::peer_bytes;
use polylink_pipeline::wire::SampleSpec;
use polylink_types::PublicKey;
use rand_core::CryptoRng;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use tokio::sync::mpsc::UnboundedSender;

/// Prompt tokens sent in one step: long prompts go in chunks, so one request's prefill never holds a
/// stage for long and every frame stays well under the wire limits.
const PREFILL_CHUNK: usize = 128;

/// One way the model is served: a head over its stages.
pub struct Deployment<E: Network> {
    /// Shown in logs (`whole`, `pipeline-2`, …).
    pub label: String,
    head: Arc<PipelineHead<E>>,
    workers: Vec<PublicKey>,
    shares_bps: Vec<u16>,
    running: AtomicUsize,
}

impl<E: Supervisor + Clock + Network + CryptoRng> Deployment<E> {
    /// A deployment over `head`; the work shares on chain are proportional to each stage's layers
    /// (see [`Deployment::with_work_shares`]).
    pub async fn new(label: impl Into<String>, head: PipelineHead<E>) -> Self {
        let stages = head.stages().await;
        let workers = stages.iter().map(|s| PublicKey(peer_bytes(&s.peer))).collect();
        let layers: Vec<usize> = stages.iter().map(|s| s.layers.len()).collect();
        Self {
            label: label.into(),
            head: Arc::new(head),
            workers,
            shares_bps: shares(&layers),
            running: 0.into(),
        }
    }

    /// Shares the work on chain by `work` per stage (e.g. each stage's predicted time per token,
    /// which counts the LM head the last stage runs), instead of by layers.
    pub fn with_work_shares(mut self, work: &[u64]) -> Self {
        if work.len() == self.workers.len() {
            self.shares_bps = shares(&work.iter().map(|&w| w as usize).collect::<Vec<_>>());
        }
        self
    }

    /// Each worker's part of `session`'s work: every stage weighs its share of the deployment,
    /// split between the workers that ran it by the rows each computed (a stand-in's replay
    /// included). Without a fail-over this is the deployment's own shares.
    fn work(&self, session: &HeadSession) -> Vec<(PublicKey, u64)> {
        let mut out: Vec<(PublicKey, u64)> = Vec::new();
        for (stage, share) in session.work().iter().zip(&self.shares_bps) {
            let rows: u64 = stage.iter().map(|(_, r)| r).sum::<u64>().max(1);
            for (worker, done) in stage {
                let part = u64::from(*share) * 1_000_000 * done / rows;
                let worker = PublicKey(peer_bytes(worker));
                match out.iter_mut().find(|(w, _)| *w == worker) {
                    Some((_, sum)) => *sum += part,
                    None => out.push((worker, part)),
                }
            }
        }
        out
    }

    /// Generations running on it now.
    pub fn running(&self) -> usize {
        self.running.load(Relaxed)
    }
}

/// Basis points proportional to `weights`, summing to exactly 10,000 (the rounding remainder goes
/// to the first).
fn shares(weights: &[usize]) -> Vec<u16> {
    let total: usize = weights.iter().sum::<usize>().max(1);
    let mut out: Vec<u16> = weights.iter().map(|w| (w * 10_000 / total) as u16).collect();
    let given: u32 = out.iter().map(|&b| u32::from(b)).sum();
    if let Some(first) = out.first_mut() {
        *first += (10_000 - given) as u16;
    }
    out
}

/// A model served through pipeline heads.
pub struct PipelineBackend<E: Network> {
    card: ModelCard,
    tokenizer: Arc<Tokenizer>,
    template: ChatTemplate,
    deployments: Vec<Arc<Deployment<E>>>,
    turn: AtomicUsize,
}

impl<E: Supervisor + Clock + Network + CryptoRng> PipelineBackend<E> {
    /// Reads the tokenizer and chat template of the GGUF at `path` (its weights stay on the
    /// workers) and serves it as `model_id` over `deployments`.
    pub fn new(path: &Path, model_id: &str, deployments: Vec<Deployment<E>>) -> Result<Self> {
        if deployments.is_empty() {
            return Err(GatewayError::Setup(format!("model {model_id} has no deployment")));
        }
        let setup = |e: polylink_infer::InferError| GatewayError::Setup(format!("{}: {e}", path.display()));
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
        if model == self.card.id { Ok(()) } else { Err(GatewayError::UnknownModel(model.to_string())) }
    }
}

impl<E> InferenceBackend for PipelineBackend<E>
where
    E: Supervisor + Clock + Network + CryptoRng + Send + Sync + 'static,
{
    fn models(&self) -> Vec<ModelCard> {
        vec![self.card.clone()]
    }

    fn tokenize(&self, model: &str, prompt: &Prompt) -> Result<Vec<u32>> {
        self.check_model(model)?;
        Ok(chat::encode(&self.tokenizer, &self.template, prompt))
    }

    fn place(&self, model: &str) -> Result<Placement> {
        self.check_model(model)?;
        let n = self.deployments.len();
        let first = self.turn.fetch_add(1, Relaxed) % n.max(1);
        let slot = (0..n)
            .map(|i| (first + i) % n)
            .min_by_key(|&k| self.deployments[k].running())
            .ok_or_else(|| GatewayError::Backend("no deployment".into()))?;
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
            return Err(GatewayError::Backend("an empty prompt cannot start a generation".into()));
        }
        let deployment = self
            .deployments
            .get(placement.slot)
            .ok_or_else(|| GatewayError::Backend(format!("no deployment {}", placement.slot)))?
            .clone();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        deployment.running.fetch_add(1, Relaxed);
        let tokenizer = self.tokenizer.clone();
        tokio::spawn(async move {
            let mut session = deployment.head.open();
            let end = run(&deployment.head, &tokenizer, &mut session, prompt_ids, params, &tx).await;
            if let Some(end) = end {
                let _ = tx.send(TokenEvent::Work(deployment.work(&session)));
                let _ = tx.send(end);
            }
            deployment.head.close(session).await;
            deployment.running.fetch_sub(1, Relaxed);
        });
        Ok(TokenStream::new(rx))
    }
}

/// Drives one generation through `head`, sending each token's text on `events`. Returns the
/// event that ends it (done or failed), or `None` when the client's stream was dropped.
async fn run<E: Supervisor + Clock + Network + CryptoRng>(
    head: &PipelineHead<E>,
    tokenizer: &Tokenizer,
    session: &mut HeadSession,
    prompt: Vec<u32>,
    params: GenerationParams,
    events: &UnboundedSender<TokenEvent>,
) -> Option<TokenEvent> {
    let sample =
        SampleSpec { temperature: params.temperature, top_k: 0, top_p: params.top_p, seed: params.seed };
    let failed = |e: polylink_pipeline::PipelineError| Some(TokenEvent::Failed(e.to_string()));
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
                events.send(TokenEvent::Token { text: tail }).ok()?;
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
        events.send(TokenEvent::Token { text }).ok()?;
        if last {
            return Some(TokenEvent::Done(FinishReason::Length));
        }
        token = match head.step(session, &[token], sample).await {
            Ok(t) => t,
            Err(e) => return failed(e),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::shares;

    #[test]
    fn shares_sum_to_one() {
        assert_eq!(shares(&[15, 15]), vec![5_000, 5_000]);
        assert_eq!(shares(&[30]), vec![10_000]);
        let s = shares(&[10, 10, 10]);
        assert_eq!(s.iter().map(|&b| u32::from(b)).sum::<u32>(), 10_000);
        assert_eq!(s, vec![3_334, 3_333, 3_333]);
    }
}
