//! The pipeline head: it drives a session through the stages in order and survives a stage that
//! dies or stalls.
//!
//! The head relays every hop (stage k's hidden states go back through the head to stage k+1), so
//! it keeps, per session and per stage, every input it sent. When a stage fails (its link breaks
//! or a call outlives its timeout), the head asks [`Standby`] for a replacement serving the same
//! layers, replays that session's inputs there in the original chunks (so the rebuilt KV cache is
//! bit-identical), and retries the step. Other sessions notice the move on their next step and
//! replay theirs. With two stages relaying costs nothing over a chain (head→s1→s2→head is the
//! same number of hops once the head sits with s1); beyond two it trades hops for recovery.

use crate::PipelineError;
use crate::transport::{self, DialedLink};
use crate::wire::{Input, Request, Response, SampleSpec, Want, WireLimits};
use commonware_cryptography::ed25519::{PrivateKey, PublicKey};
use commonware_runtime::{Clock, Network, Supervisor};
use futures::future::{Either, select};
use futures::lock::Mutex;
use rand_core::CryptoRng;
use std::net::SocketAddr;
use std::ops::Range;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where a stage runs and which layers it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSpec {
    /// The worker's key (its on-chain identity).
    pub peer: PublicKey,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The layers it serves.
    pub layers: Range<usize>,
}

/// Finds a replacement for a failed stage.
pub trait Standby: Send + Sync + 'static {
    /// A stage serving exactly `layers`, other than the `failed` workers, if one is available.
    fn replacement(&self, layers: &Range<usize>, failed: &[PublicKey]) -> Option<StageSpec>;
}

/// A fixed list of standby stages (e.g. from the chain's worker registry at start-up).
#[derive(Debug, Clone, Default)]
pub struct StandbyList(pub Vec<StageSpec>);

impl Standby for StandbyList {
    fn replacement(&self, layers: &Range<usize>, failed: &[PublicKey]) -> Option<StageSpec> {
        self.0.iter().find(|s| &s.layers == layers && !failed.contains(&s.peer)).cloned()
    }
}

/// Timeouts and limits of the head.
#[derive(Debug, Clone, Copy)]
pub struct HeadConfig {
    /// A call taking longer than this (plus `per_row`) counts as a stalled stage.
    pub call_timeout: Duration,
    /// Extra time allowed per row of a call (prefills and replays are longer).
    pub per_row: Duration,
    /// Most fail-overs within one step.
    pub failovers_max: usize,
    /// Frame limits.
    pub limits: WireLimits,
}

impl Default for HeadConfig {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(2),
            per_row: Duration::from_millis(20),
            failovers_max: 3,
            limits: WireLimits::default(),
        }
    }
}

/// One generation's state at the head.
#[derive(Debug)]
pub struct HeadSession {
    id: u64,
    /// Per stage: every input sent, in order and in its original chunks.
    history: Vec<Vec<Input>>,
    /// Per stage: the worker holding this session's cache.
    placed: Vec<Option<PublicKey>>,
    /// Positions processed so far.
    pos: usize,
}

impl HeadSession {
    /// Positions processed so far (prompt and generated tokens fed back).
    pub fn len(&self) -> usize {
        self.pos
    }

    /// Whether nothing has been processed yet.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }
}

struct Slot<E: Network> {
    spec: StageSpec,
    link: Option<DialedLink<E>>,
}

/// Drives sessions through a pipeline of stages.
pub struct PipelineHead<E: Network> {
    context: E,
    key: PrivateKey,
    config: HeadConfig,
    standby: Box<dyn Standby>,
    stages: Vec<Mutex<Slot<E>>>,
    failed: std::sync::Mutex<Vec<PublicKey>>,
    next_session: AtomicU64,
}

impl<E: Supervisor + Clock + Network + CryptoRng> PipelineHead<E> {
    /// A head over `stages` (in order, contiguous layers), identified by `key`.
    pub fn new(
        context: E,
        key: PrivateKey,
        stages: Vec<StageSpec>,
        standby: Box<dyn Standby>,
        config: HeadConfig,
    ) -> Result<Self, PipelineError> {
        if stages.is_empty() {
            return Err(PipelineError::Plan("a pipeline needs at least one stage".into()));
        }
        for pair in stages.windows(2) {
            if pair[0].layers.end != pair[1].layers.start {
                return Err(PipelineError::Plan(format!(
                    "stages {:?} and {:?} are not contiguous",
                    pair[0].layers, pair[1].layers
                )));
            }
        }
        let stages = stages.into_iter().map(|spec| Mutex::new(Slot { spec, link: None })).collect();
        Ok(Self {
            context,
            key,
            config,
            standby,
            stages,
            failed: std::sync::Mutex::new(Vec::new()),
            next_session: AtomicU64::new(1),
        })
    }

    /// The stages as they are now (after any fail-over).
    pub async fn stages(&self) -> Vec<StageSpec> {
        let mut out = Vec::with_capacity(self.stages.len());
        for slot in &self.stages {
            out.push(slot.lock().await.spec.clone());
        }
        out
    }

