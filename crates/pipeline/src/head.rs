//! The pipeline head: it drives a session through the stages in order and survives a stage that
//! dies or stalls.
//!
//! The head relays every hop (stage k's hidden states go back through the head to stage k+1), so
//! it keeps, per session and per stage, every input it sent. When a stage fails (its link breaks
//! or a call outlives its timeout), the head asks [`Standby`] to re-plan the failed stage's layers
//! onto a live worker (a spare serving those layers, or a worker holding more of the model, which
//! then runs just that span), replays that session's inputs there in the original chunks (so the
//! rebuilt KV cache is bit-identical; the last stage samples its sampled steps again, so its
//! sampler stands where it stood and each replayed token must equal the one drawn before), and
//! retries the step. Other sessions notice the move on their next step and
//! replay theirs. With two stages relaying costs nothing over a chain (head→s1→s2→head is the
//! same number of hops once the head sits with s1); beyond two it trades hops for recovery.
//!
//! Sessions run concurrently: each call borrows an idle link to its stage (or dials one) and
//! returns it afterwards, so several sessions' calls are in flight to a stage at once and its
//! engine can batch their decode steps, while the stages work on different sessions at the same
//! time. A call counts as stalled when it outlives the call timeout plus a per-row allowance for
//! every row this head has in flight at that stage (its own and those queued with it).
//!
//! A session opened for an on-chain task names it in every forward; closing the session collects
//! each stage's signed receipt and keeps only those that state what this head saw: the session's
//! task, the stage's worker and layers, and no more rows than this head sent it. A stage that
//! failed is not asked (it is gone) and so is not paid; a stand-in signs for what it replayed and
//! ran.

use crate::PipelineError;
use crate::transport::{self, DialedLink};
use crate::wire::{Input, Request, Response, SampleSpec, Want, WireLimits};
use commonware_cryptography::ed25519::{PrivateKey, PublicKey};
use commonware_runtime::{Clock, Network, Supervisor};
use futures::future::{Either, select};
use polylink_types::{Hash32, SignedReceipt};
use rand_core::CryptoRng;
use std::net::SocketAddr;
use std::ops::Range;
use std::pin::pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Where a stage runs and which layers it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSpec {
    /// The worker's key (its on-chain identity).
    pub peer: PublicKey,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The layers it runs for this pipeline (the worker may hold more: see [`Standby`]).
    pub layers: Range<usize>,
}

impl StageSpec {
    /// The stage a worker announced in its ready line, serving every layer it holds.
    pub fn of_ready(ready: &polylink_protocol::WorkerReady) -> Result<Self, PipelineError> {
        let peer = crate::transport::peer_from_bytes(ready.key.as_bytes())?;
        Ok(Self { peer, addr: ready.addr, layers: ready.layers.clone() })
    }
}

/// Finds a replacement for a failed stage.
pub trait Standby: Send + Sync + 'static {
    /// A worker, other than the `failed` ones, to run `layers` from now on, if one is available.
    /// It may hold more layers than that: it then runs just `layers` of them for this pipeline
    /// (the returned spec's `layers`).
    fn replacement(&self, layers: &Range<usize>, failed: &[PublicKey]) -> Option<StageSpec>;
}

/// A fixed list of workers that can stand in (e.g. from the chain's worker registry at
/// start-up), each with the layers it holds: spares serving exactly a stage's layers, and
/// workers holding more (a whole-model worker can run any stage).
#[derive(Debug, Clone, Default)]
pub struct StandbyList(pub Vec<StageSpec>);

impl Standby for StandbyList {
    /// Re-plans the failed stage's layers onto the live worker that holds them with the fewest
    /// layers to spare: a spare holding exactly those layers first (it serves nothing else), else
    /// the narrowest worker holding more, which runs just that span.
    fn replacement(&self, layers: &Range<usize>, failed: &[PublicKey]) -> Option<StageSpec> {
        self.0
            .iter()
            .filter(|s| s.layers.start <= layers.start && layers.end <= s.layers.end)
            .filter(|s| !failed.contains(&s.peer))
            .min_by_key(|s| s.layers.len())
            .map(|s| StageSpec { layers: layers.clone(), ..s.clone() })
    }
}

