//! The pipeline backend: a model served by workers elsewhere, whole or split by layer ranges, each
//! [`Deployment`] driven by a [`PipelineHead`] over authenticated, encrypted links.
//!
//! The backend keeps only the tokenizer and chat template (read from the GGUF's metadata, no
//! weights). A model may have several deployments (a worker serving it whole, a 2-stage pipeline,
//! …); each request goes where it is expected to be served fast ([`choose`]: by load and measured
//! step time, so a slow device or a far link is passed over while faster ones have room). The
//! set changes while serving ([`PipelineBackend::add`], [`PipelineBackend::retain`]: a gateway
//! following the chain adds a worker that joined and drops one that left); a generation keeps
//! its deployment until it ends. The
//! head survives a stage that dies mid-answer by replaying the session onto a standby (see
//! [`crate::head`]), so the stream goes on with no token lost or repeated. Each generation runs as
//! a task spawned through the runtime the backend was given, so it can run seeded.

use crate::PipelineError;
use crate::decode::{self, Steps};
use crate::deployment::Deployment;
use crate::head::HeadSession;
use crate::wire::SampleSpec;
use commonware_runtime::{Clock, Network, Spawner};
use polylink_infer::{ChatTemplate, Gguf, ModelInfo, Tokenizer};
use polylink_protocol::{
    Closed, GenerationParams, InferenceBackend, ModelCard, Placement, Prompt, ProtocolError, Receipts,
    Result, TokenStream,
};
use rand_core::CryptoRng;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Prompt tokens sent in one step: long prompts go in chunks, so one request's prefill never holds a
/// stage for long and every frame stays well under the wire limits.
const PREFILL_CHUNK: usize = 128;

/// How many times longer than on the fastest deployment a step may be expected to take on another
/// (its measured step time times the generations it would then run) for it still to take requests.
const SLOW_FACTOR: u128 = 4;

/// A deployment passed over this many placements in a row is given the next one anyway, which
/// measures it again: a device slow for a while (or a link congested) is not shunned for good.
const REMEASURE_AFTER: usize = 32;

/// What placement knows of one deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Generations running on it now.
    pub running: usize,
    /// Its measured decode step time per generation running, if any step was measured.
    pub step: Option<Duration>,
    /// Placements made elsewhere since it was last chosen.
    pub passed_over: usize,
}

impl Load {
    /// How long a step is expected to take there with one more generation running.
    fn expected(&self) -> Option<u128> {
        self.step.map(|s| s.as_micros() * (self.running as u128 + 1))
    }
}

/// The deployment (an index into `loads`) a new generation goes to, or `None` when there is
/// none: one passed over for [`REMEASURE_AFTER`] placements, else, among those whose expected
/// step time is within [`SLOW_FACTOR`] of the fastest's or not measured yet (a device that just
/// joined), the one with the fewest generations running, ties taken in turn from `first`.
/// Deployments of similar speed share the traffic, so every honest device keeps earning; a much
/// slower one takes requests only when the fast ones are loaded enough that it would answer sooner.
pub fn choose(loads: &[Load], first: usize) -> Option<usize> {
    let n = loads.len();
    let best = loads.iter().filter_map(Load::expected).min();
    let eligible = |l: &Load| match (l.expected(), best) {
        (Some(e), Some(best)) => e <= best.saturating_mul(SLOW_FACTOR) || l.passed_over >= REMEASURE_AFTER,
        _ => true,
    };
    // One passed over for long goes first; then the least loaded.
    let rank = |l: &Load| (l.passed_over < REMEASURE_AFTER, l.running);
    (0..n).map(|i| (first + i) % n).filter(|&k| eligible(&loads[k])).min_by_key(|&k| rank(&loads[k]))
}

/// A model served through pipeline heads.
pub struct PipelineBackend<E: Network> {
    context: E,
    card: ModelCard,
    tokenizer: Arc<Tokenizer>,
    template: ChatTemplate,
    /// The deployments served now, each with the id placements name it by.
    deployments: RwLock<Vec<(usize, Arc<Deployment<E>>)>>,
    next_id: AtomicUsize,
    turn: AtomicUsize,
}

impl<E: Spawner + Clock + Network + CryptoRng> PipelineBackend<E> {
    /// Reads the tokenizer and chat template of the GGUF at `path` (its weights stay on the
    /// workers) and serves it as `model_id` over `deployments` (none yet is allowed: requests
    /// are then refused until one is added), running generations as tasks spawned from `context`.
    pub fn new(
        context: E,
        path: &Path,
        model_id: &str,
        deployments: Vec<Deployment<E>>,
    ) -> Result<Self, PipelineError> {
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
        let count = deployments.len();
        Ok(Self {
            context,
            card,
            tokenizer: Arc::new(tokenizer),
            template,
            deployments: RwLock::new(deployments.into_iter().map(Arc::new).enumerate().collect()),
            next_id: AtomicUsize::new(count),
            turn: AtomicUsize::new(0),
        })
    }

    /// The deployments served now, in the order they were added.
    pub fn deployments(&self) -> Vec<Arc<Deployment<E>>> {
        self.read().iter().map(|(_, d)| d.clone()).collect()
    }

    /// Serves `deployment` from now on.
    pub fn add(&self, deployment: Deployment<E>) {
        let id = self.next_id.fetch_add(1, Relaxed);
        tracing::info!(label = %deployment.label, workers = deployment.workers.len(), "deployment added");
        self.write().push((id, Arc::new(deployment)));
    }