    /// A new session.
    pub fn open(&self) -> HeadSession {
        let n = self.stages.len();
        HeadSession {
            id: self.next_session.fetch_add(1, Ordering::Relaxed),
            history: vec![Vec::new(); n],
            placed: vec![None; n],
            pos: 0,
        }
    }

    /// Feeds `tokens` (the prompt, then each generated token) and returns the next token.
    pub async fn step(
        &self,
        session: &mut HeadSession,
        tokens: &[u32],
        sample: SampleSpec,
    ) -> Result<u32, PipelineError> {
        if tokens.is_empty() {
            return Err(PipelineError::Plan("a step needs at least one token".into()));
        }
        let last = self.stages.len() - 1;
        let mut input = Input::Tokens(tokens.to_vec());
        for k in 0..=last {
            let want = if k == last { Want::Sample(sample) } else { Want::Hidden };
            let response = self.run_stage(k, session, &input, want).await?;
            session.history[k].push(input);
            input = match response {
                Response::Hidden { dim, values } if k < last => Input::Hidden { dim, values },
                Response::Token(token) if k == last => {
                    session.pos += tokens.len();
                    return Ok(token);
                }
                other => return Err(PipelineError::Protocol(format!("stage {k} answered {other:?}"))),
            };
        }
        Err(PipelineError::Protocol("the last stage returned no token".into()))
    }

    /// Frees the session on every stage that holds it (best effort: a dead stage holds nothing).
    pub async fn close(&self, session: HeadSession) {
        for (k, placed) in session.placed.iter().enumerate() {
            let mut slot = self.stages[k].lock().await;
            if placed.as_ref() == Some(&slot.spec.peer)
                && let Some(link) = slot.link.as_mut()
                && link.call(&Request::Close { session: session.id }).await.is_err()
            {
                slot.link = None;
            }
        }
    }

    async fn run_stage(
        &self,
        k: usize,
        session: &mut HeadSession,
        input: &Input,
        want: Want,
    ) -> Result<Response, PipelineError> {
        let mut failovers = 0;
        loop {
            let mut slot = self.stages[k].lock().await;
            let error = match self.try_stage(&mut slot, k, session, input, want).await {
                Ok(Response::Error { code, message }) => {
                    return Err(PipelineError::Refused { stage: k, code: code as u8, message });
                }
                Ok(response) => return Ok(response),
                Err(error) => error,
            };
            slot.link = None;
            failovers += 1;
            let failed = {
                let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
                if !failed.contains(&slot.spec.peer) {
                    failed.push(slot.spec.peer.clone());
                }
                failed.clone()
            };
            tracing::warn!(stage = k, addr = %slot.spec.addr, "stage failed: {error}");
            if failovers > self.config.failovers_max {
                return Err(error);
            }
            let Some(spec) = self.standby.replacement(&slot.spec.layers, &failed) else {
                return Err(PipelineError::NoReplacement {
                    stage: k,
                    layers: slot.spec.layers.clone(),
                    cause: error.to_string(),
                });
            };
            tracing::info!(stage = k, addr = %spec.addr, "failing over to a replacement stage");
            slot.spec = spec;
        }
    }

    /// One attempt at stage `k`: connect if needed, replay the session if its cache is not on
    /// this worker, then run the request.
    async fn try_stage(
        &self,
        slot: &mut Slot<E>,
        k: usize,
        session: &mut HeadSession,
        input: &Input,
        want: Want,
    ) -> Result<Response, PipelineError> {
        if slot.link.is_none() {
            let dialing = transport::dial(
                self.context.child("dial"),
                self.key.clone(),
                slot.spec.addr,
                slot.spec.peer.clone(),
                self.config.limits,
            );
            slot.link = Some(self.timed(1, dialing).await??);
        }
        let Some(link) = slot.link.as_mut() else {
            return Err(PipelineError::Link("no link".into()));
        };
        if session.placed[k].as_ref() != Some(&slot.spec.peer) {
            let mut pos = 0u32;
            for chunk in &session.history[k] {
                let replay =
                    Request::Forward { session: session.id, pos, input: chunk.clone(), want: Want::Nothing };
                match self.timed(chunk.rows(), link.call(&replay)).await?? {
                    Response::Done => {}
                    other => {
                        return Err(PipelineError::Protocol(format!(
                            "replay at stage {k} answered {other:?}"
                        )));
                    }
                }
                pos += chunk.rows() as u32;
            }
            session.placed[k] = Some(slot.spec.peer.clone());
        }
        let request =
            Request::Forward { session: session.id, pos: session.pos as u32, input: input.clone(), want };
        self.timed(input.rows(), link.call(&request)).await?
    }

    /// Runs `future` under the call timeout for `rows` rows.
    async fn timed<T>(&self, rows: usize, future: impl Future<Output = T>) -> Result<T, PipelineError> {
        let limit = self.config.call_timeout + self.config.per_row * rows as u32;
        let sleep = self.context.sleep(limit);
        match select(pin!(future), pin!(sleep)).await {
            Either::Left((value, _)) => Ok(value),
            Either::Right(_) => Err(PipelineError::Timeout { ms: limit.as_millis() as u64 }),
        }
    }
}