/// Timeouts and limits of the head.
#[derive(Debug, Clone, Copy)]
pub struct HeadConfig {
    /// A call taking longer than this (plus `per_row` for each row in flight at that stage)
    /// counts as a stalled stage.
    pub call_timeout: Duration,
    /// Extra time allowed per row of a call (prefills and replays are longer).
    pub per_row: Duration,
    /// Most fail-overs within one step.
    pub failovers_max: usize,
    /// How long closing a session may wait for a stage's answer (its receipt): a busy stage
    /// answers after the forward it is running.
    pub close_timeout: Duration,
    /// How long a link may sit idle in the pool and still be used: well under the read timeout
    /// after which a stage closes a silent link (60 s in the Commonware runtime), since a dead
    /// pooled link would count as a failed stage.
    pub idle_link_age_max: Duration,
    /// How long a worker that failed is passed over as a stand-in: it may have been restarted
    /// (a stage whose worker failed with no stand-in left keeps that worker, so it is dialed
    /// again by the next call anyway).
    pub failed_forgotten_after: Duration,
    /// Frame limits.
    pub limits: WireLimits,
}

impl Default for HeadConfig {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(2),
            per_row: Duration::from_millis(50),
            failovers_max: 3,
            close_timeout: Duration::from_secs(30),
            idle_link_age_max: Duration::from_secs(20),
            failed_forgotten_after: Duration::from_secs(30),
            limits: WireLimits::default(),
        }
    }
}

/// One input sent to a stage, kept for a replay.
#[derive(Debug, Clone)]
struct Sent {
    input: Input,
    /// The last stage's sampling for this step and the token it drew: a replay samples again,
    /// so the replacement's sampler ends where the failed one's was.
    sampled: Option<(SampleSpec, u32)>,
}

/// One generation's state at the head.
#[derive(Debug)]
pub struct HeadSession {
    id: u64,
    /// The on-chain task it serves (all zeros for none).
    task: Hash32,
    /// Per stage: every input sent, in order and in its original chunks.
    history: Vec<Vec<Sent>>,
    /// Per stage: the worker holding this session's cache.
    placed: Vec<Option<PublicKey>>,
    /// Per stage: rows each worker computed for this session (replays onto a stand-in included).
    work: Vec<Vec<(PublicKey, u64)>>,
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

    fn record_work(&mut self, k: usize, worker: &PublicKey, rows: usize) {
        let stage = &mut self.work[k];
        match stage.iter_mut().find(|(w, _)| w == worker) {
            Some((_, done)) => *done += rows as u64,
            None => stage.push((worker.clone(), rows as u64)),
        }
    }
}

/// How often a session waiting for its turn at a stage looks again.
const TURN_POLL: Duration = Duration::from_micros(200);

/// Idle links kept per stage for reuse.
const IDLE_LINKS_MAX: usize = 64;

/// What concurrent sessions share: where each stage runs now, idle links to it, the workers
/// that failed, and the rows this head has in flight at each stage.
struct Shared<E: Network> {
    specs: Vec<StageSpec>,
    /// Per stage, idle links and when each was last used.
    idle: Vec<Vec<(DialedLink<E>, SystemTime)>>,
    /// Workers that failed here, and when: not asked to stand in until
    /// [`HeadConfig::failed_forgotten_after`] has passed (a worker restarted by its owner comes
    /// back under the same key).
    failed: Vec<(PublicKey, SystemTime)>,
    rows_in_flight: Vec<usize>,
    /// Calls in flight at each stage, and sessions open.
    calls_in_flight: Vec<usize>,
    open_sessions: usize,
}

/// Drives sessions through a pipeline of stages.
pub struct PipelineHead<E: Network> {
    context: E,
    key: PrivateKey,
    config: HeadConfig,
    standby: Box<dyn Standby>,
    shared: Mutex<Shared<E>>,
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
        let n = stages.len();
        let shared = Shared {
            specs: stages,
            idle: (0..n).map(|_| Vec::new()).collect(),
            failed: Vec::new(),
            rows_in_flight: vec![0; n],
            calls_in_flight: vec![0; n],
            open_sessions: 0,
        };
        // The heads of one gateway share its key, and a worker standing in for another
        // deployment's stage serves both: session ids start at a random point, so two heads
        // never name the same session on one worker.
        let mut context = context;
        let first = (context.next_u64() >> 2).max(1);
        Ok(Self {
            context,
            key,
            config,
            standby,
            shared: Mutex::new(shared),
            next_session: AtomicU64::new(first),
        })
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared<E>> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stages as they are now (after any fail-over).
    pub async fn stages(&self) -> Vec<StageSpec> {
        self.shared().specs.clone()
    }