    /// Keeps only the deployments `keep` accepts; generations running on the others finish there.
    pub fn retain(&self, mut keep: impl FnMut(&Deployment<E>) -> bool) {
        self.write().retain(|(_, d)| {
            let kept = keep(d);
            if !kept {
                tracing::info!(label = %d.label, "deployment dropped");
            }
            kept
        });
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<(usize, Arc<Deployment<E>>)>> {
        // A poisoned lock only means a writer panicked between two whole-vector updates.
        self.deployments.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<(usize, Arc<Deployment<E>>)>> {
        self.deployments.write().unwrap_or_else(|e| e.into_inner())
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
        let deployments = self.read();
        let n = deployments.len();
        let first = self.turn.fetch_add(1, Relaxed) % n.max(1);
        let loads: Vec<Load> = deployments
            .iter()
            .map(|(_, d)| Load { running: d.running(), step: d.step_time(), passed_over: d.passed_over() })
            .collect();
        let k = choose(&loads, first)
            .ok_or_else(|| ProtocolError::Backend(format!("no worker serves {model} now")))?;
        for (i, (_, d)) in deployments.iter().enumerate() {
            d.placed(i == k);
        }
        let (id, deployment) = &deployments[k];
        Ok(Placement { workers: deployment.workers.clone(), slot: *id })
    }

    fn avoid(&self, placement: &Placement) {
        self.write().retain(|(id, d)| {
            let kept = *id != placement.slot;
            if !kept {
                tracing::info!(label = %d.label, "deployment dropped: a worker of it can take no task");
            }
            kept
        });
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
        let deployment =
            self.read().iter().find(|(id, _)| *id == placement.slot).map(|(_, d)| d.clone()).ok_or_else(
                || ProtocolError::Backend(format!("deployment {} is no longer served", placement.slot)),
            )?;
        let (tx, stream) = TokenStream::channel();
        let (receipts_tx, receipts) = Receipts::channel();
        let running = deployment.enter();
        let tokenizer = self.tokenizer.clone();
        self.context.child("generation").spawn(move |context| async move {
            let _running = running;
            let mut session = match params.task {
                Some(task) => deployment.head.open_for(task),
                None => deployment.head.open(),
            };
            let mut steps = HeadSteps { deployment: &deployment, session: &mut session, clock: &context };
            let mut drawn = Vec::new();
            let end =
                decode::run(&mut steps, &tokenizer, &prompt_ids, &params, PREFILL_CHUNK, &tx, &mut drawn)
                    .await;
            if let Some(end) = end {
                let _ = tx.unbounded_send(end);
            }
            // Closed however the generation ended (the client gone included): the stages sign
            // for the rows they computed and the tokens they were fed and drew.
            let receipts = deployment.head.close(session).await;
            let _ = receipts_tx.send(Closed { receipts, drawn });
        });
        Ok(stream.with_receipts(receipts))
    }
}

/// One session's forwards through a deployment's pipeline head, each decode step timed.
struct HeadSteps<'a, E: Network> {
    deployment: &'a Deployment<E>,
    session: &'a mut HeadSession,
    clock: &'a E,
}

impl<E: Spawner + Clock + Network + CryptoRng> Steps for HeadSteps<'_, E> {
    fn feed(
        &mut self,
        tokens: &[u32],
        sample: Option<SampleSpec>,
    ) -> impl Future<Output = Result<Option<u32>, PipelineError>> + Send {
        let start = self.clock.current();
        // A decode step (one token in, one out) is what a user waits for between two tokens.
        let decode = tokens.len() == 1 && sample.is_some();
        async move {
            let out = self.deployment.head.feed(self.session, tokens, sample).await;
            if decode && out.is_ok() {
                self.deployment.record_step(self.clock.current().duration_since(start).unwrap_or_default());
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Load, REMEASURE_AFTER, choose};
    use std::time::Duration;

    fn load(running: usize, step_ms: Option<u64>, passed_over: usize) -> Load {
        Load { running, step: step_ms.map(Duration::from_millis), passed_over }
    }

    #[test]
    fn idle_deployments_of_similar_speed_are_taken_in_turn() {
        let loads = [load(0, Some(20), 0), load(0, Some(50), 0), load(0, None, 0)];
        assert_eq!(choose(&loads, 0), Some(0));
        assert_eq!(choose(&loads, 1), Some(1));
        assert_eq!(choose(&loads, 2), Some(2), "a deployment not measured yet takes its turn");
        assert_eq!(choose(&[], 0), None);
    }

    #[test]
    fn the_least_loaded_of_the_fast_enough_deployments_is_chosen() {
        let loads = [load(2, Some(20), 0), load(0, Some(30), 0)];
        assert_eq!(choose(&loads, 0), Some(1));
        // A new device gets requests at once, while it is idle.
        let loads = [load(1, Some(20), 0), load(0, None, 0)];
        assert_eq!(choose(&loads, 0), Some(1));
    }

    #[test]
    fn a_much_slower_deployment_waits_until_the_fast_ones_are_loaded() {
        let slow = |running, passed_over| load(running, Some(200), passed_over);
        assert_eq!(choose(&[load(0, Some(20), 0), slow(0, 5)], 1), Some(0));
        assert_eq!(choose(&[load(1, Some(20), 0), slow(0, 5)], 1), Some(0), "40 ms against 200 ms");
        assert_eq!(choose(&[load(4, Some(20), 0), slow(0, 5)], 1), Some(1), "100 ms: 200 ms is within 4x");
        assert_eq!(choose(&[load(0, Some(20), 0), slow(0, REMEASURE_AFTER)], 0), Some(1), "measured again");
    }
}