    /// A new session serving no on-chain task.
    pub fn open(&self) -> HeadSession {
        self.open_for(Hash32::ZERO)
    }

    /// A new session for on-chain `task`: its stages sign receipts for it when it closes.
    pub fn open_for(&self, task: Hash32) -> HeadSession {
        let n = {
            let mut shared = self.shared();
            shared.open_sessions += 1;
            shared.specs.len()
        };
        HeadSession {
            id: self.next_session.fetch_add(1, Ordering::Relaxed),
            task,
            history: vec![Vec::new(); n],
            placed: vec![None; n],
            work: vec![Vec::new(); n],
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
        let token = self.feed(session, tokens, Some(sample)).await?;
        token.ok_or_else(|| PipelineError::Protocol("the last stage returned no token".into()))
    }

    /// Feeds `tokens` (the prompt in chunks, then each generated token) and, with `sample`,
    /// returns the next token the last stage samples (a prefill chunk before the last needs
    /// none, and draws none from the session's sampler).
    pub async fn feed(
        &self,
        session: &mut HeadSession,
        tokens: &[u32],
        sample: Option<SampleSpec>,
    ) -> Result<Option<u32>, PipelineError> {
        if tokens.is_empty() {
            return Err(PipelineError::Plan("a step needs at least one token".into()));
        }
        let last = session.history.len() - 1;
        let mut input = Input::Tokens(tokens.to_vec());
        for k in 0..=last {
            let want = match sample {
                _ if k < last => Want::Hidden,
                Some(spec) => Want::Sample(spec),
                None => Want::Nothing,
            };
            let response = self.run_stage(k, session, &input, want).await?;
            let sampled = match (&response, sample) {
                (Response::Token(token), Some(spec)) if k == last => Some((spec, *token)),
                _ => None,
            };
            session.history[k].push(Sent { input, sampled });
            input = match response {
                Response::Hidden { dim, values } if k < last => Input::Hidden { dim, values },
                Response::Token(token) if k == last && sample.is_some() => {
                    session.pos += tokens.len();
                    return Ok(Some(token));
                }
                Response::Done if k == last && sample.is_none() => {
                    session.pos += tokens.len();
                    return Ok(None);
                }
                other => return Err(PipelineError::Protocol(format!("stage {k} answered {other:?}"))),
            };
        }
        Err(PipelineError::Protocol("the last stage returned no token".into()))
    }

    /// Frees the session on every stage that holds it (best effort: a dead stage holds nothing)
    /// and returns the stages' receipts for its task that match what this head saw.
    pub async fn close(&self, session: HeadSession) -> Vec<SignedReceipt> {
        {
            let mut shared = self.shared();
            shared.open_sessions = shared.open_sessions.saturating_sub(1);
        }
        let mut receipts: Vec<SignedReceipt> = Vec::new();
        for (k, placed) in session.placed.iter().enumerate() {
            let spec = self.shared().specs[k].clone();
            if placed.as_ref() != Some(&spec.peer) {
                continue;
            }
            let Ok(mut link) = self.link(k, &spec).await else {
                tracing::warn!(stage = k, addr = %spec.addr, "no link to close a session: its receipt is lost");
                continue;
            };
            let close = Request::Close { session: session.id };
            let sleep = self.context.sleep(self.config.close_timeout);
            let response = match select(pin!(link.call(&close)), pin!(sleep)).await {
                Either::Left((Ok(response), _)) => response,
                Either::Left((Err(e), _)) => {
                    tracing::warn!(stage = k, addr = %spec.addr, "closing a session failed, its receipt is lost: {e}");
                    continue;
                }
                Either::Right(_) => {
                    tracing::warn!(stage = k, addr = %spec.addr, "closing a session timed out: its receipt is lost");
                    continue;
                }
            };
            self.put_back(k, link);
            let signed = match response {
                Response::Receipts(signed) if !signed.is_empty() || session.task == Hash32::ZERO => signed,
                other => {
                    tracing::warn!(stage = k, addr = %spec.addr, session = session.id, "closing a task's session gave no receipt: {other:?}");
                    continue;
                }
            };
            for receipt in signed {
                match self.vouch(&session, &receipt) {
                    Ok(()) if !receipts.contains(&receipt) => receipts.push(receipt),
                    Ok(()) => {}
                    Err(why) => tracing::warn!(stage = k, addr = %spec.addr, "dropped a receipt: {why}"),
                }
            }
        }
        receipts
    }

    /// Whether `receipt` states what this head saw of `session`: its task, a stage's current
    /// worker and layers, and at most the rows that worker computed here.
    fn vouch(&self, session: &HeadSession, receipt: &SignedReceipt) -> Result<(), String> {
        let r = &receipt.receipt;
        if r.task != session.task || session.task == Hash32::ZERO {
            return Err(format!("it is for task {}, the session served {}", r.task, session.task));
        }
        if !receipt.verify() {
            return Err(format!("the signature is not {}'s", r.worker));
        }
        let specs = self.shared().specs.clone();
        let stage = specs.iter().enumerate().find(|(_, s)| {
            crate::transport::peer_bytes(&s.peer) == r.worker.0
                && wire_layers(&s.layers) == (r.layer_start..r.layer_end)
        });
        let Some((k, spec)) = stage else {
            return Err(format!("no stage of {} runs layers {}..{}", r.worker, r.layer_start, r.layer_end));
        };
        let rows: u64 = session.work[k].iter().filter(|(w, _)| *w == spec.peer).map(|(_, n)| n).sum();
        if u64::from(r.rows) > rows {
            return Err(format!("it claims {} rows, this head sent {rows}", r.rows));
        }
        Ok(())
    }

    async fn run_stage(
        &self,
        k: usize,
        session: &mut HeadSession,
        input: &Input,
        want: Want,
    ) -> Result<Response, PipelineError> {
        let _turn = self.turn(k).await;
        let mut failovers = 0;
        loop {
            let spec = self.shared().specs[k].clone();
            let error = match self.try_stage(k, &spec, session, input, want).await {
                Ok(Response::Error { code, message }) => {
                    return Err(PipelineError::Refused { stage: k, code: code as u8, message });
                }
                Ok(response) => return Ok(response),
                Err(error) => error,
            };
            failovers += 1;
            tracing::warn!(stage = k, addr = %spec.addr, "stage failed: {error}");
            self.fail_over(k, &spec, error, failovers)?;
        }
    }

    /// Waits until stage `k` has fewer calls in flight than its share of the open sessions
    /// (open sessions / stages, rounded up). Concurrent sessions so form one micro-batch per
    /// stage, and every stage works on one of them at once, instead of all sessions moving
    /// through the stages as one batch while the other stages idle.
    async fn turn(&self, k: usize) -> Turn<'_, E> {
        loop {
            {
                let mut shared = self.shared();
                let share = shared.open_sessions.div_ceil(shared.specs.len()).max(1);
                if shared.calls_in_flight[k] < share {
                    shared.calls_in_flight[k] += 1;
                    return Turn { shared: &self.shared, k };
                }
            }
            self.context.sleep(TURN_POLL).await;
        }
    }

    /// Marks `failed`'s worker as failed and, unless another session already did, moves stage
    /// `k` to a replacement.
    fn fail_over(
        &self,
        k: usize,
        failed: &StageSpec,
        error: PipelineError,
        failovers: usize,
    ) -> Result<(), PipelineError> {
        let now = self.context.current();
        let forget = self.config.failed_forgotten_after;
        let mut shared = self.shared();
        shared.failed.retain(|(_, at)| now.duration_since(*at).unwrap_or_default() < forget);
        match shared.failed.iter_mut().find(|(peer, _)| *peer == failed.peer) {
            Some((_, at)) => *at = now,
            None => shared.failed.push((failed.peer.clone(), now)),
        }
        if failovers > self.config.failovers_max {
            return Err(error);
        }
        let failed_now: Vec<PublicKey> = shared.failed.iter().map(|(peer, _)| peer.clone()).collect();
        if !failed_now.contains(&shared.specs[k].peer) {
            return Ok(());
        }
        let layers = shared.specs[k].layers.clone();
        let Some(spec) = self.standby.replacement(&layers, &failed_now) else {
            return Err(PipelineError::NoReplacement { stage: k, layers, cause: error.to_string() });
        };
        tracing::info!(stage = k, addr = %spec.addr, "failing over to a replacement stage");
        shared.specs[k] = spec;
        shared.idle[k].clear();
        Ok(())
    }

    /// An idle link to stage `k`'s current worker, or a new one.
    async fn link(&self, k: usize, spec: &StageSpec) -> Result<DialedLink<E>, PipelineError> {
        let now = self.context.current();
        let idle = {
            let mut shared = self.shared();
            // A stage closes a link that stays silent for its read timeout: links idle for
            // longer than the configured age are let go.
            let age_max = self.config.idle_link_age_max;
            let fresh = |used: &SystemTime| now.duration_since(*used).unwrap_or_default() < age_max;
            shared.idle[k].retain(|(_, used)| fresh(used));
            let idle = shared.idle[k].pop();
            idle.map(|(link, _)| link).filter(|link| link.peer == spec.peer)
        };
        if let Some(link) = idle {
            return Ok(link);
        }
        let dialing = transport::dial(
            self.context.child("dial"),
            self.key.clone(),
            spec.addr,
            spec.peer.clone(),
            self.config.limits,
        );
        self.timed(k, 1, dialing).await?
    }

    /// Returns a healthy link for reuse (unless its stage has moved meanwhile).
    fn put_back(&self, k: usize, link: DialedLink<E>) {
        let mut shared = self.shared();
        if shared.specs[k].peer == link.peer && shared.idle[k].len() < IDLE_LINKS_MAX {
            shared.idle[k].push((link, self.context.current()));
        }
    }

    /// One attempt at stage `k`: replay the session there if its cache is not on this worker,
    /// then run the request. The link goes back to the pool only if every call on it succeeded.
    async fn try_stage(
        &self,
        k: usize,
        spec: &StageSpec,
        session: &mut HeadSession,
        input: &Input,
        want: Want,
    ) -> Result<Response, PipelineError> {
        let mut link = self.link(k, spec).await?;
        if session.placed[k].as_ref() != Some(&spec.peer) {
            let mut pos = 0u32;
            for sent in &session.history[k] {
                let replay = Request::Forward {
                    session: session.id,
                    task: session.task,
                    pos,
                    layers: wire_layers(&spec.layers),
                    input: sent.input.clone(),
                    want: sent.sampled.map_or(Want::Nothing, |(spec, _)| Want::Sample(spec)),
                };
                let rows = sent.input.rows();
                match (self.timed(k, rows, link.call(&replay)).await??, sent.sampled) {
                    (Response::Done, None) => {}
                    (Response::Token(token), Some((_, drawn))) if token == drawn => {}
                    (other, _) => {
                        return Err(PipelineError::Protocol(format!(
                            "replay at stage {k} answered {other:?}"
                        )));
                    }
                }
                pos += rows as u32;
            }
            session.placed[k] = Some(spec.peer.clone());
            session.record_work(k, &spec.peer, pos as usize);
        }
        let request = Request::Forward {
            session: session.id,
            task: session.task,
            pos: session.pos as u32,
            layers: wire_layers(&spec.layers),
            input: input.clone(),
            want,
        };
        let response = self.timed(k, input.rows(), link.call(&request)).await??;
        self.put_back(k, link);
        if !matches!(response, Response::Error { .. }) {
            session.record_work(k, &spec.peer, input.rows());
        }
        Ok(response)
    }

    /// Runs `future` (`rows` rows at stage `k`) under the call timeout, which grows with every
    /// row this head already has in flight there: those are queued at the stage with it.
    async fn timed<T>(
        &self,
        k: usize,
        rows: usize,
        future: impl Future<Output = T>,
    ) -> Result<T, PipelineError> {
        let queued = {
            let mut shared = self.shared();
            shared.rows_in_flight[k] += rows;
            shared.rows_in_flight[k]
        };
        // Counted out again however this ends, a caller dropping the step included.
        let _in_flight = InFlight { shared: &self.shared, k, rows };
        let limit = self.config.call_timeout + self.config.per_row * queued as u32;
        let sleep = self.context.sleep(limit);
        match select(pin!(future), pin!(sleep)).await {
            Either::Left((value, _)) => Ok(value),
            Either::Right(_) => Err(PipelineError::Timeout { ms: limit.as_millis() as u64 }),
        }
    }
}

fn wire_layers(layers: &Range<usize>) -> Range<u32> {
    layers.start as u32..layers.end as u32
}

/// Rows counted in flight at a stage until dropped.
struct InFlight<'a, E: Network> {
    shared: &'a Mutex<Shared<E>>,
    k: usize,
    rows: usize,
}

impl<E: Network> Drop for InFlight<'_, E> {
    fn drop(&mut self) {
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.rows_in_flight[self.k] -= self.rows;
    }
}

/// A session's turn at a stage, held until dropped.
struct Turn<'a, E: Network> {
    shared: &'a Mutex<Shared<E>>,
    k: usize,
}

impl<E: Network> Drop for Turn<'_, E> {
    fn drop(&mut self) {
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.calls_in_flight[self.k] -= 1;
    }
}
